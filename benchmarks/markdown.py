"""What the renderers share: Markdown table lines, percentages, mean ± std, and the sentence naming a measurement's
machine, load, date and commit. Pure functions of their arguments (a leaf: imports nothing of ours)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def cells(values: Iterable[Any]) -> str:
    """One table line: ``| a | b |``."""
    return "| " + " | ".join(str(v) for v in values) + " |"


def table(header: Sequence[str], rows: Iterable[Iterable[Any]], align: Sequence[str] | None = None) -> list[str]:
    """A Markdown table's lines: the header, the rule (``---`` per column unless ``align`` says e.g. ``---:``), rows."""
    rule = align or ["---"] * len(header)
    return [cells(header), "|" + "|".join(rule) + "|", *(cells(r) for r in rows)]


def pct(x: float, digits: int = 2) -> str:
    """A fraction as percent: ``pct(0.5) == "50.00"``."""
    return f"{100 * float(x):.{digits}f}"


def mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` of ``scale * values`` (one value: that value alone)."""
    v = [scale * x for x in values]
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{statistics.mean(v):.{digits}f} ± {statistics.stdev(v):.{digits}f}"


def stamp(p: dict[str, Any]) -> str:
    """The machine, load, date and commit of a measurement (a :func:`benchmarks.machine.provenance`) in one sentence."""
    commit = p["commit"] + (" with uncommitted changes" if p.get("dirty") else "")
    threads = f"; {p['torch_threads']} torch thread(s) per process" if "torch_threads" in p else ""
    return (f"{p['cpu']}, {p['cores']} cores, {p['gpu'] or 'no GPU'}; load average at the start "
            f"{', '.join(map(str, p['load_average']))}{threads}; {p['date']}, commit `{commit}`")
