"""Renderer of docs/meta-learning.md's sinusoid table from ``docs/data/meta-sinusoid.json``, which
``python -m benchmarks.meta_sinusoid`` writes."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import table
from benchmarks.meta_results_page import measured, only


def meta_sinusoid(d: dict[str, Any]) -> str:
    """MAML, first-order MAML and multi-task pretraining on sinusoid regression."""
    rows = [[name, f"{r['mse']:.3f} ± {r['ci95']:.3f}", f"{r['seconds_per_meta_iteration']:.4f}",
             f"{r['wall_seconds']:.0f}"] for name, r in d["rows"].items()]
    episodes = only([r["episodes"] for r in d["rows"].values()], "meta-test sinusoids")
    return "\n".join([*table(["method", "meta-test MSE after adaptation (± 95% CI)", "s / meta-iteration", "wall s"],
                             rows), "",
                      f"{episodes} meta-test sinusoids, the same for every row. "
                      f"{measured(d['info'], 'benchmarks/meta_sinusoid.py')}"])
