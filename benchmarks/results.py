"""Regenerate docs/results.md: the shipped recipes over several seeds, the BAN-variant table, wall and CPU time.

    python -m benchmarks.results                          # every dataset of RUNS and the variants, seeds 0 1 2
    python -m benchmarks.results --only fashion-mnist --seeds 0 1 2 --no-variants

Each (recipe, seed) is a real ``distill run`` into ``runs/results/<name>-seed<k>``; a variant run loads that seed's
generation 0 (``load: {checkpoint: ...}``), so every variant's students learn from the same teacher as the standard
run's. Finished runs are reused (their summary.json is read) and ``docs/data/results.json`` is rewritten after every
run, so the script can be interrupted and re-run. The page sections are rendered from that JSON
(``benchmarks/results_page.py``): nothing on them is typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import ROOT
from benchmarks.machine import provenance
from benchmarks.pages import publish
from distill.analysis import load_run
from distill.analysis.drift import entropy

# name -> (recipe, extra overrides, what the schedule is). The recipes carry their own CPU-sized schedules.
RUNS: dict[str, tuple[str, list[str], str]] = {
    "digits": ("recipes/digits-ban.yaml", [], "the quick-start recipe as shipped: small_cnn, all 1,257 training "
               "digits, 15 epochs per generation; 540 test digits, so one image is 0.19 points"),
    "fashion-mnist": ("recipes/fashion-mnist-ban.yaml", [], "the recipe as shipped: small_resnet8 (stem stride 2), a "
                      "fixed random 2,000 training images, no augmentation, 20 epochs per generation"),
    "cifar10-jpeg": ("recipes/cifar10-ban-small.yaml", [], "the recipe as shipped: small_resnet8 (stem stride 2), a "
                     "fixed random 2,000 training images, no augmentation, 20 epochs per generation"),
}
VARIANT_DATASET = "fashion-mnist"
# label -> overrides of the dataset's recipe; every variant loads the standard run's generation 0 of the same seed.
VARIANTS: dict[str, list[str]] = {
    "Born-Again, teacher-only (T = 1, α = 1)": [],
    "Hinton KD (T = 4, α = 0.9)": ["--kd.temperature", "4", "--kd.alpha", "0.9"],
    "CWTM (confidence-weighted by teacher max)": ["--kd.variant", "cwtm"],
    "DKPP (dark knowledge with permuted predictions)": ["--kd.variant", "dkpp"],
    "ensemble teacher (generations 0..k-1)": ["--kd.teacher", "ensemble"],
}
GOAL = {"student_margin": 0.1, "ensemble_gain": 0.5}
DATA = "docs/data/results.json"


def _timed_run(args: list[str], out: Path) -> dict:
    """Run ``distill run ARGS --out OUT`` (resuming a killed one) and record wall and CPU seconds and the load."""
    timing = out / "timing.json"
    if not (out / "summary.json").is_file():
        load = [round(x, 2) for x in os.getloadavg()]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        resume = ["--resume"] if (out / "config.yaml").is_file() else []
        subprocess.run([sys.executable, "-m", "distill.cli", "run", *args, "--trainer.enable_progress_bar", "false",
                        "--out", str(out), *resume], cwd=ROOT, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        prov = provenance()
        timing.write_text(json.dumps({"wall_seconds": round(time.perf_counter() - start, 1),
                                      "cpu_seconds": round(cpu, 1), "load_average": load, "resumed": bool(resume),
                                      "threads": os.environ.get("OMP_NUM_THREADS", "default"),
                                      "commit": prov["commit"] + ("+dirty" if prov["dirty"] else ""),
                                      "date": prov["date"]}))
    record = json.loads(timing.read_text()) if timing.is_file() else {"wall_seconds": float("nan")}
    return {**record, "summary": json.loads((out / "summary.json").read_text()),
            "teacher_entropy": _teacher_entropy(out)}


def _teacher_entropy(out: Path) -> dict[str, float]:
    """Mean entropy (nats, T = 1) of each cached generation's soft labels on the training set: how soft they are."""
    run = load_run(out, temperature=1.0)
    return {str(k): float(np.mean(entropy(run.soft_labels(k)))) for k in sorted(run.caches)}


def _save(data: dict) -> None:
    """Merge this invocation's datasets (and variants) into the JSON on disk, so invocations can run side by side,
    and re-render the sections drawn from it."""
    path = ROOT / DATA
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged.update({k: data[k] for k in ("provenance", "goal")})
    datasets = {**merged.get("datasets", {}), **data["datasets"]}
    merged["datasets"] = {k: datasets[k] for k in RUNS if k in datasets}  # the page's order
    merged["variants"] = data["variants"] or merged.get("variants")
    publish(DATA, merged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--variant-seeds", nargs="*", type=int, default=None, help="default: --seeds")
    parser.add_argument("--no-variants", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "results")
    args = parser.parse_args()
    data = {"provenance": provenance(), "goal": GOAL, "datasets": {}, "variants": None}
    for name in args.only:
        recipe, extra, schedule = RUNS[name]
        entry = data["datasets"][name] = {"recipe": recipe, "overrides": extra, "schedule": schedule, "seeds": {}}
        for seed in args.seeds:
            entry["seeds"][str(seed)] = _timed_run([recipe, "--seed", str(seed), *extra],
                                                   args.out / f"{name}-seed{seed}")
            _save(data)
    if not args.no_variants and VARIANT_DATASET in args.only:
        recipe, extra, _ = RUNS[VARIANT_DATASET]
        seeds = args.variant_seeds if args.variant_seeds is not None else args.seeds
        rows = []
        data["variants"] = {
            "dataset": VARIANT_DATASET, "columns": ["gen-1", "gen-2", "ensemble 0..2"], "rows": rows,
            "description": f"`{recipe}` with the overrides below; every row's students learn from the same "
                           "generation 0 (the standard run's, loaded by checkpoint) for each seed; test accuracy %, "
                           "mean ± std over seeds."}
        for label, overrides in VARIANTS.items():
            row = {"variant": label, "overrides": overrides, "seeds": [], "values": {}}
            rows.append(row)
            for seed in seeds:
                base = args.out / f"{VARIANT_DATASET}-seed{seed}"
                if overrides:
                    load = json.dumps({"checkpoint": str(base / "gen-0" / "model.ckpt")})
                    slug = "-".join(o.lstrip("-").replace(".", "_") for o in overrides)
                    run = _timed_run([recipe, "--seed", str(seed), *extra, *overrides, "--load", load],
                                     args.out / f"{VARIANT_DATASET}-{slug}-seed{seed}")
                else:
                    run = data["datasets"][VARIANT_DATASET]["seeds"][str(seed)]
                s = run["summary"]
                row["seeds"].append(seed)
                for col, value in (("gen-1", s["generations"][1]["test"]["acc"]),
                                   ("gen-2", s["generations"][2]["test"]["acc"]),
                                   ("ensemble 0..2", s["ensembles"][-1]["test"]["acc"])):
                    row["values"].setdefault(col, []).append(value)
                _save(data)
    print(f"wrote {DATA} and rendered its sections")


if __name__ == "__main__":
    main()
