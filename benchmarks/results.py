"""Regenerate docs/results.md: recipes at CPU-sized schedules, several seeds, mean ± std, wall time, machine, commit.

    python benchmarks/results.py                       # every entry of RUNS, seeds 0 1 2
    python benchmarks/results.py --only digits --seeds 0 1 2

Each (recipe, seed) is a real `distill run` into runs/results/<name>-seed<k>; finished runs are reused (their
summary.json is read), so the script can be interrupted and re-run. Nothing here is typed in by hand: the page is
written from the summaries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from suite_common import machine  # noqa: E402  (the benchmarks' one machine description)

# name -> (recipe, extra overrides, what the schedule is)
RUNS: dict[str, tuple[str, list[str], str]] = {
    "digits": ("recipes/digits-ban.yaml", [], "the recipe as shipped: small_cnn, 15 epochs per generation"),
    "fashion-mnist": ("recipes/fashion-mnist-ban.yaml", ["--data.train_subset", "10000"],
                      "the recipe (small_cnn width 16, 5 epochs per generation) on a fixed random 10,000 of the "
                      "training images"),
    "cifar10-jpeg": ("recipes/cifar10-ban-resnet20.yaml",
                     ["--data.train_subset", "5000", "--trainer.max_epochs", "3", "--optimizer.scheduler", "cosine",
                      "--trainer.accelerator", "cpu"],
                     "cifar_resnet20, a fixed random 5,000 of the training images, 3 epochs per generation, cosine lr"),
}

# Published full-schedule numbers, for reference only (never produced here).
PUBLISHED_ROWS = [
    ("CIFAR-100, WRN-28-2, Born-Again (teacher-only, T = 1)", "test error 25.32 (teacher) → 24.38 (student)",
     "Furlanello et al. 2018"),
    ("CIFAR-100, DenseNet BANs", "best 15.5% test error (large DenseNets)", "Furlanello et al. 2018"),
    ("CIFAR-10, ResNet-20 (164 epochs)", "8.75% test error (91.25% accuracy)", "He et al. 2016"),
    ("CIFAR-100, ResNet-56 → ResNet-20, vanilla KD (T = 4, 0.1 CE + 0.9 KD, 240 epochs)",
     "teacher 72.34, student alone 69.06, KD student 70.66 (top-1 %)", "CRD benchmark, Tian et al. 2020"),
]
PUBLISHED = "| setting | published result | source |\n|---|---|---|\n" + "".join(
    f"| {a} | {b} | {c} |\n" for a, b, c in PUBLISHED_ROWS)


def _run(name: str, seed: int, out_root: Path) -> tuple[dict, float]:
    recipe, extra, _ = RUNS[name]
    out = out_root / f"{name}-seed{seed}"
    summary = out / "summary.json"
    timing = out / "wall_seconds.txt"
    if not summary.is_file():
        start = time.perf_counter()
        args = [sys.executable, "-m", "distill.cli", "run", recipe, "--seed", str(seed), *extra,
                "--trainer.enable_progress_bar", "false"]
        args += ["--out", str(out), "--resume"] if (out / "config.yaml").is_file() else ["--out", str(out)]
        subprocess.run(args, cwd=ROOT, check=True)
        timing.write_text(f"{time.perf_counter() - start:.1f}\n")
    return json.loads(summary.read_text()), float(timing.read_text()) if timing.is_file() else float("nan")


def _fmt(values: list[float]) -> str:
    pct = [100 * v for v in values]
    if len(pct) == 1:
        return f"{pct[0]:.2f}"
    return f"{statistics.mean(pct):.2f} ± {statistics.stdev(pct):.2f}"


def _machine() -> str:
    m = machine()
    load = m["load_average_at_start"]  # read now, i.e. when the page is written
    return f"{m['cpu']}, {m['cores']} cores, {m['gpu'] or 'no GPU'}; load average when written {load}"


def section(name: str, seeds: list[int], out_root: Path) -> str:
    results = [_run(name, s, out_root) for s in seeds]
    gens = len(results[0][0]["generations"])
    lines = [f"### {name}", "", f"`{RUNS[name][0]}` {' '.join(RUNS[name][1])} — {RUNS[name][2]}.", "",
             "| model | test accuracy % (mean ± std over seeds) | per seed |", "|---|---|---|"]
    for k in range(gens):
        accs = [r["generations"][k]["test"]["acc"] for r, _ in results]
        lines.append(f"| gen-{k} | {_fmt(accs)} | {', '.join(f'{100 * a:.2f}' for a in accs)} |")
    for e in range(len(results[0][0]["ensembles"])):
        members = results[0][0]["ensembles"][e]["members"]
        accs = [r["ensembles"][e]["test"]["acc"] for r, _ in results]
        lines.append(f"| ensemble {members[0]}..{members[-1]} | {_fmt(accs)} | "
                     f"{', '.join(f'{100 * a:.2f}' for a in accs)} |")
    walls = [w for _, w in results]
    lines += ["", f"Seeds {', '.join(map(str, seeds))}; wall time per run (whole command): "
              + ", ".join(f"{w:.0f} s" for w in walls) + ".", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS), default=sorted(RUNS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "results")
    parser.add_argument("--write", type=Path, default=ROOT / "docs" / "results.md")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    body = [section(name, args.seeds, args.out) for name in args.only]
    page = "\n".join([
        "# Results", "",
        "Measured by `python benchmarks/results.py` (this page is its output; nothing typed in by hand).", "",
        f"Machine: {_machine()}. Date: {date.today()}. Commit: `{commit}`. Each run is a full `distill run` "
        "(all generations, cache builds and evaluation); schedules are cut to fit 2 CPU cores, so students may "
        "trail their teachers — see each section's schedule.", "",
        "## Ours", "", *body,
        "## Published (full schedules, not ours)", "",
        "For comparison only: these are the papers' numbers with their full GPU schedules, not produced here.", "",
        PUBLISHED])
    args.write.write_text(page)
    print(page)


if __name__ == "__main__":
    main()
