"""Renderer of docs/teacher.md's measured section from ``docs/data/teacher-example.json``, which
``python -m benchmarks.teacher_example`` writes: the "your own teacher" example run."""

from __future__ import annotations

from typing import Any

from benchmarks.markdown import stamp, table


def example(d: dict[str, Any]) -> str:
    """The loaded-teacher run's table, the two commands' wall times, and what one test image is worth."""
    rows = [[f"gen-{g['generation']}", f"`{g['backbone']}`", g["source"], g["epochs"], f"{100 * g['test_acc']:.2f}",
             f"{g['test_nll']:.3f}",
             "—" if g["agreement_with_teacher"] is None else f"{100 * g['agreement_with_teacher']:.2f}"]
            for g in d["generations"]]
    return "\n".join([
        *table(["model", "backbone", "source", "epochs", "test acc %", "NLL", "agree %"], rows), "",
        f"Measured by `python -m benchmarks.teacher_example` on {stamp(d['machine'])}. Wall time of each whole "
        f"command: teacher {d['teacher_wall_seconds']:.0f} s, loaded teacher + student {d['student_wall_seconds']:.0f} "
        f"s. {d['test_images']} test digits: one image is {100 / d['test_images']:.2f} points.",
    ])
