"""Sinusoid regression, the MAML paper's first experiment, at a CPU-sized schedule: MAML, first-order MAML and
multi-task pretraining (K = 0 in meta-training, the paper's "pretrained" comparison), each adapted with 10 SGD steps
on the 10 support points of 600 meta-test sinusoids.

    nice -n 10 python -m benchmarks.meta_sinusoid     # -> docs/data/meta-sinusoid.json + the page section

Runs go to runs/meta-sinusoid/<name> (reused when finished): recipes/meta/sinusoid-maml.yaml with 4 epochs of 100
meta-iterations (meta-batch 25) instead of 10.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from benchmarks import ROOT
from benchmarks.machine import machine
from benchmarks.meta_results import meta_run
from benchmarks.pages import publish

RECIPE = "recipes/meta/sinusoid-maml.yaml"
SCHEDULE = ["--trainer.max_epochs", "4"]
RUNS = {"MAML (second order, K = 1)": ["--method", "maml"],
        "first-order MAML (K = 1)": ["--method", "fomaml"],
        "multi-task pretraining (K = 0), then 10 steps": ["--method", "maml", "--inner.steps", "0"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "meta-sinusoid")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.chdir(ROOT)
    info = {"machine": machine(), "threads": 1, "recipe": RECIPE, "schedule": SCHEDULE}
    start = time.perf_counter()
    runs = {name: meta_run(RECIPE, [*extra, *SCHEDULE], args.out / f"run{i}")
            for i, (name, extra) in enumerate(RUNS.items())}
    info.update(wall_seconds=time.perf_counter() - start, load_average_at_end=[round(x, 2) for x in os.getloadavg()])
    rows = {}
    for name, (r, wall) in runs.items():
        t = r["test"]
        rows[name] = {"mse": t["mean"], "ci95": t["ci95"], "episodes": t["episodes"],
                      "seconds_per_meta_iteration": r["seconds_per_meta_iteration"], "wall_seconds": wall}
    doc = {"info": info, "rows": rows}
    print("rendered:", ", ".join(publish("docs/data/meta-sinusoid.json", doc)))


if __name__ == "__main__":
    main()
