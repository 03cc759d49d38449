"""``speed.steps_per_call`` timed alone: our CE epoch at K = 1, 4, 16 beside the bare loop and the plain ``Trainer``.

The suite's variants (:mod:`benchmarks.suite_timing`: ``torch``, ``plain``, ``ours`` and ``ours_k{K}``) in
interleaved rounds whose order rotates, without the suite's cache builds and profiles: the quick answer to "from
which K does our small step reach 0.95x a bare loop", every round's ratio and load average beside it. Run::

    python -m benchmarks.steps_per_call [--profile full] [--regimes small large] [--rounds 6] [--no-write]

It writes ``docs/data/steps-per-call.json`` and renders docs/concepts.md's section from it
(``benchmarks/steps_per_call_page.py``); ``--no-write`` prints the result instead.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.machine import load_average, machine, provenance
from benchmarks.pages import report
from benchmarks.suite_common import PROFILES, Profile, datamodule, engine_run, recipe
from benchmarks.suite_timing import STEPS_PER_CALL, as_terminal, bare_epoch, fit, plain_fit, ratio, spread
from distill.optim import OptimizerConfig

DATA = "docs/data/steps-per-call.json"


def steps_per_call_timing(profile: Profile, regime_name: str, work: Path, rounds: int,
                          ks: tuple[int, ...] = (1, *STEPS_PER_CALL)) -> dict[str, Any]:
    """Epoch seconds of every variant per round, and each ``ours_k{K}`` as a throughput ratio to the bare loop."""
    regime = next(r for r in profile.regimes if r.name == regime_name)
    dm, what = datamodule(profile, regime.train, True, regime)
    epochs = profile.warmup_epochs + 1
    runs = {k: engine_run(recipe(profile, regime.train, epochs, "--speed.steps_per_call", str(k), regime=regime,
                                 progress_bar=True), work / f"k{k}", dm) for k in ks}
    optimizer = OptimizerConfig(**recipe(profile, regime.train, epochs, regime=regime).optimizer.as_dict())
    variants: dict[str, Callable[[], float]] = {
        "torch": lambda: bare_epoch(profile, regime, dm, optimizer, epochs),
        "plain": lambda: plain_fit(profile, regime, dm, optimizer, epochs),
        **{f"ours_k{k}": (lambda k=k: fit(runs[k], 0, profile.device).epoch_seconds) for k in ks},
    }
    t: dict[str, list[float]] = {name: [] for name in variants}
    loads, names = [], list(variants)
    with as_terminal():
        for r in range(rounds):
            loads.append(load_average())
            for name in names[r % len(names):] + names[:r % len(names)]:
                t[name].append(variants[name]())
    steps = -(-len(dm.train_set) // regime.batch_size)
    return {
        "data": f"{what}, {len(dm.train_set)} training images, batch {regime.batch_size} ({steps} steps an epoch)",
        "regime": regime.name, "backbone": regime.backbone, "rounds": rounds,
        "seconds": {name: spread(v) for name, v in t.items()},
        "bare_step_ms": 1000 * spread(t["torch"])["median"] / steps,
        "plain_over_torch": ratio("plain_over_torch", t["torch"], t["plain"]),
        "steps_per_call": list(ks),
        "lightning_over_torch": {str(k): ratio("lightning_over_torch", t["torch"], t[f"ours_k{k}"]) for k in ks},
        "load_average_per_round": loads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--regimes", nargs="+", default=["small", "large"], help="the profile's regimes to time")
    parser.add_argument("--rounds", type=int, default=None, help="default: the profile's")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/data and the page alone")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    profile = PROFILES[args.profile]
    threads = torch.get_num_threads()
    if profile.threads:
        torch.set_num_threads(profile.threads)
    try:
        prov = provenance()
        with tempfile.TemporaryDirectory() as tmp:
            regimes = {name: steps_per_call_timing(profile, name, Path(tmp) / name, args.rounds or profile.rounds)
                       for name in args.regimes}
        result = {"provenance": prov, "machine": machine(), "profile": profile.name, "regimes": regimes,
                  "load_average_at_end": load_average()}
    finally:
        torch.set_num_threads(threads)
    result = json.loads(json.dumps(result, default=str))
    report(DATA, result, dry_run=args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
