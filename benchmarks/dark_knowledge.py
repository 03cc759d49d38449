"""Make the dark-knowledge page's runs, inspect them, copy the figures and render the page's numbers.

    python -m benchmarks.dark_knowledge

Runs (reused when finished): the digits quick start (``runs/dark-knowledge/digits``), an under-trained digits run
(2 epochs, one student: a teacher that still has label-noise suspects) and the Fashion-MNIST recipe's seed-0 run of
the results script (``runs/results/fashion-mnist-seed0``, made here if missing). Each is inspected with
``distill inspect``; the figures go to ``docs/img/``, the numbers (from ``drift.json``, ``neighbours.json`` and the
runs' summaries) to ``docs/data/dark-knowledge.json``, rendered into ``docs/dark-knowledge.md``
(``benchmarks/dark_knowledge_page.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks import ROOT
from benchmarks.machine import provenance
from benchmarks.pages import publish

RUNS = ROOT / "runs"
# name -> (run directory, `distill run` arguments, `distill inspect` extra arguments, figures to copy: source -> img)
CASES: dict[str, tuple[Path, list[str], list[str], dict[str, str]]] = {
    "digits": (RUNS / "dark-knowledge" / "digits", ["recipes/digits-ban.yaml"], [], {
        "gen-0/similarity_heatmap.png": "inspect-digits-similarity-heatmap.png",
        "gen-0/dendrogram.png": "inspect-digits-dendrogram.png",
        "gen-2/reliability.png": "inspect-digits-reliability.png"}),
    "digits-undertrained": (RUNS / "dark-knowledge" / "digits-e2",
                            ["recipes/digits-ban.yaml", "--trainer.max_epochs", "2", "--generations", "1"],
                            ["--threshold", "0.5"], {"gen-0/suspects.png": "inspect-digits-suspects.png"}),
    "fashion-mnist": (RUNS / "results" / "fashion-mnist-seed0", ["recipes/fashion-mnist-ban.yaml", "--seed", "0"], [],
                      {"gen-0/similarity_heatmap.png": "inspect-fmnist-gen0-similarity_heatmap.png",
                       "gen-0/dendrogram.png": "inspect-fmnist-gen0-dendrogram.png",
                       "gen-0/suspects.png": "inspect-fmnist-gen0-suspects.png",
                       "gen-0/reliability.png": "inspect-fmnist-gen0-reliability.png",
                       "gen-2/reliability.png": "inspect-fmnist-gen2-reliability.png"}),
}


def _distill(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "distill.cli", *args], cwd=ROOT, check=True)


def case(name: str) -> dict:
    out, run_args, inspect_args, figures = CASES[name]
    if not (out / "summary.json").is_file():
        resume = ["--resume"] if (out / "config.yaml").is_file() else []
        _distill("run", *run_args, "--trainer.enable_progress_bar", "false", "--out", str(out), *resume)
    _distill("inspect", str(out), *inspect_args)
    inspect = out / "inspect"
    for src, dst in figures.items():
        if (inspect / src).is_file():
            shutil.copy(inspect / src, ROOT / "docs" / "img" / dst)
    drift = json.loads((inspect / "drift.json").read_text())
    gens = sorted(int(p.name.split("-")[1]) for p in inspect.glob("gen-*"))
    return {
        "run": str(out.relative_to(ROOT)), "command": " ".join(["distill", "run", *run_args]),
        "inspect": " ".join(["distill", "inspect", str(out.relative_to(ROOT)), *inspect_args]),
        "summary": json.loads((out / "summary.json").read_text()), "drift": drift,
        "neighbours": {str(k): json.loads((inspect / f"gen-{k}" / "neighbours.json").read_text()) for k in gens},
        "similarity_gen0": json.loads((inspect / "gen-0" / "similarity.json").read_text()),
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help, nothing else
    prov = provenance()
    data = {"provenance": prov, "cases": {name: case(name) for name in CASES}}
    print("rendered:", ", ".join(publish("docs/data/dark-knowledge.json", data)))


if __name__ == "__main__":
    main()
