"""A sweep is a study that outlives its trials: a failed trial is recorded and the sweep goes on, outputs after every
trial, ``--retry-failed``, a grid that grows, a changed command refused (or, with ``--force``, a new study beside
it), a SIGKILL mid-sweep that loses no finished trial."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from conftest import run_cli

from distill.sweep import SweepError, SweepSpec, TrialFailed, results, run_sweep, write_outputs
from distill.sweep_trial import parse_values

SCORES = {1: 0.50, 2: 0.60, 4: 0.58, 8: 0.59}


def scored(calls: list, bad: dict | None = None):
    """An objective that records its calls; ``bad[value]`` is raised (an exception) or returned (a score)."""
    bad = bad or {}

    def objective(value, where: Path) -> dict:
        calls.append(value)
        outcome = bad.get(value, SCORES.get(value))
        if isinstance(outcome, Exception):
            raise outcome
        return {"objective": outcome, "run_dir": str(where)}
    return objective


def rows_of(path: Path) -> dict[str, dict]:
    return {r["value"]: r for r in csv.DictReader(open(path))}


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path) -> None:
    calls, seen = [], []
    bad = {2: TrialFailed("distill run exited 1: training loss is nan"), 4: math.nan}

    def after(study):  # outputs after every trial: read what the sweep wrote so far
        write_outputs(study, "length", tmp_path, "val/acc")
        seen.append(sorted(rows_of(tmp_path / "sweep.csv")))

    spec = SweepSpec("length", values=(1, 2, 4, 8), order="given")
    study = run_sweep(spec, scored(calls, bad), tmp_path, after_trial=after)
    assert calls == [1, 2, 4, 8]  # the failures did not stop the sweep
    assert seen == [["1"], ["1", "2"], ["1", "2", "4"], ["1", "2", "4", "8"]]
    rows = {r["value"]: r for r in results(study, "length")}
    assert [rows[v]["state"] for v in (1, 2, 4, 8)] == ["complete", "failed", "failed", "complete"]
    assert rows[2]["reason"] == "distill run exited 1: training loss is nan"
    assert rows[4]["reason"] == "the objective is nan" and rows[4]["objective"] is None
    best = write_outputs(study, "length", tmp_path, "val/acc")
    assert best["value"] == 8 and best["objective"] == pytest.approx(0.59)
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    # Run again: finished and failed trials are kept, nothing runs; --retry-failed runs the failed ones only.
    calls.clear()
    run_sweep(spec, scored(calls, bad), tmp_path)
    assert calls == []
    study = run_sweep(spec, scored(calls), tmp_path, retry_failed=True)
    assert calls == [2, 4]
    assert {r["value"]: r["state"] for r in results(study, "length")} == dict.fromkeys((1, 2, 4, 8), "complete")


def test_a_failed_trial_counts_as_no_improvement_for_patience(tmp_path) -> None:
    calls = []
    run_sweep(SweepSpec("length", values=(1, 2, 4, 8), patience=2), scored(calls, {2: TrialFailed("x"), 4: 0.1}),
              tmp_path)
    assert calls == [1, 2, 4]  # 2 failed, 4 is worse than 1: two values without improvement


def test_no_finished_trial_writes_the_failures_and_no_best(tmp_path) -> None:
    study = run_sweep(SweepSpec("length", values=(1, 2)), scored([], {1: TrialFailed("a"), 2: TrialFailed("b")}),
                      tmp_path)
    assert write_outputs(study, "length", tmp_path, "val/acc") is None
    assert {v: r["reason"] for v, r in rows_of(tmp_path / "sweep.csv").items()} == {"1": "a", "2": "b"}
    assert not (tmp_path / "best.yaml").exists() and not (tmp_path / "sweep.png").exists()


def test_the_grid_grows_and_shrinks_without_an_optuna_crash(tmp_path) -> None:
    calls = []
    run_sweep(SweepSpec("length", values=(1, 2), order="given"), scored(calls), tmp_path)
    study = run_sweep(SweepSpec("length", values=(4, 1, 2, 8), order="given"), scored(calls), tmp_path)
    study = run_sweep(SweepSpec("length", values=(2,)), scored(calls), tmp_path)  # a value dropped
    assert calls == [1, 2, 4, 8]
    assert [r["value"] for r in results(study, "length")] == [1, 2, 4, 8]
    assert [a["values"] for a in study.user_attrs["asked"]] == [[1, 2], [4, 1, 2, 8], [2]]


def test_another_question_is_refused_or_with_force_a_new_study_beside_it(tmp_path) -> None:
    calls = []
    asked = {"key": "length", "space": "values", "config": "trainer:\n  max_epochs: 1\n"}
    run_sweep(SweepSpec("length", values=(1, 2)), scored(calls), tmp_path, question=asked)
    other = {**asked, "config": "trainer:\n  max_epochs: 3\n"}
    with pytest.raises(SweepError, match=r"study 'sweep-length' of another command: trainer.max_epochs: 1 -> 3; "
                                         r".*--force"):
        run_sweep(SweepSpec("length", values=(1, 2)), scored(calls), tmp_path, question=other)
    assert calls == [1, 2]
    study = run_sweep(SweepSpec("length", values=(1, 2)), scored(calls), tmp_path, question=other, force=True)
    assert calls == [1, 2, 1, 2] and study.study_name == "sweep-length-2"  # never a mix with the old trials
    assert {Path(r["run_dir"]).parent.parent for r in results(study, "length")} == {tmp_path / "sweep-length-2"}
    calls.clear()  # each question finds its own study again, without --force
    run_sweep(SweepSpec("length", values=(1, 2, 4)), scored(calls), tmp_path, question=other)
    run_sweep(SweepSpec("length", values=(1, 2)), scored(calls), tmp_path, question=asked)
    assert calls == [4]


def test_values_python_reads_as_numbers_are_numbers() -> None:
    assert parse_values("0.05,1e9,2,true,abc") == (0.05, 1e9, 2, True, "abc")


KILLED = """
import os, signal, sys
from pathlib import Path
from distill.sweep import SweepSpec, run_sweep

