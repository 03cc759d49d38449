"""``speed.steps_per_call`` timed alone: our CE epoch at K = 1, 4, 16 beside the bare loop and the plain ``Trainer``.

The same variants as the suite's (:mod:`suite_timing`: ``torch``, ``plain``, ``ours``, ``ours_k{K}``), in interleaved
rounds whose order rotates, without the suite's cache builds and profiles: the quick answer to "from which K does our
small step reach 0.95x a bare loop", with every round's ratio and the load average beside it.

Usage::

    python benchmarks/steps_per_call.py [--profile full] [--regime small] [--rounds 6] [--json OUT.json] [--write]

``--write`` stores the result (with :func:`pages.provenance`) in ``docs/data/steps-per-call.json`` and renders the
section ``speed-steps-per-call`` of docs/concepts.md from it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling modules, also when imported by the tests

import torch  # noqa: E402
from pages import ROOT, provenance, render  # noqa: E402
from suite_common import PROFILES, Profile, datamodule, engine_run, load_average, machine, recipe  # noqa: E402
from suite_timing import STEPS_PER_CALL, as_terminal, bare_epoch, fit, plain_fit, ratio, spread  # noqa: E402

from distill.optim import OptimizerConfig  # noqa: E402

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
    parser.add_argument("--regime", default="small")
    parser.add_argument("--rounds", type=int, default=None, help="default: the profile's")
    parser.add_argument("--json", default=None, help="write the result here (else print it)")
    parser.add_argument("--write", action="store_true", help=f"write {DATA} and render its docs section")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    profile = PROFILES[args.profile]
    threads = torch.get_num_threads()
    if profile.threads:
        torch.set_num_threads(profile.threads)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            timing = steps_per_call_timing(profile, args.regime, Path(tmp), args.rounds or profile.rounds)
            result = {"provenance": provenance(), "machine": machine(), **timing}
    finally:
        torch.set_num_threads(threads)
    result["load_average_at_end"] = load_average()
    text = json.dumps(result, indent=1, default=str)
    if args.json or args.write:
        for path in [args.json] * bool(args.json) + [ROOT / DATA] * args.write:
            Path(path).write_text(text + "\n")
    else:
        print(text)
    if args.write:
        render(["speed-steps-per-call"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
