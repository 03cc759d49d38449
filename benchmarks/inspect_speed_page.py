"""Renderer of docs/dark-knowledge.md's speed section from ``docs/data/inspect-speed.json``, which
``python -m benchmarks.inspect_speed --write`` writes: the wall and CPU time of a whole ``distill inspect``."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import stamp


def speed(d: dict[str, Any]) -> str:
    """Best, median and worst wall time of the whole command, its CPU time and the part that is imports."""
    wall, cpu, imp = sorted(d["wall_seconds"]), sorted(d["cpu_seconds"]), sorted(d["import_cpu_seconds"])
    return (f"Measured by `python -m benchmarks.inspect_speed --write` ({stamp(d['provenance'])}), "
            f"{len(wall)} runs of the whole command on {d['train']:,} × {d['classes']} caches, {d['generations']} "
            f"generations: wall {wall[0]:.1f} s best, {wall[len(wall) // 2]:.1f} s median, {wall[-1]:.1f} s worst; "
            f"CPU time of all its processes {cpu[0]:.1f}–{cpu[-1]:.1f} s, of which importing `distill.cli` and the "
            f"analysis module alone takes {imp[0]:.1f}–{imp[-1]:.1f} s of CPU.")
