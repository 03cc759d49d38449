"""The benchmark suite: the engine's real training and cache-build path against bare PyTorch loops, as ratios.

Usage::

    python -m benchmarks.run [--quick | --profile full|quick|tiny|gpu|gpu-dry] [--json OUT.json] [--write-docs]
    python -m benchmarks.run --render IN.json      # rewrite the docs page of a saved result, measuring nothing

``--write-docs`` and ``--render`` write the result to ``DOCS/data/benchmarks.json`` (``benchmarks-gpu.json`` for the
GPU profiles) and fill the sections of ``DOCS/benchmarks.md`` (``benchmarks-gpu.md``: a copy of docs/benchmarks.md)
from it (``benchmarks/suite_page.py``).

Per timing regime (a short "small" step and a long "large" one; see :mod:`benchmarks.suite_timing`), interleaved
rounds of: our epoch (``Trainer.fit`` through :class:`BornAgainRun`, default progress bar on) vs a bare loop; a
cached-KD and an online-KD epoch vs our CE epoch; the cache build vs bare inference; an empty ``training_step`` under
``Trainer.fit`` vs drawing the batches (the Lightning floor); a profiled fit (Lightning's ``SimpleProfiler``). Also
bytes per cached view, accuracy of students taught through each cache setting (:mod:`benchmarks.suite_accuracy`) and,
where the profile asks, the whole born-again recipe's wall time (:mod:`benchmarks.suite_cache`). ``benchmarks/gpu.sh``
runs profile ``gpu``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmarks import ROOT
from benchmarks.machine import load_average, machine
from benchmarks.pages import fill
from benchmarks.sections import suite
from benchmarks.suite_accuracy import run_accuracy
from benchmarks.suite_cache import ban_recipe, bytes_per_view
from benchmarks.suite_common import PROFILES, Profile
from benchmarks.suite_page import page_name
from benchmarks.suite_timing import run_timing
from distill.io import atomic_write_json, atomic_write_text

#: the page every result fills (a GPU result a copy of it), and the JSON its committed sections are rendered from
PAGE, DATA = "docs/benchmarks.md", "docs/data/benchmarks.json"


def run_suite(profile: Profile, work: Path, command: str = "python -m benchmarks.run") -> dict[str, Any]:
    """Every measurement of the suite with ``profile``'s sizes; returns the result dictionary (JSON-ready)."""
    start = time.perf_counter()
    threads = torch.get_num_threads()
    if profile.threads:
        torch.set_num_threads(profile.threads)
    try:  # the caller's thread count comes back: runs after this one in the process must not inherit the profile's
        result: dict[str, Any] = {"profile": profile.name, "quick": profile.quick, "command": command,
                                  "machine": machine(),
                                  "settings": json.loads(json.dumps(asdict(profile), default=str))}
        result.update(run_timing(profile, work / "timing"))
        result["bytes_per_view"] = bytes_per_view(profile, work)
        if profile.accuracy:
            result.update(run_accuracy(profile, work / "accuracy"))
        if profile.ban_epochs:
            result["ban"] = ban_recipe(profile, work / "ban")
    finally:
        torch.set_num_threads(threads)
    result["load_average_at_end"] = load_average()
    result["seconds"] = round(time.perf_counter() - start, 1)
    return json.loads(json.dumps(result, default=str))


def render_docs(result: dict[str, Any]) -> str:
    """docs/benchmarks.md with its sections filled from ``result`` (a pure function of it: ``--render`` reproduces
    it); a GPU result's page names its own page and JSON in the markers."""
    name = page_name(result)
    text = (ROOT / PAGE).read_text()
    target = suite(f"docs/{name}", f"docs/data/{Path(name).stem}.json")
    for s, t in zip(suite(PAGE, DATA), target, strict=True):
        text = text.replace(s.begin(), t.begin())
    return fill(text, target, result)


def write_docs(result: dict[str, Any], docs: Path) -> Path:
    """Write ``result`` to ``docs/data/<page>.json`` and its page to ``docs/<page>.md``; return the page's path."""
    page = docs / page_name(result)
    (docs / "data").mkdir(parents=True, exist_ok=True)
    atomic_write_json(docs / "data" / f"{page.stem}.json", result, indent=1)
    atomic_write_text(page, render_docs(result))
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="profile quick: small sizes, a few minutes")
    parser.add_argument("--profile", choices=sorted(PROFILES), default=None, help="sizes and settings (default full)")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("--write-docs", action="store_true", help="write the profile's docs page from the result")
    parser.add_argument("--docs-dir", default=str(ROOT / "docs"), help="where --write-docs and --render write")
    parser.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--render", default=None, metavar="IN.json",
                        help="measure nothing: write the docs page of a saved result")
    args = parser.parse_args(argv)
    if args.render:
        write_docs(json.loads(Path(args.render).read_text()), Path(args.docs_dir))
        return 0
    profile = PROFILES[args.profile or ("quick" if args.quick else "full")]
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        result = run_suite(profile, Path(args.workdir or tmp), command.strip())
    text = json.dumps(result, indent=1)
    if args.json:
        atomic_write_text(args.json, text + "\n")
    else:
        print(text)
    if args.write_docs:
        write_docs(result, Path(args.docs_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
