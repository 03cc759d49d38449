"""Renderers of docs/methods.md's measured sections from ``docs/data/methods.json``, which
``python -m benchmarks.methods`` writes: the teacher, the setting, and every method's student side by side."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import mean_std, table


def setting(d: dict[str, Any]) -> str:
    """The machine, date and commit, and the setting every run shares (data, teacher, student schedule, seeds)."""
    p, s, t = d["provenance"], d["setting"], d["teacher"]
    return "\n".join([
        f"Machine: {p['cpu']}, {p['cores']} cores, {p['gpu'] or 'no GPU'} (load average {p['load_average_at_start']} "
        f"when written). Date: {p['date']}. Commit: `{p['commit'][:10]}`.", "",
        f"Setting: the CIFAR-10 JPEG copy, a fixed random {s['train_images']:,} of the training images, the full "
        f"{s['test_images']:,} test images; teacher `{t['backbone']}` trained once for {t['epochs']} epochs (seed "
        f"{t['seed']}; {t['wall_seconds']:.0f} s wall), test accuracy {100 * t['test_acc']:.2f}%; student "
        f"`{s['student']}`, {s['epochs']} epochs, {s['schedule']}, seeds {', '.join(map(str, s['seeds']))}."])


def methods(d: dict[str, Any]) -> str:
    """One row per method: test accuracy (mean ± std and per seed), fit seconds per epoch, wall seconds, added
    trainable parameters and what the method's settings are."""
    rows = [[r["method"], mean_std([x["test_acc"] for x in r["seeds"]]),
             ", ".join(f"{100 * x['test_acc']:.2f}" for x in r["seeds"]), f"{r['fit_seconds_per_epoch']:.1f}",
             ", ".join(f"{x['wall_seconds']:.0f}" for x in r["seeds"]), f"{r['added_parameters']:,}", r["setting"]]
            for r in d["rows"]]
    return "\n".join(table(["method", "test accuracy % (mean ± std)", "per seed", "fit s / epoch (mean)",
                            "wall s per run", "added trainable parameters", "setting"], rows))


def cost(d: dict[str, Any]) -> str:
    """What the measured seconds per epoch say about cached against online methods."""
    c = d["relative_cost"]

    def span(lo_hi: list[float]) -> str:
        return f"{lo_hi[0]:.2f}-{lo_hi[1]:.2f}x"
    return (f"Relative to the student alone ({c['alone_seconds_per_epoch']:.1f} s/epoch), the methods read from the "
            f"soft-label cache took {span(c['cached'])} its time per epoch and those with an online teacher "
            f"{span(c['online'])}.")
