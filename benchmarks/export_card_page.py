"""Renderer of docs/export.md's model card section from ``docs/data/export-card.json``, which
``python -m benchmarks.export_card`` writes."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import stamp


def card(d: dict[str, Any]) -> str:
    """The two commands, their wall times, what the export printed and the card it wrote (as Markdown source)."""
    seconds = d["wall_seconds"]
    return "\n".join([
        f"Measured ({stamp(d['provenance'])}; written by `python -m benchmarks.export_card`): `{d['run']}` "
        f"({seconds['run']:.0f} s), then `{d['export']}` ({seconds['export']:.0f} s) printed", "",
        "```text", d["printed"], "```", "",
        "and wrote this `README.md`:", "",
        "````markdown", d["card"].rstrip("\n"), "````"])
