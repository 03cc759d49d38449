"""Renderers of docs/backbones.md's measured sections from ``docs/data/backbones.json``, which
``python -m benchmarks.backbones`` writes."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import pct, stamp, table


def _args(init_args: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in init_args.items())


def small(d: dict[str, Any]) -> str:
    """The small backbones trained from scratch: parameters, accuracies, throughput."""
    rows = [[f"`{r['name']}`", _args(r["init_args"]) or "—", f"{r['parameters']:,}", pct(r["train_acc"]),
             pct(r["test_acc"]), f"{r['images_per_second']:,.0f}", f"{r['epoch_seconds']:.1f}"] for r in d["rows"]]
    return "\n".join([
        f"Measured by `python -m benchmarks.backbones` ({stamp(d['provenance'])}): each model trained from scratch by "
        f"`distill run {d['recipe']}` (generation 0 only) on {d['train_images']:,} {d['dataset']} training images, "
        f"{d['epochs']} epochs, {d['augmentation']}; training accuracy on the un-augmented training set, test "
        f"accuracy on all {d['test_images']:,} test images; images/s = training images seen per second of training "
        "(the engine's own loop, progress bar off).", "",
        *table(["model", "arguments", "parameters", "train acc %", "test acc %", "images/s (training)", "epoch s"],
               rows)])


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.0f}k"


def families(d: dict[str, Any]) -> str:
    """Parameter counts of every family, counted here, beside the published ones."""
    rows = [[" / ".join(f"`{m}`" for m in f["models"]),
             f"{' / '.join(_millions(n) for n in f['parameters'])} ({f['num_classes']} classes)", f["published"],
             f["source"]] for f in d["families"]]
    rows += [[f"`{r['name']}`" + (f" ({_args(r['init_args'])})" if r["init_args"] else ""),
              f"{_millions(r['parameters'])} (10 classes, grey)", "—", "distill"] for r in d["rows"]]
    return "\n".join(table(["model", "parameters (counted by `benchmarks/backbones.py`)", "published", "source"], rows))
