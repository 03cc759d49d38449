"""Several sweep workers (separate processes started at the same moment) on one study, on SQLite and journal
storage: each value runs exactly once, nothing is left running or waiting, every worker writes the same complete
outputs; TPE's ``--trials`` counts the study; patience reads the finished values in order; a worker killed mid-trial
loses nothing (its trial is failed after the grace and run again once)."""

from __future__ import annotations

import collections
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from distill.sweep import storage_for

WORKER = """
import json, os, signal, sys, time
from pathlib import Path
from distill.sweep import SweepSpec, run_sweep, write_outputs

out, storage, calls, go, specs = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
kill = os.environ.get("KILL_AT")
while not go.exists():  # start together
    time.sleep(0.02)

def objective(value, where):
    with open(calls, "a") as f:
        f.write(f"{value} {os.getpid()} {spec.key}\\n")
    if kill is not None and value == float(kill) and not (calls.parent / "killed").exists():
        (calls.parent / "killed").write_text("")
        os.kill(os.getpid(), signal.SIGKILL)  # mid-trial
    time.sleep(0.25)
    score = -(value - 3.5) ** 2 if spec.values is None else {1: .5, 2: .6, 3: .58, 4: .59, 5: .7, 6: .55}[value]
    return {"objective": score, "config": f"x: {value}\\n"}

for spec in map(lambda s: SweepSpec(**s), json.loads(specs)):  # one study each (startup is the slow part)
    study = run_sweep(spec, objective, out / spec.key, storage, spec.key, float(os.environ.get("BEAT", "20")))
    write_outputs(study, spec.key, out / spec.key, "val/acc")
"""


def server_bin() -> Path | None:
    """The folder of PostgreSQL's ``initdb``/``pg_ctl``: on PATH or the Debian package's versioned ``bin``."""
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[-1:]), None)
    return Path(os.path.realpath(found)).parent if found else None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free port in a temporary folder (as root: run as the ``postgres`` user),
    stopped at the end; its URL without a database."""
    folder = server_bin()
    if folder is None:
        pytest.skip("no PostgreSQL server binary (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin")
    pytest.importorskip("psycopg", reason="psycopg 3 (the sweep extra's driver) is not installed")
    root = Path(tempfile.mkdtemp(prefix="distill-pg-"))
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run([*as_user, str(folder / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(folder / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                    f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["postgresql", "sqlite", "journal"])
def storage(request, tmp_path) -> str:
    """A new, empty study storage of each kind (PostgreSQL: a new database on the throwaway server)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.journal'}"
    import psycopg

    server = request.getfixturevalue("postgres")
    name = f"t{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def workers(tmp: Path, url: str, n: int, spec: str, shared: bool, env: dict | None = None,
            started: list | None = None) -> list[subprocess.CompletedProcess]:
    """Start ``n`` workers at once (each its own ``--out`` unless ``shared``), wait for all; their results."""
    script = tmp / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    go = tmp / "go"
    go.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(Path.cwd()), "OMP_NUM_THREADS": "1", **(env or {})}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp / ("out" if shared else f"out{i}")),
                               url, str(tmp / "calls.txt"), str(go), spec],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    time.sleep(0.2)
    go.write_text("")
    return [subprocess.CompletedProcess(p.args, p.wait(timeout=120), *p.communicate()) for p in procs]


def trials(url: str, key: str = "x") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=key, storage=storage_for(url)).get_trials()


def calls(tmp: Path, key: str = "x") -> list[tuple[float, str]]:
    lines = [line.split() for line in (tmp / "calls.txt").read_text().splitlines()]
    return [(float(v), pid) for v, pid, k in lines if k == key]


def outputs(out: Path) -> tuple[str, str, str]:
    return tuple((out / name).read_text() for name in ("sweep.csv", "best.json", "best.yaml"))


GRID = '[{"key": "x", "values": [1, 2, 3, 4, 5, 6], "order": "given"}]'
TPE = '{"key": "t", "low": 1.0, "high": 6.0, "trials": 6}'
State = optuna.trial.TrialState


# Two workers with their own --out on every storage, three sharing one --out on PostgreSQL and the journal run by
# default; SQLite with three (the same claim path, guarded by its file lock) is marked slow for the suite's budget.
@pytest.mark.parametrize(("storage", "n", "shared"), [
    ("postgresql", 2, False), ("sqlite", 2, False), ("journal", 2, False), ("postgresql", 3, True),
    ("journal", 3, True), pytest.param("sqlite", 3, True, marks=pytest.mark.slow)], indirect=["storage"])
