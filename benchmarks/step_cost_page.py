"""Renderer of docs/methods.md's step-cost section from ``docs/data/step-cost.json``, which ``python -m
benchmarks.step_cost --write`` writes: seconds per training step of a student served from the cache, per method,
beside cross-entropy alone."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import stamp


def cost(d: dict[str, Any]) -> str:
    """The setting in one sentence and one row per method: median milliseconds per step and the ratio to CE."""
    p, s = d["provenance"], d["setting"]
    lines = [f"Measured by `python -m benchmarks.step_cost --write` ({stamp(p)}; load average at the end "
             f"{', '.join(map(str, p['load_average_at_end']))}): a `{s['student']}` student, batches of "
             f"{s['batch']} images, its teacher a soft-label cache of {s['samples']:,} samples × {s['classes']} "
             f"classes with {s['embedding_dim']}-d embeddings; median of {s['steps']} steps of each method, timed in "
             "turn (forward with the feature tap, cache lookup, loss, backward, SGD step).", "",
             "| method | ms per step (median) | ÷ student alone (CE) |", "|---|---|---|"]
    lines += [f"| {r['method']} | {r['median_seconds'] * 1e3:,.1f} | {r['ratio_to_ce']:.2f} |" for r in d["rows"]]
    cached = [r["ratio_to_ce"] for r in d["rows"][1:]]
    lines += ["", f"Served from the cache, a step of every method took {min(cached):.2f}-{max(cached):.2f}× the "
              "cross-entropy step."]
    return "\n".join(lines) + "\n"
