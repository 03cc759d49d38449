"""Renderer of docs/datasets.md's speed section from ``docs/data/data-pipeline.json``, which
``python -m benchmarks.data_pipeline`` writes: epoch times of the in-memory and the torchvision pipelines."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import stamp, table


def _spread(values: list[float], fmt: str, unit: str = "") -> str:
    """``median (min … max)`` of ``values``."""
    v = sorted(values)
    return f"{v[len(v) // 2]:{fmt}}{unit} ({v[0]:{fmt}} … {v[-1]:{fmt}})"


def speed(d: dict[str, Any]) -> str:
    """Epoch seconds of both pipelines per model, their per-round ratio, and the fast path's setup time."""
    rows = [[r["model"], *(_spread([x * r["epoch_batches"] for x in r["seconds_per_batch"][k]], ".1f")
                           for k in ("memory", "torchvision")),
             _spread(r["ratio_per_round"], ".1f", "x"), f"{r['setup_seconds']['memory']:.1f}"] for r in d["results"]]
    return "\n".join([
        f"Measured by `python -m benchmarks.data_pipeline` ({stamp(d['provenance'])}): the CIFAR-10 JPEG copy "
        f"(50,000 images), batch {d['batch_size']}, crop + flip, {d['rounds']} interleaved rounds of "
        f"{d['batches']} batches per pipeline, torch threads {d['torch_threads']}, {d['workers']} DataLoader "
        "workers for the torchvision path; epoch times extrapolated from the seconds per batch.", "",
        *table(["model", "fast path epoch s (min … max)", "torchvision path epoch s (min … max)",
                "torchvision / fast, per round (min … max)", "fast path setup s"], rows)])
