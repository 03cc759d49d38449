"""Renderers of the language-model results in docs/prompt-language.md from ``docs/data/prompt-region.json``, which
``python -m benchmarks.prompt_region`` writes: the setting, the methods on each base, the size claim, a generation."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.markdown import mean_std, pct, table


def _mean(seeds: list[dict[str, Any]]) -> float:
    return statistics.mean(x["test_acc"] for x in seeds)


def setting(d: dict[str, Any]) -> str:
    """The machine, load, date and commit, and how the runs shared it."""
    p = d["provenance"]
    steps = ", ".join(f"{b} {n}" for b, n in d["steps_per_epoch"].items())
    return (f"Machine: {p['cpu']}, {p['cores']} cores, {p['gpu'] or 'no GPU'}; {p['jobs']} runs at once, "
            f"{p['threads_per_run']} torch thread each; load average {', '.join(map(str, p['load_average_at_start']))}"
            f" at the start and {', '.join(map(str, p['load_average_at_end']))} at the end (the machine was shared: "
            f"seconds per step are this load's, each row's seeds say theirs). Date: {p['date']}. Commit: "
            f"`{p['commit'][:10]}`. Optimizer steps per epoch: {steps}.")


def methods(d: dict[str, Any]) -> str:
    """One row per base and method: accuracy (mean ± std, per seed), trainable parameters, checkpoint bytes, seconds
    per step, peak resident memory."""
    rows = [[r["base"], r["method"], mean_std([x["test_acc"] for x in r["seeds"]]),
             ", ".join(pct(x["test_acc"]) for x in r["seeds"]), f"{r['parameters']['trainable']:,}",
             f"{r['parameters']['total']:,}", f"{r['checkpoint_bytes']:,}", str(r["epochs"]),
             f"{r['seconds_per_step']:.3f}", f"{r['peak_rss_mib']:,.0f}", r["setting"]] for r in d["rows"]]
    return "\n".join(table(["base", "method", "test accuracy % (mean ± std)", "per seed", "trainable parameters",
                            "all parameters", "checkpoint bytes", "epochs", "fit s / step", "peak memory MiB",
                            "what trains"], rows))


def size_claim(d: dict[str, Any]) -> str:
    """Full fine-tuning's accuracy minus shallow and deep prompting's, per base, in points."""
    rows = [[g["base"], g["method"], f"{100 * g['gap']:+.2f}"] for g in d["gaps"]]
    return "\n".join(table(["base", "prompt", "full fine-tuning minus prompt (points)"], rows))


def generation(d: dict[str, Any]) -> str:
    """The prompted student taught through the cache, beside the same student from labels alone."""
    g = d.get("generation")
    if g is None:
        return "Not measured in this run (it needs both bases)."
    rows = [["teacher (generation 0)", g["teacher"], pct(g["teacher_test_acc"]), ""],
            ["student from labels alone (alpha 0)", g["student"], mean_std([x["test_acc"] for x in g["labels_only"]]),
             ", ".join(pct(x["test_acc"]) for x in g["labels_only"])],
            [f"student taught through the cache ({g['kd']})", g["student"],
             mean_std([x["test_acc"] for x in g["taught"]]), ", ".join(pct(x["test_acc"]) for x in g["taught"])]]
    diff = 100 * (_mean(g["taught"]) - _mean(g["labels_only"]))
    return "\n".join([*table(["generation", "model", "test accuracy %", "per seed"], rows), "",
                      f"Taught minus labels alone: {diff:+.2f} points (mean over the same seeds)."])