def test_workers_run_each_value_of_the_grid_once(tmp_path, storage, n, shared) -> None:
    """And, in the same two worker processes after the grid, TPE with ``trials: 6``: six trials in the study."""
    done = workers(tmp_path, storage, n, GRID if n == 3 else f"[{GRID[1:-1]}, {TPE}]", shared)
    assert all(p.returncode == 0 for p in done), [p.stderr[-2000:] for p in done]
    ran = calls(tmp_path)
    assert sorted(v for v, _ in ran) == [1, 2, 3, 4, 5, 6]  # each value run once, by one worker
    assert len({pid for _, pid in ran}) > 1  # the grid was split between the workers
    found = trials(storage)
    complete = collections.Counter(t.user_attrs["value"] for t in found if t.state == State.COMPLETE)
    assert complete == dict.fromkeys((1, 2, 3, 4, 5, 6), 1)
    assert not [t for t in found if t.state in (State.RUNNING, State.WAITING)]
    outs = [tmp_path / "out" / "x"] if shared else [tmp_path / f"out{i}" / "x" for i in range(n)]
    first = outputs(outs[0])
    assert all(outputs(o) == first for o in outs)  # every worker wrote the complete outputs
    assert first[0].count("\n") == 7 and first[2] == "x: 5\n"  # six rows; best value 5 (0.7)
    run_dirs = [t.user_attrs["run_dir"] for t in found if t.state == State.COMPLETE]
    assert len(set(run_dirs)) == 6  # one run directory per value, never two trials in one (a shared --out too)
    if n == 2:  # TPE: --trials counts the whole study, not each worker's share
        found = trials(storage, "t")
        assert sum(t.state == State.COMPLETE for t in found) == 6 and len(calls(tmp_path, "t")) == 6
        assert not [t for t in found if t.state in (State.RUNNING, State.WAITING)]


@pytest.mark.parametrize("storage", ["journal"], indirect=True)
def test_patience_reads_the_finished_values_in_order(tmp_path, storage) -> None:
    """Scores 1: .5, 2: .6, 3: .58, 4: .59, 5: .7: with patience 2 the finished values 1..4 stop the sweep (3 and
    4 do not beat 2). A worker takes the next value only while the finished prefix has not stopped, so a value past
    4 runs only if it was claimed before 4 finished (while 4 was running on the other worker)."""
    spec = '[{"key": "x", "values": [1, 2, 3, 4, 5, 6], "patience": 2}]'
    done = workers(tmp_path, storage, 2, spec, False)
    assert all(p.returncode == 0 for p in done), [p.stderr[-2000:] for p in done]
    assert sorted(v for v, _ in calls(tmp_path))[:4] == [1, 2, 3, 4]
    found = [t for t in trials(storage) if t.state != State.PRUNED]
    assert not [t for t in found if t.state in (State.RUNNING, State.WAITING)]
    four = next(t for t in found if t.user_attrs["value"] == 4)
    assert all(t.datetime_start < four.datetime_complete for t in found if t.user_attrs["value"] > 4)


# One storage by default (the journal, which has no built-in heartbeat: ours is what is tested); the others slow.
@pytest.mark.parametrize("storage", ["journal", pytest.param("postgresql", marks=pytest.mark.slow),
                                     pytest.param("sqlite", marks=pytest.mark.slow)], indirect=True)
def test_a_worker_killed_mid_trial_loses_nothing(tmp_path, storage) -> None:
    """Worker A is SIGKILLed inside the trial of 3; B finishes the rest, waits for A's trial, fails it when its
    heartbeat is past the grace (3 beats of 1 s) and runs 3 once more. A restarted: nothing left to run."""
    done = workers(tmp_path, storage, 2, GRID, False, env={"KILL_AT": "3", "BEAT": "1"})
    assert sorted(p.returncode for p in done) == [-9, 0], [p.stderr[-2000:] for p in done]
    ran = calls(tmp_path)
    assert sorted(v for v, _ in ran) == [1, 2, 3, 3, 4, 5, 6]  # 3: killed once, run once more
    found = trials(storage)
    assert collections.Counter(t.user_attrs["value"] for t in found if t.state == State.COMPLETE) == \
        dict.fromkeys((1, 2, 3, 4, 5, 6), 1)
    assert not [t for t in found if t.state in (State.RUNNING, State.WAITING)]
    killed = next(i for i, p in enumerate(done) if p.returncode == -9)
    (tmp_path / "calls.txt").write_text("")
    again = workers(tmp_path, storage, 1, GRID, False)  # worker 0's command again (the killed one or the other)
    assert again[0].returncode == 0 and (tmp_path / "calls.txt").read_text() == ""
    assert outputs(tmp_path / "out0" / "x") == outputs(tmp_path / f"out{1 - killed}" / "x")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_missing_driver_or_an_unreachable_server_is_one_line_before_any_folder(tmp_path, capsys,
                                                                               monkeypatch) -> None:
    from conftest import run_cli

    base = ["sweep", "recipes/digits-ban.yaml", "--key", "optimizer.lr", "--values", "0.05", "--metric", "test"]
    port = free_port()  # nothing listens there
    cases = [(f"postgresql://u@127.0.0.1:{port}/db", f"cannot open the database at 127.0.0.1:{port}"),
             ("mysql://u@127.0.0.1/db", 'its driver is not installed'),
             (f"journal:{tmp_path / 'no' / 'j.log'}", "the journal file's folder")]
    for url, words in cases:
        assert run_cli(*base, "--storage", url, "--out", str(tmp_path / "o")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
        assert not (tmp_path / "o").exists()
    monkeypatch.setitem(sys.modules, "psycopg", None)  # psycopg 3 not installed: the extra is named
    assert run_cli(*base, "--storage", f"postgresql://u@127.0.0.1:{port}/db", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'postgresql+psycopg: its driver is not installed' in err, err
    assert 'pip install "distill[sweep]"' in err and not (tmp_path / "o").exists()
