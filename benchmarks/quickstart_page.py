"""Renderers of the quick start's measured sections (README.md, docs/quickstart.md, docs/recipes.md) from
``docs/data/quickstart.json``, which ``python -m benchmarks.quickstart`` writes."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from benchmarks.markdown import pct, stamp
from distill.summary import summary_table


def rich_table(summary: dict[str, Any]) -> str:
    """The end-of-run table exactly as ``distill run`` prints it (120 columns, no colour)."""
    console = Console(width=120, record=True, color_system=None, file=io.StringIO())
    console.print(summary_table(summary))
    return console.export_text().rstrip("\n")


def table(d: dict[str, Any]) -> str:
    """The run's table with the command, seed, wall time and machine it was measured with."""
    intro = (f"The quick start ends with this table (`{d['command']}`, seed {d['summary']['seed']}; "
             f"{d['wall_seconds']:.0f} s wall time for the whole command after install; {stamp(d['provenance'])}; "
             f"written by `python -m benchmarks.quickstart`):")
    return "\n".join([intro, "", "```", rich_table(d["summary"]), "```"])


def recipes_digits(d: dict[str, Any]) -> str:
    """The digits recipe's accuracies in one sentence, and what one test image is worth."""
    s = d["summary"]
    gens = ", ".join(f"{pct(g['test']['acc'])}% (gen-{g['generation']})" for g in s["generations"])
    ens = ", ".join(f"{e['members'][0]}..{e['members'][-1]} {pct(e['test']['acc'])}%" for e in s["ensembles"])
    train = ", ".join(pct(g["train"]["acc"]) for g in s["generations"])
    n_test = d["test_images"]
    return (f"Measured ({stamp(d['provenance'])}; seed {s['seed']}; {d['wall_seconds']:.0f} s for the whole command): "
            f"test accuracy {gens}; ensembles {ens}; training accuracy {train}%. One test image is "
            f"{100 / n_test:.2f} points of the {n_test} test digits.")
