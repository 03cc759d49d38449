"""One small sweep on one PostgreSQL study with 1, 2 and 4 worker processes: the wall time to the complete outputs.

The script starts a throwaway PostgreSQL server (:mod:`benchmarks.postgres`) and, per measurement, a new database
(one study) and ``N`` real ``distill sweep`` processes started at once, each with its own ``--out``, one torch thread
each (``OMP_NUM_THREADS=1``): the digits recipe's generation 0 (``--generations 0``, ``--trainer.max_epochs E``)
over 8 learning rates, ``--order given --metric test``, for each trial length ``E`` asked (each worker's start-up, the
same whatever ``E``, weighs less in longer trials). The wall time runs from starting the processes to the last
one's exit, when every worker has written the complete ``sweep.csv``, ``best.yaml``, ``best.json``. Each
measurement is checked from the storage: every value COMPLETE exactly once, nothing RUNNING or WAITING, every
worker's ``sweep.csv`` the same 8 rows; a measurement that fails a check stops the script.

Rounds are interleaved (each round runs every trial length and worker count, the order rotated) and the ratio to one
worker is the ratio of medians (per trial length), with each round's ratio beside it; the targets (2 workers <=
0.6x, 4 workers <= 0.35x) hold on a machine with at least as many cores as workers, so a count above the machine's
cores is reported as not measurable there. The 1-minute load average is recorded before and after each measurement
(the machine may be shared).

Resumable: each finished measurement is kept in ``OUT/progress.json``; the same command again measures only the
rest (an interrupted measurement is redone on a new database). Usage::

    python -m benchmarks.sweep_workers [--workers 1 2 4] [--rounds 3] [--epochs 10 60] [--out runs/bench-sweep-workers]

It writes ``docs/data/sweep-workers.json`` and renders docs/distributed.md's section from it
(``benchmarks/sweep_workers_page.py``); ``--no-write`` prints the result instead.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from benchmarks import ROOT
from benchmarks.machine import load_average, provenance
from benchmarks.pages import report
from benchmarks.postgres import Server, server_bin, throwaway_server
from benchmarks.suite_timing import spread, verdict
from distill.io import atomic_write_json
from distill.sweep_storage import storage_for

DATA = "docs/data/sweep-workers.json"
RECIPE = "recipes/digits-ban.yaml"
KEY = "optimizer.lr"
VALUES = (0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.15, 0.2)
GOALS = {2: 0.6, 4: 0.35}  # the wall time as a ratio to one worker, on a machine with at least that many cores
State = optuna.trial.TrialState


def command(epochs: int, storage: str, out: Path) -> list[str]:
    """One worker's ``distill sweep`` command line."""
    return [sys.executable, "-m", "distill.cli", "sweep", RECIPE, "--key", KEY, "--values",
            ",".join(map(str, VALUES)), "--order", "given", "--metric", "test", "--generations", "0",
            "--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false", "--storage", storage,
            "--out", str(out)]


def measure(server: Server, n: int, epochs: int, work: Path, name: str) -> dict[str, Any]:
    """``n`` workers started at once on a new database; the wall time, load and what the storage holds after.

    Raises:
        RuntimeError: a worker failed, or the storage or outputs are not every value complete exactly once.
    """
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    storage = server.database(name)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    load_before = load_average()
    logs = [open(work / f"w{i}.log", "w") for i in range(n)]  # noqa: SIM115 - closed below
    start = time.perf_counter()
    procs = [subprocess.Popen(command(epochs, storage, work / f"w{i}"), cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT) for i, log in enumerate(logs)]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - start
    for log in logs:
        log.close()
    if any(codes):
        raise RuntimeError(f"{name}: worker exit codes {codes}; see {work}/w*.log")
    trials = optuna.load_study(study_name=f"sweep-{KEY}", storage=storage_for(storage)).get_trials()
    complete = [t for t in trials if t.state == State.COMPLETE]
    counts = collections.Counter(t.user_attrs["value"] for t in complete)
    left = [t.number for t in trials if t.state in (State.RUNNING, State.WAITING)]
    if counts != dict.fromkeys(VALUES, 1) or left:
        raise RuntimeError(f"{name}: complete trials per value {dict(counts)}, running or waiting {left}")
    csvs = {(work / f"w{i}" / "sweep.csv").read_text() for i in range(n)}
    if len(csvs) != 1 or next(iter(csvs)).count("\n") != len(VALUES) + 1:
        raise RuntimeError(f"{name}: the workers' sweep.csv differ or do not hold {len(VALUES)} rows")
    per_worker = collections.Counter(t.user_attrs["worker"] for t in complete)
    busy = collections.Counter()  # each worker's seconds inside trials
    for t in complete:
        busy[t.user_attrs["worker"]] += (t.datetime_complete - t.datetime_start).total_seconds()
    return {"workers": n, "wall_seconds": wall, "load_before": load_before, "load_after": load_average(),
            "trials": len(trials), "complete_once": True, "trials_per_worker": sorted(per_worker.values()),
            "trial_seconds": statistics.median((t.datetime_complete - t.datetime_start).total_seconds()
                                               for t in complete),
            "train_seconds": statistics.median(float(t.user_attrs["train_seconds"]) for t in complete),
            "outside_trials_seconds": wall - max(busy.values())}


