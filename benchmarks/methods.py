"""The distillation methods side by side: one teacher, one student network, every method (docs/methods.md).

On the CIFAR-10 JPEG copy: a ``cifar_resnet56`` teacher is trained once (a ``distill run`` with ``--generations 0``);
then, for every seed, the ``cifar_resnet20`` student alone (cross-entropy on labels) and one run per method. A method
run starts from a copy of the teacher's run directory and continues it with ``--resume --force`` and the method's
settings: generation 0 and its cache are reused (verified by checksum, not re-run), generation 1 is the student.
Same data, schedule and seeds for every method; each run is the engine's real code path. The results -- test
accuracy per seed, fit seconds per epoch, wall seconds per run, and the trainable parameters a method adds (FitNets'
regressors) -- go to ``docs/data/methods.json`` (:func:`document`), and the page's sections are rendered from it
(``benchmarks/methods_page.py``).

Runs are kept under ``--out`` and reused, so an interrupted measurement resumes where it stopped.
Usage: ``python -m benchmarks.methods [--seeds 0 1] [--train 5000] [--epochs 12] [--teacher-epochs 20]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

from benchmarks import ROOT
from benchmarks.machine import machine
from benchmarks.pages import publish

RECIPE = "recipes/cifar10-ban-resnet20.yaml"
ONLINE = ["--cache.mode", "online"]
# The base recipe sets BAN's kd.temperature 1 and kd.alpha 1: DKD and DIST get their papers' T 4 and no alpha (they
# do not mix CE and KD that way); the feature losses take neither.
PAPER_T = ["--kd.temperature", "4", "--kd.alpha", "null"]
NO_KD = ["--kd.temperature", "null", "--kd.alpha", "null"]
# The embedding losses read the teacher's pre-logit embeddings from the cache; the teacher run builds its cache with
# them (a cache with embeddings serves the logit losses too).
EMBEDDINGS = ["--cache.embeddings", "true"]
# name -> (overrides of the student run, what it is). The cached methods read the teacher from the soft-label cache.
METHODS: dict[str, tuple[list[str], str]] = {
    "KD": (["--kd.temperature", "4", "--kd.alpha", "0.9"], "Hinton KD, T 4, 0.1 CE + 0.9 KD (cache)"),
    "KD + LS": (["--kd.temperature", "4", "--kd.alpha", "0.9", "--kd.standardize", "true"],
                "KD as above with logit standardisation (cache)"),
    "DKD": (["--kd.variant", "dkd", *PAPER_T, "--kd.init_args.warmup_epochs", "1"],
            "alpha 1, beta 8, T 4, CE 1; warm-up 1 epoch: the paper's 20 of 240 scaled to the schedule, which leaves "
            "no ramp, (0 + 1) / 1 = 1 from the first epoch (cache)"),
    "DKD, warm-up 3": (["--kd.variant", "dkd", *PAPER_T, "--kd.init_args.warmup_epochs", "3"],
                       "DKD with the KD term ramped over half the schedule: (epoch + 1) / 3 (cache)"),
    "DKD + LS": (["--kd.variant", "dkd", *PAPER_T, "--kd.init_args.warmup_epochs", "1", "--kd.standardize", "true"],
                 "DKD as above (warm-up 1) with logit standardisation (cache)"),
    "DIST": (["--kd.variant", "dist", *PAPER_T], "beta 2, gamma 2, T 4, CE 1 (cache)"),
    "RKD": (["--kd.variant", "rkd", *NO_KD, *EMBEDDINGS], "distance 25 + angle 50, weight 1, CE 1 (cache, embeddings)"),
    "PKT": (["--kd.variant", "pkt", *NO_KD, *EMBEDDINGS], "weight 30000, CE 1 (cache, embeddings)"),
    "SP": (["--kd.variant", "sp", *NO_KD, *EMBEDDINGS],
           "on the pooled embedding, weight 3000, CE 1 (cache, embeddings)"),
    "CRD": (["--kd.variant", "crd", *NO_KD, *EMBEDDINGS], "feat_dim 128, 16384 negatives from the cached embeddings, "
            "nce_t 0.07, momentum 0.5, weight 0.8, CE 1 (cache, embeddings)"),
    "FitNet": (["--kd.variant", "fitnet", *NO_KD, *ONLINE, "--kd.init_args.pairs", '[["stages.2", "stages.2"]]'],
               "hint on the last stage (64 channels), weight 100, 1x1 conv + BN regressor (online teacher)"),
    "AT": (["--kd.variant", "at", *NO_KD, *ONLINE, "--kd.init_args.pairs",
            '[["stages.0", "stages.0"], ["stages.1", "stages.1"], ["stages.2", "stages.2"]]'],
           "attention maps of the three stages, beta 1000 (online teacher)"),
}
ALONE = "student alone (CE)"
DATA = "docs/data/methods.json"
STUDENT = "cifar_resnet20"
SCHEDULE = "SGD lr 0.1 cosine, batch 128"  # the recipe's, as the page states it


def _run(out: Path, args: list[str], teacher: Path | None = None) -> tuple[dict, float]:
    """A ``distill run`` into ``out`` (resumed if interrupted, reused if finished); its summary and wall seconds.

    With ``teacher``, ``out`` starts as a copy of that finished run directory (its generation 0 and cache) and the
    run continues it with the new settings (``--resume --force``).
    """
    summary, timing = out / "summary.json", out / "wall_seconds.txt"
    if not summary.is_file():
        if teacher is not None and not out.exists():
            shutil.copytree(teacher, out, ignore=shutil.ignore_patterns("summary.json", "wall_seconds.txt"))
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "distill.cli", "run", RECIPE, *args, "--trainer.enable_progress_bar", "false"]
        cmd += ["--out", str(out), "--resume", "--force"] if (out / "config.yaml").is_file() else ["--out", str(out)]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        timing.write_text(f"{time.perf_counter() - start:.1f}\n")
    return json.loads(summary.read_text()), float(timing.read_text())


def _added_parameters(ckpt: Path) -> int:
    """Trainable parameters of the loss (``loss.*`` tensors other than BatchNorm statistics) in a checkpoint."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    return sum(v.numel() for k, v in state.items() if k.startswith("loss.") and "running_" not in k
               and "num_batches" not in k)


