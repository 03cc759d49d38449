"""The meta-learning results table of docs/meta-learning.md: MAML, FOMAML, ANIL, Meta-SGD and the three paradigms
on the same 600 meta-test episodes of one recipe.

    nice -n 10 python -m benchmarks.meta_results            # -> docs/data/meta-results.json + the page sections

Each method is a real ``distill meta`` run into runs/meta-results/<name>; a finished run (results.json) is reused,
so the script can be interrupted and re-run. Nothing in the table is typed in: the JSON is written from the runs and
the page sections are rendered from the JSON (``benchmarks/meta_results_page.py``; ``python -m benchmarks.pages``
re-renders them without running anything).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from benchmarks import ROOT
from benchmarks.machine import machine
from benchmarks.pages import publish
from distill.cli import main as distill

RECIPE = "recipes/meta/digits-maml-5way.yaml"
BASELINES = '{"epochs": 10, "finetune_steps": 10, "finetune_lr": 0.1}'
# name -> overrides of RECIPE
RUNS: dict[str, list[str]] = {
    "maml": ["--method", "maml"],
    "fomaml": ["--method", "fomaml"],
    "anil": ["--method", "anil", "--baselines", BASELINES],
    "maml_meta_sgd": ["--method", "maml", "--inner.learn_lr", "true"],
}


def meta_run(recipe: str, overrides: list[str], out: Path) -> tuple[dict, float]:
    """``distill meta recipe overrides --out out`` (reused when finished); results and the wall seconds."""
    results, timing = out / "results.json", out / "wall_seconds.txt"
    if not results.is_file():
        start = time.perf_counter()
        args = ["meta", recipe, *overrides, "--out", str(out)]
        if (out / "config.yaml").is_file():
            args.append("--resume")
        if distill(args) != 0:
            raise SystemExit(f"distill {' '.join(args)} failed")
        timing.write_text(f"{time.perf_counter() - start:.1f}\n")
    return json.loads(results.read_text()), float(timing.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "meta-results")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    info = {"machine": machine(), "threads": args.threads, "recipe": RECIPE}
    start = time.perf_counter()
    runs = {name: meta_run(RECIPE, extra, args.out / name) for name, extra in RUNS.items()}
    info.update(wall_seconds=time.perf_counter() - start, load_average_at_end=[round(x, 2) for x in os.getloadavg()])
    strip = {name: {k: v for k, v in r.items() if k != "test"} | {"test": {k: v for k, v in r["test"].items()
                                                                           if k != "scores"}}
             for name, (r, _) in runs.items()}
    for r in strip.values():
        for b in r.get("baselines", {}).values():
            b.pop("scores", None)
    doc = {"info": info, "runs": strip, "wall_seconds": {name: w for name, (_, w) in runs.items()}}
    print("rendered:", ", ".join(publish("docs/data/meta-results.json", doc)))


if __name__ == "__main__":
    main()
