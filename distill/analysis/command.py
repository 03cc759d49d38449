"""``distill inspect RUN``: dark-knowledge inspection of a finished run (a thin layer over :func:`load_run`).

Per generation ``k`` it writes ``OUT/gen-k/`` (similarity matrix as JSON/CSV, clustered heatmap, dendrogram,
neighbours, taxonomy score, label-noise suspects, reliability diagram) and, across generations, ``OUT/drift.json``;
``OUT`` defaults to ``RUN/inspect``. Tables go to the terminal. See ``docs/dark-knowledge.md``.
"""

from __future__ import annotations

import argparse
import csv
import math
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from distill.analysis import report
from distill.analysis.drift import entropy, reliability, similarity_drift
from distill.analysis.noise import Suspects, label_noise_suspects
from distill.analysis.run import InspectableRun, InspectError, load_run
from distill.analysis.similarity import class_similarity, cluster_order, most_similar_pairs, neighbours, soften
from distill.analysis.taxonomy import chance_taxonomy_score, taxonomy_score
from distill.commands.base import CommandParser, checked, register_command
from distill.io import atomic_write_json, atomic_writer

DRIFT_ROWS = 20  # classes shown in the drift table (all of them are in drift.json)


def build_parser() -> argparse.ArgumentParser:
    """The ``distill inspect`` argument parser."""
    p = CommandParser(prog="distill inspect",
                      description="Dark-knowledge inspection of a finished run (no retraining).")
    p.add_argument("run", metavar="RUN", help="run directory written by `distill run`")
    p.add_argument("--generation", type=checked(int, lambda v: v >= 0, "an integer >= 0"), default=None,
                   metavar="K", help="inspect only generation K (default: every finished generation)")
    p.add_argument("--temperature", type=checked(float, lambda v: math.isfinite(v) and v > 0, "a number > 0"),
                   default=None, metavar="T", help="softening temperature (default: the recipe's kd.temperature)")
    p.add_argument("--top-k", type=checked(int, lambda v: v >= 1, "an integer >= 1"), default=3, metavar="K",
                   help="neighbours listed per class (default: 3)")
    p.add_argument("--pairs", type=checked(int, lambda v: v >= 0, "an integer >= 0"), default=10, metavar="N",
                   help="most similar class pairs listed (default: 10)")
    p.add_argument("--grouping", default=None, metavar="FILE.json",
                   help='class grouping {"group": ["class", ...]} for the taxonomy score (default: built-in one '
                        "for cifar100, cifar10, fashion_mnist, if any)")
    p.add_argument("--threshold", type=checked(float, lambda v: 0 <= v <= 1, "a number in [0, 1]"), default=0.9,
                   metavar="P", help="teacher confidence (T = 1) from which a disagreement is a suspect (default: 0.9)")
    p.add_argument("--suspects", type=checked(int, lambda v: v >= 0, "an integer >= 0"), default=16, metavar="N",
                   help="suspects shown in the table and image grid (default: 16; the CSV has all)")
    p.add_argument("--bins", type=checked(int, lambda v: v >= 1, "an integer >= 1"), default=15, metavar="N",
                   help="confidence bins of the reliability diagram (default: 15)")
    p.add_argument("--out", default=None, metavar="DIR", help="output directory (default: RUN/inspect)")
    p.add_argument("--jobs", type=checked(int, lambda v: v >= 1, "an integer >= 1"), default=None, metavar="N",
                   help="processes drawing the figures (default: CPU count, at most 4; 1 draws them in-process)")
    return p


class Renderer:
    """Runs figure-drawing calls in ``jobs`` forked worker processes (Linux), or in-process when ``jobs == 1``.

    Drawing the PNGs is most of the work after the imports (a 100-class heatmap alone takes about a second), and
    each figure is independent, so they overlap with each other and with the analysis of the next generation.
    """

    def __init__(self, jobs: int) -> None:
        fork = sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
        self.pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) \
            if jobs > 1 and fork else None
        self.futures: list[Future] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.pool is None:
            fn(*args)
        else:
            self.futures.append(self.pool.submit(fn, *args))

    def wait(self) -> None:
        """Wait for every figure (re-raising the first failure) and stop the workers."""
        try:
            for future in self.futures:
                future.result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)


