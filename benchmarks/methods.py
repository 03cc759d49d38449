"""The distillation methods side by side: one teacher, one student network, every method; writes docs/methods.md.

On the CIFAR-10 JPEG copy: a ``cifar_resnet56`` teacher is trained once (a ``distill run`` with ``--generations 0``);
then, for every seed, the ``cifar_resnet20`` student alone (cross-entropy on labels) and one run per method. A method
run starts from a copy of the teacher's run directory and continues it with ``--resume --force`` and the method's
settings: generation 0 and its cache are reused (verified by checksum, not re-run), generation 1 is the student.
Same data, schedule and seeds for every method; each run is the engine's real code path. The page
reports test accuracy (mean ± std over seeds, and per seed), fit seconds per epoch, and the trainable parameters a
method adds (FitNets' regressors), beside published CIFAR-100 numbers marked as such.

Runs are kept under ``--out`` and reused, so an interrupted measurement resumes where it stopped.
Usage: ``python benchmarks/methods.py [--seeds 0 1] [--train 5000] [--epochs 12] [--teacher-epochs 20]``.
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

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from suite_common import machine  # noqa: E402  (the benchmarks' one machine description)

RECIPE = "recipes/cifar10-ban-resnet20.yaml"
ONLINE = ["--cache.mode", "online"]
# The base recipe sets BAN's kd.temperature 1 and kd.alpha 1: DKD and DIST get their papers' T 4 and no alpha (they
# do not mix CE and KD that way); the feature losses take neither.
PAPER_T = ["--kd.temperature", "4", "--kd.alpha", "null"]
NO_KD = ["--kd.temperature", "null", "--kd.alpha", "null"]
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
    "FitNet": (["--kd.variant", "fitnet", *NO_KD, *ONLINE, "--kd.init_args.pairs", '[["stages.2", "stages.2"]]'],
               "hint on the last stage (64 channels), weight 100, 1x1 conv + BN regressor (online teacher)"),
    "AT": (["--kd.variant", "at", *NO_KD, *ONLINE, "--kd.init_args.pairs",
            '[["stages.0", "stages.0"], ["stages.1", "stages.1"], ["stages.2", "stages.2"]]'],
           "attention maps of the three stages, beta 1000 (online teacher)"),
}
# Published CIFAR-100 top-1 (%), full 240-epoch schedules, from mdistiller's README (megvii-research/mdistiller).
PUBLISHED = [("ResNet56 → ResNet20", "70.66", "71.97"), ("ResNet110 → ResNet32", "73.08", "74.11"),
             ("ResNet32x4 → ResNet8x4", "73.33", "76.32"), ("WRN-40-2 → WRN-16-2", "74.92", "76.23"),
             ("WRN-40-2 → WRN-40-1", "73.54", "74.81"), ("VGG13 → VGG8", "72.98", "74.68")]


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


def _cost_sentence(rows: list) -> str:
    """What the measured seconds per epoch say about cached vs online methods (from the data)."""
    per_epoch = {name: statistics.mean(g["train_seconds"] / max(g["epochs"], 1) for g in gens)
                 for name, _, gens, _, _ in rows}
    ce = per_epoch.pop("student alone (CE)")
    online = {n: v for n, v in per_epoch.items() if "online" in METHODS[n][1]}
    cached = {n: v for n, v in per_epoch.items() if n not in online}
    spread = lambda d: f"{min(d.values()) / ce:.2f}-{max(d.values()) / ce:.2f}x"  # noqa: E731
    return (f"Relative to the student alone ({ce:.1f} s/epoch), the methods read from the soft-label cache took "
            f"{spread(cached)} its time per epoch and those with an online teacher {spread(online)}.")


def _slug(name: str) -> str:
    return name.lower().replace(" + ", "-").replace(", ", "-").replace(" ", "-")


def _fmt(values: list[float]) -> str:
    pct = [100 * v for v in values]
    return f"{pct[0]:.2f}" if len(pct) == 1 else f"{statistics.mean(pct):.2f} ± {statistics.stdev(pct):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--train", type=int, default=2500, help="training images (a fixed random subset)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of every student")
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "methods")
    parser.add_argument("--write", type=Path, default=ROOT / "docs" / "methods.md")
    args = parser.parse_args()
    common = ["--data.train_subset", str(args.train), "--optimizer.scheduler", "cosine",
              "--trainer.accelerator", "cpu"]
    gen0 = {"generation": 0, "backbone": "cifar_resnet56", "trainer": {"max_epochs": args.teacher_epochs}}
    teacher, teacher_wall = _run(args.out / "teacher", [*common, "--generations", "0", "--per_generation",
                                                        json.dumps([gen0])])
    student = [*common, "--trainer.max_epochs", str(args.epochs)]
    rows = []
    alone = [_run(args.out / f"alone-seed{s}", [*student, "--generations", "0", "--seed", str(s)])
             for s in args.seeds]
    # The student runs keep the teacher run's seed and generation 0; the student's own seed is its generation's.
    with_teacher = [*student, "--generations", "1", "--per_generation", json.dumps([gen0])]
    rows.append(("student alone (CE)", "labels only", [r["generations"][0] for r, _ in alone],
                 [w for _, w in alone], 0))
    for name, (overrides, what) in METHODS.items():
        runs = [_run(args.out / f"{_slug(name)}-seed{s}", [*with_teacher, *overrides, "--seed", str(s)],
                     teacher=args.out / "teacher") for s in args.seeds]
        first = args.out / f"{_slug(name)}-seed{args.seeds[0]}"
        rows.append((name, what, [r["generations"][1] for r, _ in runs], [w for _, w in runs],
                     _added_parameters(first / "gen-1" / "model.ckpt")))
    m = machine()
    t0 = teacher["generations"][0]
    commit = m["commit"][:10]
    lines = [
        "# Distillation methods", "",
        "Measured by `python benchmarks/methods.py` (this page is its output; nothing typed in by hand).", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['gpu'] or 'no GPU'} (load average {m['load_average_at_start']} "
        f"when written). Date: {date.today()}. Commit: `{commit}`.", "",
        f"Setting: the CIFAR-10 JPEG copy, a fixed random {args.train:,} of the training images, the full 10,000 test "
        f"images; teacher `cifar_resnet56` trained once for {args.teacher_epochs} epochs (seed 0; "
        f"{teacher_wall:.0f} s wall), test accuracy {100 * t0['test']['acc']:.2f}%; student `cifar_resnet20`, "
        f"{args.epochs} epochs, SGD lr 0.1 cosine, batch 128, seeds {', '.join(map(str, args.seeds))}. Every "
        "method run continues a copy of the teacher's run directory (`--resume --force` with the method's settings): "
        "generation 0 and its cache are reused after their checksums are verified, generation 1 is the student. At "
        "this CPU schedule neither network converges: the order of the methods may differ from the published one.",
        "",
        "| method | test accuracy % (mean ± std) | per seed | fit s / epoch (mean) | wall s per run | "
        "added trainable parameters | setting |", "|---|---|---|---|---|---|---|"]
    for name, what, gens, walls, added in rows:
        accs = [g["test"]["acc"] for g in gens]
        per_epoch = statistics.mean(g["train_seconds"] / max(g["epochs"], 1) for g in gens)
        lines.append(f"| {name} | {_fmt(accs)} | {', '.join(f'{100 * a:.2f}' for a in accs)} | {per_epoch:.1f} | "
                     f"{', '.join(f'{w:.0f}' for w in walls)} | {added:,} | {what} |")
    lines += [
        "", "Fit seconds per epoch are the student's `train_seconds / epochs` from `summary.json` (training only; the "
        "whole command also evaluates and caches the teacher and the student). " + _cost_sentence(rows), "",
        "## Published (CIFAR-100, 240 epochs; not ours)", "",
        "Top-1 accuracy (%) from mdistiller's README (megvii-research/mdistiller), for reference only:", "",
        "| teacher → student | KD | DKD |", "|---|---|---|",
        *[f"| {pair} | {kd} | {dkd} |" for pair, kd, dkd in PUBLISHED], "",
        "The full published settings ship as recipes: `recipes/cifar100-kd-resnet56-resnet20.yaml` with the method "
        "overrides listed in [Concepts](concepts.md#which-methods-the-cache-serves).", ""]
    args.write.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
