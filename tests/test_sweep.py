"""``distill sweep``: ascending order with patience, a fixed list, TPE, resume after a kill, one tiny real sweep."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import optuna
import pytest
from conftest import run_cli

from distill.sweep import SweepError, SweepSpec, results, run_sweep, write_outputs
from distill.sweep_storage import storage_for

SCORES = {1: 0.50, 2: 0.60, 4: 0.58, 8: 0.59, 16: 0.70, 32: 0.90}


def stub(calls: list) -> callable:
    def objective(value, where: Path) -> dict:
        calls.append(value)
        return {"objective": SCORES[value]}
    return objective


def test_ascending_with_patience_stops_after_p_values_without_improvement(tmp_path) -> None:
    calls = []
    spec = SweepSpec("length", values=(32, 4, 1, 16, 2, 8), order="ascending", patience=2)
    study = run_sweep(spec, stub(calls), tmp_path)
    assert calls == [1, 2, 4, 8]  # best 0.60 at 2; 4 and 8 do not beat it: stop before 16
    assert [r["value"] for r in results(study, "length")] == [1, 2, 4, 8]
    calls3 = []
    run_sweep(SweepSpec("length", values=(1, 2, 4, 8, 16, 32), patience=3), stub(calls3), tmp_path / "p3")
    assert calls3 == [1, 2, 4, 8, 16, 32]  # 16 improves after two misses; 32 improves again
    given = []
    run_sweep(SweepSpec("length", values=(8, 1, 2), order="given"), stub(given), tmp_path / "given")
    assert given == [8, 1, 2]


def test_outputs_table_plot_and_best(tmp_path) -> None:
    study = run_sweep(SweepSpec("length", values=(1, 2, 4), order="given"), stub([]), tmp_path)
    best = write_outputs(study, "length", tmp_path, "val/acc")
    assert best["value"] == 2 and best["objective"] == pytest.approx(0.60)
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    assert [(int(r["value"]), float(r["objective"])) for r in rows] == [(1, 0.5), (2, 0.6), (4, 0.58)]
    assert (tmp_path / "sweep.png").stat().st_size > 1000


def test_tpe_on_a_continuous_key_finds_the_peak(tmp_path) -> None:
    seen = []

    def objective(value, where):
        seen.append(value)
        return {"objective": -(value - 3.0) ** 2}

    study = run_sweep(SweepSpec("kd.temperature", low=1.0, high=8.0, trials=20), objective, tmp_path)
    assert len(seen) == 20 and all(1.0 <= v <= 8.0 for v in seen)
    assert abs(study.best_params["kd.temperature"] - 3.0) < 0.5


def test_a_killed_sweep_resumes_without_repeating_finished_trials(tmp_path) -> None:
    calls = []

    def dies_at_4(value, where):
        if value == 4:
            raise KeyboardInterrupt  # the sweep is interrupted during the third trial
        return stub(calls)(value, where)

    spec = SweepSpec("length", values=(1, 2, 4, 8, 16, 32), patience=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, dies_at_4, tmp_path, heartbeat=1)
    assert calls == [1, 2]
    storage = storage_for(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.load_study(study_name="sweep-length", storage=storage)
    killed = study.ask({"length": optuna.distributions.CategoricalDistribution([1, 2, 4, 8, 16, 32])})
    storage.record_heartbeat(killed._trial_id)  # a trial whose process got SIGKILL: its heartbeat stops
    time.sleep(6.0)  # twice the grace period (3 heartbeats of 1 s): stale even on a loaded machine
    calls.clear()
    study = run_sweep(spec, stub(calls), tmp_path, heartbeat=1)
    assert calls == [4, 8]  # 1 and 2 come from the study on disk
    states = [t.state for t in study.get_trials()]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4
    assert optuna.trial.TrialState.RUNNING not in states  # the killed trial was marked failed


PROMPTED_VIT = {"name": "prompted_vit", "init_args": {
    "base_args": {"img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2},
    "source": {"seed": 3}, "prompt": {"kind": "shallow", "length": 2}}}

def test_bad_sweep_options_are_one_line_errors(tmp_path, capsys) -> None:
    with pytest.raises(SweepError, match="--values"):
        SweepSpec("x")
    with pytest.raises(SweepError, match="--order"):
        SweepSpec("x", values=(1,), order="random")
    assert run_cli("sweep", "recipes/digits-ban.yaml", "--key", "kd.nope", "--values", "1,2",
                   "--out", str(tmp_path / "s")) == 2
    assert "kd.nope" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    # The default objective is validation accuracy: a recipe without a validation split is refused before any trial.
    assert run_cli("sweep", "recipes/digits-ban.yaml", "--key", "optimizer.lr", "--values", "0.05",
                   "--out", str(tmp_path / "v")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--metric val needs a validation split" in err
    assert not (tmp_path / "v").exists()
    (tmp_path / "file").write_text("")
    for bad, words in ((["--out", str(tmp_path / "file")], "not a directory"),
                       (["--out", str(tmp_path / "u"), "--storage", "notaurl"], "not a database URL")):
        assert run_cli("sweep", "recipes/digits-ban.yaml", "--key", "optimizer.lr", "--values", "0.05", "--metric",
                       "test", *bad) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err
    assert not (tmp_path / "u").exists()
    # Every value is checked before the first trial, not only the first one (a later bad value would fail mid-sweep).
    for values in (["--order", "given", "--values", "2,x"], ["--order", "given", "--values", "2,3,x"]):
        assert run_cli("sweep", "recipes/digits-ban.yaml", "--key", "trainer.max_epochs", *values, "--metric", "test",
                       "--out", str(tmp_path / "w")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "max_epochs" in err, err
        assert not (tmp_path / "w").exists()
    # A value only the loss's constructor refuses (a FitNets pair without its teacher layer) is caught up front too.
    assert run_cli("sweep", "recipes/digits-ban.yaml", "--key", "kd.init_args.pairs", "--order", "given", "--values",
                   "stem", "--kd.variant", "fitnet", "--cache.mode", "online", "--kd.alpha",
                   "null", "--kd.temperature", "null", "--metric", "test", "--out", str(tmp_path / "f")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "kd.init_args for 'fitnet'" in err, err
    assert not (tmp_path / "f").exists()
    # A value only the network refuses (a prompt of 0 tokens) is caught by each value's preflight, as `distill run`
    # would catch it, before the folder exists; the first value alone is fine.
    vit = {"name": "prompted_vit", "init_args": {"base_args": {"img_size": 16, "patch_size": 4, "embed_dim": 24,
                                                              "depth": 2, "num_heads": 2},
                                                "source": {"seed": 3}, "prompt": {"kind": "shallow", "length": 2}}}
    prompted = ["--task", "prompted", "--backbone", json.dumps(vit), "--generations", "0", "--metric", "test"]
    assert run_cli("sweep", "recipes/digits-ban.yaml", "--key", "backbone.init_args.prompt.length", "--order",
                   "given", "--values", "2,0", *prompted, "--out", str(tmp_path / "p")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "backbone.init_args.prompt.length = 0" in err and "length" in err, err
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize(("key", "values", "backbone", "needle"), [
    # torch refuses a negative width while building the layer (RuntimeError), timm asserts on heads (AssertionError)
    ("backbone.init_args.width", "8,-3", {"name": "small_cnn", "init_args": {"width": 8}}, "negative dimension"),
    ("backbone.init_args.base_args.num_heads", "2,5", PROMPTED_VIT, "divisible by num_heads"),
])
def test_a_value_the_backbone_refuses_while_built_is_one_line(tmp_path, capsys, key, values, backbone,
                                                              needle) -> None:
    task = ["--task", "prompted"] if backbone is PROMPTED_VIT else []
    assert run_cli("sweep", "recipes/digits-ban.yaml", "--key", key, "--order", "given", "--values", values,
                   "--backbone", json.dumps(backbone), *task, "--generations", "0", "--metric", "test",
                   "--out", str(tmp_path / "s")) == 2
    err = capsys.readouterr().err.strip()
    bad = values.split(",")[1]
    assert len(err.splitlines()) == 1 and f"{key} = {bad}" in err and needle in err, err
    assert not (tmp_path / "s").exists()


def test_a_refusal_of_the_recipe_itself_names_no_value(tmp_path, capsys) -> None:
    """An EarlyStopping on a metric digits never logs (no validation split) fails every value's preflight: the recipe
    is at fault, as `distill run` would say, so the line names no value; a value that alone fails is named."""
    stop = json.dumps([{"class_path": "EarlyStopping", "init_args": {"monitor": "val_loss", "patience": 3}}])
    assert run_cli("sweep", "recipes/digits-ban.yaml", "--key", "optimizer.lr", "--order", "given", "--values",
                   "0.1,0.2", "--trainer.callbacks", stop, "--generations", "0", "--metric", "test",
                   "--out", str(tmp_path / "s")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "EarlyStopping monitors 'val_loss'" in err, err
    assert "optimizer.lr =" not in err and not (tmp_path / "s").exists()


def test_the_run_directory_column_is_absolute_for_a_relative_out(tmp_path, monkeypatch) -> None:
    """Workers started in different folders with a relative --out: each trial's run_dir says where it ran, read
    from anywhere."""
    monkeypatch.chdir(tmp_path)
    study = run_sweep(SweepSpec("length", values=(1,)), stub([]), Path("rel"))
    assert results(study, "length")[0]["run_dir"] == str((tmp_path / "rel" / "trials" / "length=1").resolve())


def test_a_one_value_sweep_finishes(tmp_path) -> None:
    calls: list = []
    study = run_sweep(SweepSpec("length", values=(4,)), stub(calls), tmp_path)
    assert calls == [4]
    assert [t.state for t in study.get_trials()] == [optuna.trial.TrialState.COMPLETE]


def test_a_tiny_real_sweep(tmp_path) -> None:
    """Two real runs on digits (test accuracy as the objective: digits has no validation split)."""
    out = tmp_path / "sweep"
    args = ["sweep", "recipes/digits-ban.yaml", "--key", "optimizer.lr", "--values", "0.2,0.0001", "--order",
            "given", "--metric", "test", "--out", str(out), "--generations", "0", "--trainer.max_epochs", "2",
            "--data.train_subset", "300", "--trainer.enable_progress_bar", "false"]
    assert run_cli(*args) == 0
    rows = {float(r["value"]): r for r in csv.DictReader(open(out / "sweep.csv"))}
    assert set(rows) == {0.2, 0.0001}
    assert float(rows[0.2]["objective"]) > float(rows[0.0001]["objective"])  # lr 1e-4 barely moves in 2 epochs
    for lr, row in rows.items():
        summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
        assert summary["generations"][0]["test"]["acc"] == pytest.approx(float(row["objective"]))
        assert f"lr: {lr}" in (Path(row["run_dir"]) / "config.yaml").read_text()
    assert "lr: 0.2" in (out / "best.yaml").read_text()
    assert run_cli(*args) == 0  # resumed: nothing left to run
    assert len(list((out / "trials").iterdir())) == 2