def _num(x: float) -> float | None:
    """JSON-safe float: ``None`` for nan/inf."""
    return float(x) if math.isfinite(x) else None


def _write_suspects_csv(suspects: Suspects, names: list[str], path: Path) -> None:
    with atomic_writer(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "sample", "label", "teacher", "probability"])
        rows = zip(suspects.index, suspects.label, suspects.teacher, suspects.probability, strict=True)
        writer.writerows([r, int(i), names[y], names[t], f"{p:.6f}"] for r, (i, y, t, p) in enumerate(rows, 1))


def _top(suspects: Suspects, n: int) -> Suspects:
    return Suspects(suspects.index[:n], suspects.label[:n], suspects.teacher[:n], suspects.probability[:n])


def inspect_generation(run: InspectableRun, k: int, args: argparse.Namespace, out: Path,
                       grouping: tuple[str, dict[str, list[int]]] | None, console: Console,
                       render: Renderer) -> dict[str, Any]:
    """Analyse one generation, write ``out/gen-k/*`` and print its tables; return its summary (and matrix)."""
    names, num_classes, temp = run.class_names, run.num_classes, run.temperature
    gdir = out / f"gen-{k}"
    gdir.mkdir(parents=True, exist_ok=True)
    console.rule(f"[bold]generation {k}[/] · T = {temp:g}")
    probs = run.soft_labels(k)
    matrix = class_similarity(probs, run.train_labels, num_classes)
    atomic_write_json(gdir / "similarity.json", {"classes": names, "temperature": temp, "matrix": matrix.tolist()})
    report.write_matrix_csv(matrix, names, gdir / "similarity.csv")
    order, linkage = cluster_order(matrix)
    render.submit(report.plot_similarity_heatmap, matrix, names, order, gdir / "similarity_heatmap.png")
    if linkage.shape[0]:
        render.submit(report.plot_dendrogram, linkage, names, gdir / "dendrogram.png")

    near, pairs = neighbours(matrix, args.top_k), most_similar_pairs(matrix, args.pairs)
    console.print(report.neighbours_table(near, names, title=f"gen-{k}: neighbours (share of mass)"))
    console.print(report.pairs_table(pairs, names, title=f"gen-{k}: most similar pairs"))
    atomic_write_json(gdir / "neighbours.json", {
        "temperature": temp,
        "neighbours": {names[c]: [{"class": names[j], "mass": float(m)} for j, m in zip(near.index[c], near.mass[c],
                                                                                       strict=True)]
                       for c in range(num_classes)},
        "pairs": [{"classes": [names[i], names[j]], "similarity": float(s)}
                  for i, j, s in zip(pairs.first, pairs.second, pairs.similarity, strict=True)],
    })

    summary: dict[str, Any] = {"generation": k, "mean_entropy": float(entropy(probs).mean())}
    if grouping is not None:
        source, groups = grouping
        score, chance = taxonomy_score(matrix, groups), chance_taxonomy_score(groups, num_classes)
        summary.update(taxonomy_score=_num(score), taxonomy_chance=_num(chance))
        atomic_write_json(gdir / "taxonomy.json", {"grouping": source, "score": _num(score), "chance": _num(chance)})
        console.print(f"taxonomy score ({source} grouping): [bold]{score:.3f}[/] "
                      f"(nearest neighbour in the same group; chance {chance:.3f})")
    else:
        (gdir / "taxonomy.json").unlink(missing_ok=True)

    probs1 = probs if temp == 1.0 else run.soft_labels(k, 1.0)
    suspects = label_noise_suspects(probs1, run.train_labels, threshold=args.threshold)
    _write_suspects_csv(suspects, names, gdir / "suspects.csv")
    shown = _top(suspects, args.suspects)
    summary["suspects"] = len(suspects)
    title = f"gen-{k}: suspects (p >= {args.threshold:g}), {len(shown)} of {len(suspects)}"
    console.print(report.suspects_table(shown, names, title=title))
    if len(shown):
        render.submit(report.plot_image_grid, run.images(shown.index), report.suspect_captions(shown, names),
                      gdir / "suspects.png")
    else:
        (gdir / "suspects.png").unlink(missing_ok=True)  # no stale grid from an earlier inspection

    test_logits = run.test_logits(k)
    if test_logits is not None:
        rel = reliability(soften(test_logits, 1.0), run.test_labels, n_bins=args.bins)
        render.submit(report.plot_reliability, rel, gdir / "reliability.png")
        summary["ece"] = rel.ece
    else:
        console.print(f"[dim]gen-{k}: no test_logits.npy, no reliability diagram[/]")
        (gdir / "reliability.png").unlink(missing_ok=True)
    summary["_matrix"] = matrix
    return summary


