"""The end-of-run table: one row per generation and per ensemble."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _params(counts: dict[str, int] | None) -> str:
    """Trainable parameters, with ``/total`` only when some are frozen (a prompted student): a narrow column."""
    if not counts:
        return "—"
    if counts["trainable"] == counts["total"]:
        return f"{counts['total']:,}"
    return f"{counts['trainable']:,}/{counts['total']:,}"


def short_label(label: str, width: int = 32) -> str:
    """A backbone label for a table column: as it is up to ``width`` characters (``small_cnn(width=8)``), else its
    name with the arguments elided (``prompted_vit(…)``; ``summary.json`` keeps the whole label)."""
    return label if len(label) <= width else label.split("(", 1)[0] + "(…)"


def summary_table(summary: dict[str, Any]) -> Table:
    """A rich table of ``summary.json``: accuracies in percent, NLL and ECE as fractions, seconds of training.

    ``train %`` is the accuracy on the un-augmented training set and ``test %`` on the test set (— in summaries
    written before training accuracy was recorded); ``params`` counts trainable parameters (``trainable/total``
    when part of the network is frozen); a long backbone label is shortened (:func:`short_label`).
    """
    table = Table(title=f"{summary['recipe']} (seed {summary['seed']})")
    for col in ("model", "backbone", "teacher", "epochs", "train %", "test %", "NLL", "ECE", "agree %", "train s",
                "params"):
        table.add_column(col, justify="left" if col in ("model", "backbone", "teacher") else "right")
    for g in summary["generations"]:
        t = g["test"]
        learned = g["teacher"] or ("loaded" if str(g.get("source", "")).startswith("loaded") else "labels")
        table.add_row(f"gen-{g['generation']}", short_label(g["backbone"]), learned, str(g["epochs"]),
                      _pct(g.get("train", {}).get("acc")), _pct(t["acc"]), f"{t['nll']:.3f}", f"{t['ece']:.3f}",
                      _pct(g["agreement_with_teacher"]), f"{g['train_seconds']:.1f}", _params(g.get("parameters")))
    for e in summary["ensembles"]:
        members = e["members"]
        table.add_row(f"ensemble {members[0]}..{members[-1]}", "", "", "", "", _pct(e["test"]["acc"]),
                      f"{e['test']['nll']:.3f}", "", "", "", "")
    return table
