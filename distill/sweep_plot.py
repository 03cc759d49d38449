"""The figure of a ``distill sweep``: ``sweep.png`` (the study around it is :mod:`distill.sweep`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.io import atomic_writer


def plot_sweep(rows: list[dict[str, Any]], failed: list[Any], key: str, path: Path, metric: str) -> None:
    """``path``: the objective (in %) against the swept value, the failed values named in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    numeric = all(isinstance(r["value"], (int, float)) for r in rows)
    xs = [r["value"] for r in rows] if numeric else list(range(len(rows)))
    ax.plot(xs, [100 * r["objective"] for r in rows], "o-")
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log", base=2)
    if not numeric:
        ax.set_xticks(xs, [str(r["value"]) for r in rows])
    if failed:
        ax.set_title(f"failed: {', '.join(map(str, failed))}", fontsize=9)
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_writer(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