def across_generations(run: InspectableRun, summaries: list[dict[str, Any]], out: Path, console: Console) -> None:
    """Per-class JS drift between consecutive generations and per-generation summaries: table + ``drift.json``."""
    names = run.class_names
    drifts = [(a["generation"], b["generation"], similarity_drift(a["_matrix"], b["_matrix"]))
              for a, b in zip(summaries, summaries[1:], strict=False)]
    gens = [{key: v for key, v in s.items() if key != "_matrix"} for s in summaries]
    atomic_write_json(out / "drift.json", {
        "classes": names, "temperature": run.temperature, "generations": gens,
        "drift": [{"from": a, "to": b, "mean": _num(float(np.nanmean(d))) if np.isfinite(d).any() else None,
                   "per_class": {n: _num(float(v)) for n, v in zip(names, d, strict=True)}} for a, b, d in drifts],
    })
    table = Table(title="Across generations")
    taxonomy = any("taxonomy_score" in g for g in gens)
    for col in ("generation", "mean entropy (nats)", "mean JS drift from previous", "suspects", "test ECE",
                *(["taxonomy (chance)"] if taxonomy else [])):
        table.add_column(col, justify="right")
    previous = {b: d for _, b, d in drifts}

    def cell(value: float | None, fmt: str = ".4f") -> str:
        return "—" if value is None or not math.isfinite(value) else format(value, fmt)

    for g in gens:
        d = previous.get(g["generation"])
        row = [f"gen-{g['generation']}", cell(g["mean_entropy"]),
               cell(float(np.nanmean(d)) if d is not None and np.isfinite(d).any() else None), str(g["suspects"]),
               cell(g.get("ece"))]
        if taxonomy:
            row.append(f"{cell(g.get('taxonomy_score'), '.3f')} ({cell(g.get('taxonomy_chance'), '.3f')})")
        table.add_row(*row)
    console.print(table)
    if not drifts:
        return
    stacked = np.stack([d for _, _, d in drifts], axis=1)  # (C, transitions)
    rank = np.argsort(-np.nan_to_num(stacked, nan=-1.0).max(axis=1), kind="stable")[:DRIFT_ROWS]
    table = Table(title=f"Per-class JS drift of the dark knowledge ({len(rank)} largest of {len(names)}; "
                        "all in drift.json)")
    table.add_column("class", style="bold")
    for a, b, _ in drifts:
        table.add_column(f"gen-{a} → gen-{b}", justify="right")
    for c in rank:
        table.add_row(names[c], *("—" if np.isnan(v) else f"{v:.4f}" for v in stacked[c]))
    console.print(table)


def inspect(args: argparse.Namespace, console: Console) -> Path:
    """Run the whole inspection for parsed ``args``; return the output directory."""
    gens = None if args.generation is None else [args.generation]
    run = load_run(args.run, gens, temperature=args.temperature)
    grouping = run.grouping(args.grouping)
    out = Path(args.out) if args.out else run.root / "inspect"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InspectError(f"cannot create output directory {out}: {e.strerror}") from None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    render = Renderer(args.jobs or min(4, cpus))
    try:
        summaries = [inspect_generation(run, k, args, out, grouping, console, render) for k in run.generations]
        across_generations(run, summaries, out, console)
    finally:
        render.wait()
    console.print(f"inspection of {run.root} written to {out}  (gen-*/similarity.json, *.png, drift.json, ...)")
    return out


@register_command("inspect")
def inspect_main(argv: list[str]) -> int:
    """``distill inspect RUN [options]``: exit code 0 (a user mistake raises a :class:`~distill.errors.UserError`,
    which the entry point prints as one ``error:`` line with exit code 2)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    inspect(args, Console(width=None if sys.stdout.isatty() else 120))
    return 0
