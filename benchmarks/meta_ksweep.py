"""The founding notes' questions about K, measured: meta-gradient norm, meta-test accuracy, time and memory against
the number of inner steps K = 1, 2, 5, 10, 20 for second-order MAML and first-order MAML.

    nice -n 10 python -m benchmarks.meta_ksweep     # -> docs/data/meta-ksweep.json, docs/img/meta-ksweep.png,
                                                    # and the page sections

Every point is a short real ``distill meta`` run (runs/meta-ksweep/<method>-k<K>, reused when finished) of
recipes/meta/digits-maml-5way.yaml with K inner steps in meta-training and at meta-test, inner lr 0.1 (fixed across K
so that only K changes), meta-batch 2, 40 meta-iterations, 200 meta-test episodes: CPU-sized, so the accuracies
compare K under one short schedule, not converged models.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import time
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch

from benchmarks import ROOT
from benchmarks.machine import machine
from benchmarks.meta_results import RECIPE, meta_run
from benchmarks.pages import publish

KS = (1, 2, 5, 10, 20)
METHODS = ("maml", "fomaml")
SCHEDULE = ["--inner.lr", "0.1", "--episodes.meta_batch", "2", "--episodes.train_episodes", "80",
            "--trainer.max_epochs", "1", "--episodes.test_episodes", "200", "--trainer.log_every_n_steps", "1"]


def grad_norms(run: Path) -> list[float]:
    """The meta-gradient norm of every meta-iteration, from the run's metrics.csv."""
    with open(run / "logs" / "metrics.csv") as f:
        return [float(row["train/meta_grad_norm_step"]) for row in csv.DictReader(f)
                if row.get("train/meta_grad_norm_step")]


def figure(points: dict, path: Path) -> None:
    matplotlib.use("Agg")
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(12, 3.4))
    for method, style in zip(METHODS, ("o-", "s--"), strict=True):
        ks = [p["K"] for p in points[method]]
        a.plot(ks, [p["grad_norm_first"] for p in points[method]], style, label=f"{method}, first iteration")
        a.plot(ks, [p["grad_norm_mean"] for p in points[method]], style, alpha=0.5, label=f"{method}, mean")
        b.errorbar(ks, [100 * p["accuracy"] for p in points[method]], [100 * p["ci95"] for p in points[method]],
                   fmt=style, capsize=3, label=method)
        c.plot(ks, [p["seconds_per_meta_iteration"] for p in points[method]], style, label=method)
    for ax, title in ((a, "meta-gradient norm"), (b, "meta-test accuracy % (95% CI)"), (c, "s / meta-iteration")):
        ax.set_xscale("log")
        ax.set_xticks(KS, [str(k) for k in KS])
        ax.set_xlabel("inner steps K")
        ax.set_title(title)
        ax.legend(fontsize=7)
    a.set_yscale("log")
    c.set_yscale("log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "meta-ksweep")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    info = {"machine": machine(), "threads": args.threads, "recipe": RECIPE, "schedule": SCHEDULE}
    start = time.perf_counter()
    points: dict[str, list[dict]] = {m: [] for m in METHODS}
    for method in METHODS:
        for k in KS:
            run = args.out / f"{method}-k{k}"
            r, wall = meta_run(RECIPE, ["--method", method, "--inner.steps", str(k), "--inner.eval_steps", str(k),
                                        *SCHEDULE], run)
            norms = grad_norms(run)
            finite = [g for g in norms if math.isfinite(g)]
            points[method].append({
                "K": k, "grad_norm_first": norms[0], "grad_norm_mean": sum(finite) / max(len(finite), 1),
                "grad_norm_max": max(finite, default=float("nan")), "non_finite_iterations": len(norms) - len(finite),
                "accuracy": r["test"]["mean"], "ci95": r["test"]["ci95"], "episodes": r["test"]["episodes"],
                "seconds_per_meta_iteration": r["seconds_per_meta_iteration"],
                "graph_mib": r["graph_mib_per_meta_iteration"], "wall_seconds": wall})
    info.update(wall_seconds=time.perf_counter() - start, load_average_at_end=[round(x, 2) for x in os.getloadavg()])
    doc = {"info": info, "points": points}
    figure(points, ROOT / "docs" / "img" / "meta-ksweep.png")
    print("rendered:", ", ".join(publish("docs/data/meta-ksweep.json", doc)))


if __name__ == "__main__":
    main()