def relative_cost(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Fit seconds per epoch of the student alone, and the range of every cached and every online method's over it
    (from the unrounded means, so the page's ratios are not ratios of rounded numbers)."""
    per_epoch = {r["method"]: r["fit_seconds_per_epoch"] for r in rows}
    ce = per_epoch.pop(ALONE)
    online = [v / ce for n, v in per_epoch.items() if "online" in METHODS[n][0]]
    cached = [v / ce for n, v in per_epoch.items() if "online" not in METHODS[n][0]]
    return {"alone_seconds_per_epoch": ce, "cached": [min(cached), max(cached)], "online": [min(online), max(online)]}


def method_row(name: str, setting: str, seeds: list[int], gens: list[dict[str, Any]], walls: list[float],
               added: int) -> dict[str, Any]:
    """One row of the JSON: the student generation of each seed's run (``summary.json``'s entry) and its wall time."""
    per_epoch = [g["train_seconds"] / max(g["epochs"], 1) for g in gens]
    return {"method": name, "setting": setting, "added_parameters": added,
            "fit_seconds_per_epoch": statistics.mean(per_epoch),
            "seeds": [{"seed": s, "test_acc": g["test"]["acc"], "fit_seconds_per_epoch": e, "wall_seconds": w}
                      for s, g, e, w in zip(seeds, gens, per_epoch, walls, strict=True)]}


def document(provenance: dict[str, Any], setting: dict[str, Any], teacher: dict[str, Any],
             rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON the page is rendered from (``docs/data/methods.json``)."""
    return {"provenance": provenance, "setting": setting, "teacher": teacher, "rows": rows,
            "relative_cost": relative_cost(rows)}


def _slug(name: str) -> str:
    return name.lower().replace(" + ", "-").replace(", ", "-").replace(" ", "-")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--train", type=int, default=2500, help="training images (a fixed random subset)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of every student")
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "methods")
    args = parser.parse_args()
    common = ["--data.train_subset", str(args.train), "--optimizer.scheduler", "cosine",
              "--trainer.accelerator", "cpu"]
    gen0 = {"generation": 0, "backbone": "cifar_resnet56", "trainer": {"max_epochs": args.teacher_epochs}}
    teacher, teacher_wall = _run(args.out / "teacher", [*common, *EMBEDDINGS, "--generations", "0",
                                                        "--per_generation", json.dumps([gen0])])
    student = [*common, "--trainer.max_epochs", str(args.epochs)]
    alone = [_run(args.out / f"alone-seed{s}", [*student, "--generations", "0", "--seed", str(s)])
             for s in args.seeds]
    rows = [method_row(ALONE, "labels only", args.seeds, [r["generations"][0] for r, _ in alone],
                       [w for _, w in alone], 0)]
    # The student runs keep the teacher run's seed and generation 0; the student's own seed is its generation's.
    with_teacher = [*student, "--generations", "1", "--per_generation", json.dumps([gen0])]
    for name, (overrides, what) in METHODS.items():
        runs = [_run(args.out / f"{_slug(name)}-seed{s}", [*with_teacher, *overrides, "--seed", str(s)],
                     teacher=args.out / "teacher") for s in args.seeds]
        first = args.out / f"{_slug(name)}-seed{args.seeds[0]}"
        rows.append(method_row(name, what, args.seeds, [r["generations"][1] for r, _ in runs],
                               [w for _, w in runs], _added_parameters(first / "gen-1" / "model.ckpt")))
    m = machine()
    provenance = {k: m[k] for k in ("cpu", "cores", "gpu", "load_average_at_start", "commit")}
    setting = {"train_images": args.train, "test_images": 10000, "student": STUDENT, "epochs": args.epochs,
               "schedule": SCHEDULE, "seeds": args.seeds}
    t0 = teacher["generations"][0]
    doc = document(provenance | {"date": str(date.today())}, setting,
                   {"backbone": "cifar_resnet56", "epochs": args.teacher_epochs, "seed": teacher["seed"],
                    "wall_seconds": teacher_wall, "test_acc": t0["test"]["acc"]}, rows)
    print("rendered:", ", ".join(publish(DATA, doc)))


if __name__ == "__main__":
    main()
