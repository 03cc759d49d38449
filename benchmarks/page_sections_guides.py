"""The renderers of the guide pages' generated sections (see ``benchmarks/pages.py``): JSON in, markdown out.

``docs/gen_teacher_example.py`` measures the "your own teacher" example of docs/teacher.md and
``benchmarks/prompt_results.py`` the prompt-tuning results included into docs/prompts.md; both write JSON, and
every number below is read from it.
"""

from __future__ import annotations

from typing import Any

import prompt_results
from pages import section, stamp

section("prompt-results", "docs/snippets/prompt-results.md", "docs/snippets/prompt-results.json",
        "benchmarks/prompt_results.py")(prompt_results.render)


@section("teacher-example", "docs/teacher.md", "docs/data/teacher-example.json", "docs/gen_teacher_example.py")
def teacher_example(d: dict[str, Any]) -> str:
    """The loaded-teacher run's table, the two commands' wall times, and what one test image is worth."""
    rows = ["| model | backbone | source | epochs | test acc % | NLL | agree % |", "|---|---|---|---|---|---|---|"]
    for g in d["generations"]:
        agree = "—" if g["agreement_with_teacher"] is None else f"{100 * g['agreement_with_teacher']:.2f}"
        rows.append(f"| gen-{g['generation']} | `{g['backbone']}` | {g['source']} | {g['epochs']} | "
                    f"{100 * g['test_acc']:.2f} | {g['test_nll']:.3f} | {agree} |")
    return "\n".join([
        *rows, "",
        f"Measured by `python docs/gen_teacher_example.py` on {stamp(d['machine'])}. Wall time of each whole command: "
        f"teacher {d['teacher_wall_seconds']:.0f} s, loaded teacher + student {d['student_wall_seconds']:.0f} s. "
        f"{d['test_images']} test digits: one image is {100 / d['test_images']:.2f} points.",
    ])