out = Path(sys.argv[1])
def objective(value, where):
    with open(out / "calls.txt", "a") as f:
        f.write(f"{value}\\n")
    if value == 3 and not (out / "killed").exists():
        (out / "killed").write_text("")
        os.kill(os.getpid(), signal.SIGKILL)  # mid-sweep: two trials finished, the third running
    return {"objective": value / 10}
run_sweep(SweepSpec("x", values=(1, 2, 3, 4), order="given"), objective, out)
"""


def test_sigkill_mid_sweep_then_the_same_command_loses_no_finished_trial(tmp_path) -> None:
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(KILLED))
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    first = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True)
    assert first.returncode == -9, first.stderr
    again = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "calls.txt").read_text().split() == ["1", "2", "3", "3", "4"]  # 1, 2 not run again
    study = optuna.load_study(study_name="sweep-x", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [(r["value"], r["objective"]) for r in results(study, "x")] == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]
    # The restarted worker (same host and --out: the same worker id) continued the trial it owned: none is left
    # running, and 3 has one trial, complete (not a second copy beside a trial left RUNNING for ever).
    assert [t.state for t in study.get_trials() if t.user_attrs["value"] == 3] == [optuna.trial.TrialState.COMPLETE]


REAL = ["sweep", "recipes/digits-ban.yaml", "--key", "optimizer.lr", "--order", "given", "--metric", "test",
        "--generations", "0", "--trainer.max_epochs", "1", "--data.train_subset", "200",
        "--trainer.enable_progress_bar", "false"]


def test_a_real_sweep_with_one_diverging_value_finishes_the_other_three(tmp_path, capsys) -> None:
    out = tmp_path / "s"
    args = [*REAL, "--values", "0.05,1e9,0.1,0.2", "--out", str(out)]
    assert run_cli(*args) == 1  # a trial failed; the others ran
    err = capsys.readouterr().err
    assert "trial optimizer.lr=1000000000.0 failed: distill run exited 1: generation 0" in err
    rows = rows_of(out / "sweep.csv")
    assert {v: r["state"] for v, r in rows.items()} == {"0.05": "complete", "0.1": "complete", "0.2": "complete",
                                                       "1000000000.0": "failed"}
    assert "training loss is nan" in rows["1000000000.0"]["reason"]
    assert (out / "best.yaml").is_file() and (out / "sweep.png").is_file()
    finished = {v: (Path(r["run_dir"]) / "summary.json").stat().st_mtime_ns for v, r in rows.items()
                if r["state"] == "complete"}
    # The same command again: nothing reruns (the failure is reported again, exit 1).
    assert run_cli(*args) == 1
    assert {v: (Path(rows[v]["run_dir"]) / "summary.json").stat().st_mtime_ns for v in finished} == finished
    # A different command is refused, naming the difference; nothing was run.
    capsys.readouterr()
    assert run_cli(*[a if a != "1" else "2" for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trainer.max_epochs: 1 -> 2" in err and "--force" in err, err
    assert not (out / "sweep-optimizer.lr-2").exists()
    # --retry-failed runs the failed value again (it diverges again: a second failed trial), nothing else.
    assert run_cli(*args, "--retry-failed") == 1
    study = optuna.load_study(study_name="sweep-optimizer.lr", storage=f"sqlite:///{out / 'study.db'}")
    assert sorted(t.user_attrs["value"] for t in study.get_trials()) == [0.05, 0.1, 0.2, 1e9, 1e9]
    assert {v: (Path(rows[v]["run_dir"]) / "summary.json").stat().st_mtime_ns for v in finished} == finished


def test_a_failed_value_dropped_from_values_is_kept_in_the_table_but_no_longer_fails_the_command(tmp_path,
                                                                                               capsys) -> None:
    """The exit code and the error lines read this command's --values; sweep.csv is the study's record (every
    value it holds), so the dropped failure keeps its row and is named in a note."""
    out = tmp_path / "s"
    assert run_cli(*REAL, "--values", "0.05,1e9", "--out", str(out)) == 1
    capsys.readouterr()
    assert run_cli(*REAL, "--values", "0.05", "--out", str(out)) == 0  # nothing runs: 0.05 is complete
    err = capsys.readouterr().err
    assert "error:" not in err and "note: optimizer.lr=1000000000.0 failed in an earlier command" in err, err
    assert {v: r["state"] for v, r in rows_of(out / "sweep.csv").items()} == {"0.05": "complete",
                                                                              "1000000000.0": "failed"}
    assert run_cli(*REAL, "--values", "0.05,1e9", "--out", str(out)) == 1  # asked again: failed again, exit 1
    assert "error: trial optimizer.lr=1000000000.0 failed" in capsys.readouterr().err


def test_a_real_sweep_killed_mid_trial_resumes_with_the_same_command(tmp_path) -> None:
    out = tmp_path / "s"
    args = [*REAL, "--out", str(out)]
    assert run_cli(*args, "--values", "0.05,0.1") == 0
    cmd = [sys.executable, "-m", "distill.cli", *args, "--values", "0.05,0.1,0.2,0.3"]
    killed = subprocess.run(cmd, env={**os.environ, "DISTILL_FAULT": "fit:0:step:2"}, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]  # killed inside the trial of 0.2
    before = {r["value"]: r for r in csv.DictReader(open(out / "sweep.csv"))}
    assert set(before) == {"0.05", "0.1"}
    assert run_cli(*args, "--values", "0.05,0.1,0.2,0.3") == 0
    rows = {r["value"]: r for r in csv.DictReader(open(out / "sweep.csv"))}
    assert {v: r["state"] for v, r in rows.items()} == dict.fromkeys(("0.05", "0.1", "0.2", "0.3"), "complete")
    assert {v: rows[v]["objective"] for v in before} == {v: r["objective"] for v, r in before.items()}


def test_keys_and_values_a_sweep_cannot_use_are_named_before_any_trial(tmp_path, capsys) -> None:
    out = tmp_path / "s"
    cases = [(["--key", "backbone.init_args.width", "--values", "4,8", "--backbone", '{"class_path": '
               '"conftest.SevenLogits"}'], "--key backbone.init_args.width: backbone 'conftest.SevenLogits' takes "
              "no argument 'width' (init_args it takes: none)"),
             (["--key", "trainer.max_epochs", "--values", "2,x"], 'Parser key "trainer.max_epochs"')]  # ascending
    for args, words in cases:
        assert run_cli("sweep", "recipes/digits-ban.yaml", "--metric", "test", "--out", str(out), *args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
        assert not out.exists()


def test_a_class_path_backbone_gets_every_init_arg_it_is_given() -> None:
    from distill.models import create_backbone

    with pytest.raises(TypeError, match="nope"):  # was dropped silently: a sweep over it ran identical trials
        create_backbone({"class_path": "conftest.SevenLogits", "init_args": {"nope": 1}}, 10, 1)