def summary(runs: list[dict[str, Any]], counts: list[int], cores: int) -> dict[str, Any]:
    """Per worker count: wall seconds (min, median, max), the ratio to one worker (of medians; per round) with
    the target's verdict, a trial's seconds (the median of the rounds' medians) and the wall seconds the busiest
    worker spent outside trials (start-up, waiting, outputs; median); the verdict is ``not measurable here`` when
    the count exceeds ``cores``."""
    wall = {n: [r["wall_seconds"] for r in sorted(runs, key=lambda r: r["round"]) if r["workers"] == n]
            for n in counts}
    out = {}
    for n in counts:
        rounds = [a / b for a, b in zip(wall[n], wall[1], strict=True)]
        row = {"wall_seconds": spread(wall[n]), "ratio": statistics.median(wall[n]) / statistics.median(wall[1]),
               "ratio_rounds": rounds, "goal": GOALS.get(n), "verdict": "-",
               "trial_seconds": statistics.median(r["trial_seconds"] for r in runs if r["workers"] == n),
               "outside_trials_seconds": statistics.median(r["outside_trials_seconds"] for r in runs
                                                           if r["workers"] == n)}
        if n in GOALS:
            row["verdict"] = (f"not measurable here ({cores} cores < {n} workers)" if cores < n
                              else verdict([row["ratio"], *rounds], "<=", GOALS[n]))
        out[str(n)] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (1 is needed)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 60],
                        help="epochs of each trial's run; several: one table each (a short trial shows mostly each "
                        "worker's start-up, a longer one what the workers gain)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-sweep-workers")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/data and the page alone")
    args = parser.parse_args(argv)
    if 1 not in args.workers:
        parser.error("--workers must include 1 (the ratios are to one worker)")
    folder = server_bin()
    if folder is None:
        parser.error("no PostgreSQL server binary (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin")
    settings = {"workers": args.workers, "rounds": args.rounds, "epochs": args.epochs, "values": list(VALUES)}
    progress = args.out / "progress.json"
    done = json.loads(progress.read_text()) if progress.is_file() else {}
    if done.get("settings") != settings:
        version = subprocess.run([str(folder / "postgres"), "--version"], capture_output=True, text=True).stdout
        # each worker process runs one torch thread (OMP_NUM_THREADS=1), whatever this process has
        done = {"settings": settings, "provenance": {**provenance(), "torch_threads": 1}, "runs": [],
                "server": version.strip()}
    have = {(r["epochs"], r["round"], r["workers"]) for r in done["runs"]}
    with throwaway_server(folder) as server:
        for r in range(args.rounds):
            order = args.workers[r % len(args.workers):] + args.workers[:r % len(args.workers)]
            for e, n in ((e, n) for e in args.epochs for n in order):
                if (e, r, n) in have:
                    continue
                name = f"e{e}_r{r}_w{n}_{time.time_ns()}"
                work = args.out / f"epochs-{e}" / f"round-{r}" / f"workers-{n}"
                run = {"epochs": e, "round": r, **measure(server, n, e, work, name)}
                print(f"{e} epochs, round {r}, {n} worker(s): {run['wall_seconds']:.1f} s, load "
                      f"{run['load_before'][0]} -> {run['load_after'][0]}", flush=True)
                done["runs"].append(run)
                args.out.mkdir(parents=True, exist_ok=True)
                atomic_write_json(progress, done, indent=1)
    prov = done["provenance"]
    runs = done["runs"]
    loads = [x for r in runs for x in (r["load_before"][0], r["load_after"][0])]
    result = {"provenance": prov, "recipe": RECIPE, "key": KEY, "values": list(VALUES), "epochs": args.epochs,
              "rounds": args.rounds, "server": done["server"],
              "runs": runs, "load_1min": {"min": min(loads), "max": max(loads)}, "load_average_at_end": load_average(),
              "by_epochs": {str(e): summary([r for r in runs if r["epochs"] == e], args.workers, prov["cores"])
                            for e in args.epochs}}
    report(DATA, result, dry_run=args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
