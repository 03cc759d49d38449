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


@section("speed-steps-per-call", "docs/concepts.md", "docs/data/steps-per-call.json", "benchmarks/steps_per_call.py")
def speed_steps_per_call(d: dict[str, Any]) -> str:
    loads = [round(x[0], 2) for x in d["load_average_per_round"]]
    out = [f"Measured by `python benchmarks/steps_per_call.py --write` ({stamp(d['provenance'])}): regime "
           f"{d['regime']}, {d['data']}, backbone `{d['backbone']}`, a bare step of {d['bare_step_ms']:.2f} ms; "
           f"{d['rounds']} interleaved rounds, 1-minute load average per round {loads}.", "",
           "| our epoch | epoch s, median (min … max) | bare epoch / ours, ratio of medians | per round (min … max) "
           "| goal >= 0.95 |", "|---|---|---|---|---|"]
    for k in d["steps_per_call"]:
        sec, r = d["seconds"][f"ours_k{k}"], d["lightning_over_torch"][str(k)]
        out.append(f"| `steps_per_call: {k}` | {sec['median']:.3f} ({sec['min']:.3f} … {sec['max']:.3f}) | "
                   f"{r['value']:.3f} | {r['min']:.3f} … {r['max']:.3f} | {r['verdict']} |")
    p, sec = d["plain_over_torch"], d["seconds"]["plain"]
    out.append(f"| plain `Trainer`, same math (K = 1) | {sec['median']:.3f} ({sec['min']:.3f} … {sec['max']:.3f}) "
               f"| {p['value']:.3f} | {p['min']:.3f} … {p['max']:.3f} | - |")
    return "\n".join(out + ["", "\"met\" needs the ratio of medians and every round's ratio at 0.95 or above; "
                             "\"within noise\": some rounds clear it and some do not."])
