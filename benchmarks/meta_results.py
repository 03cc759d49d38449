"""The meta-learning results table of docs/meta-learning.md: MAML, FOMAML, ANIL, Meta-SGD and the three paradigms
on the same 600 meta-test episodes of one recipe.

    nice -n 10 python benchmarks/meta_results.py            # -> docs/meta-results.json + the page section

Each method is a real ``distill meta`` run into runs/meta-results/<name>; a finished run (results.json) is reused,
so the script can be interrupted and re-run. Nothing in the table is typed in: it is written from the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from suite_common import machine  # noqa: E402  (the benchmarks' one machine description)

PAGE = ROOT / "docs" / "meta-learning.md"
RECIPE = "recipes/meta/digits-maml-5way.yaml"
BASELINES = '{"epochs": 10, "finetune_steps": 10, "finetune_lr": 0.1}'
# name -> overrides of RECIPE
RUNS: dict[str, list[str]] = {
    "maml": ["--method", "maml"],
    "fomaml": ["--method", "fomaml"],
    "anil": ["--method", "anil", "--baselines", BASELINES],
    "maml_meta_sgd": ["--method", "maml", "--inner.learn_lr", "true"],
}
LABELS = {"maml": "MAML (second order)", "fomaml": "first-order MAML", "anil": "ANIL (head only)",
          "maml_meta_sgd": "MAML + Meta-SGD (learned inner lr per tensor)",
          "feature_extraction": "feature extraction + logistic head", "fine_tuning": "fine-tuning, 10 SGD steps",
          "nearest_mean": "nearest class mean", "nearest_neighbour": "1-nearest neighbour"}


def meta_run(recipe: str, overrides: list[str], out: Path) -> tuple[dict, float]:
    """``distill meta recipe overrides --out out`` (reused when finished); results and the wall seconds."""
    from distill.cli import main

    results, timing = out / "results.json", out / "wall_seconds.txt"
    if not results.is_file():
        start = time.perf_counter()
        args = ["meta", recipe, *overrides, "--out", str(out)]
        if (out / "config.yaml").is_file():
            args.append("--resume")
        if main(args) != 0:
            raise SystemExit(f"distill {' '.join(args)} failed")
        timing.write_text(f"{time.perf_counter() - start:.1f}\n")
    return json.loads(results.read_text()), float(timing.read_text())


def write_section(page: Path, name: str, text: str) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``page``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    doc = page.read_text()
    head, rest = doc.split(start, 1)
    page.write_text(head + start + "\n" + text.rstrip() + "\n" + end + rest.split(end, 1)[1])


def _row(label: str, mean: float, ci: float, secs: float | None, mib: float | None, wall: str) -> str:
    s = f"{secs:.3f}" if secs is not None else "–"
    m = f"{mib:.1f}" if mib is not None else "–"
    return f"| {label} | {100 * mean:.1f} ± {100 * ci:.1f} | {s} | {m} | {wall} |\n"


def table(runs: dict[str, tuple[dict, float]], info: dict) -> str:
    first = next(iter(runs.values()))[0]
    n = first["test"]["episodes"]
    text = ("| method | meta-test accuracy % (± 95% CI) | s / meta-iteration | autograd MiB / meta-iteration | "
            "wall s |\n|---|---|---|---|---|\n")
    for name, (r, wall) in runs.items():
        text += _row(LABELS[name], r["test"]["mean"], r["test"]["ci95"], r["seconds_per_meta_iteration"],
                     r["graph_mib_per_meta_iteration"], f"{wall:.0f}")
    for name, b in runs["anil"][0].get("baselines", {}).items():
        text += _row(LABELS[name], b["mean"], b["ci95"], b["train_seconds_per_step"], None, "–")
    m = info["machine"]
    text += (f"\n{n} meta-test episodes, the same for every row (drawn from (seed, split, index)). ANIL's wall time "
             "includes the baselines, which run in its directory. Baselines: "
             "s / iteration is one cross-entropy step of the shared network (10 epochs on the 5 meta-train classes); "
             "their episodes are scored with that one network. Autograd MiB: the distinct tensor storages saved for "
             "the backward pass of one meta-iteration (meta-batch 4). "
             f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores shared with other jobs, load average "
             f"{m['load_average_at_start']} at start, {info['load_average_at_end']} at end), torch {m['torch']}, "
             f"{info['threads']} thread(s), commit `{m['commit'][:10]}`, by `benchmarks/meta_results.py` "
             f"(total {info['wall_seconds']:.0f} s).\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "meta-results")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--page-only", action="store_true",
                        help="rewrite the page section from docs/meta-results.json and the finished runs")
    args = parser.parse_args()
    if args.page_only:
        info = json.loads((ROOT / "docs" / "meta-results.json").read_text())["info"]
        runs = {name: meta_run(RECIPE, extra, args.out / name) for name, extra in RUNS.items()}
        write_section(PAGE, "meta-results", table(runs, info))
        return
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
    (ROOT / "docs" / "meta-results.json").write_text(json.dumps(doc, indent=1) + "\n")
    write_section(PAGE, "meta-results", table(runs, info))


if __name__ == "__main__":
    main()
