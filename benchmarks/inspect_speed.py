"""Wall time of ``distill inspect`` on a CIFAR-100-sized run: 50,000 training samples, 100 classes, 2 generations.

What it builds (in a temporary directory, or ``--keep DIR``): a complete, valid run directory for the synthetic
100-class data module ``bench100`` of :mod:`benchmarks.bench100` (CIFAR-100 class names, 500 training images per
class, 10,000 test images), with checkpoints of a full ResNet-18 checkpoint's size (``--ckpt-mb``). The logits have
superclass structure and ~1 % confidently relabelled samples, so every output (taxonomy score, suspects, image grid)
is produced.

What it measures: a fresh ``python -m benchmarks.bench100 RUN`` process, which registers ``bench100`` and calls
``distill.cli.main(["inspect", RUN])``, timed from outside; that is the whole command -- interpreter start, imports
(torch, lightning, matplotlib), recipe parsing, cache verification (sha256 of arrays and checkpoints), all analysis,
every PNG/CSV/JSON and the terminal tables (sent to /dev/null). Not measured: decoding a real dataset --
``bench100`` makes labels instantly and an image only when the suspect grid asks for it, whereas real CIFAR-100
decodes 50,000 images in ``setup``.

Usage: ``python -m benchmarks.inspect_speed [--repeat 3] [--generations 2] [--keep DIR] [--profile-imports]
[--write] [distill inspect options, e.g. --jobs 1]``. ``--write`` (implies ``--profile-imports``) stores the timings
in ``docs/data/inspect-speed.json`` and renders the dark-knowledge page's section
(``benchmarks/inspect_speed_page.py``).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import ROOT
from benchmarks.bench100 import NUM_CLASSES, NUM_TRAIN, make_run
from benchmarks.machine import provenance
from benchmarks.pages import publish


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (default 3; best and all are printed)")
    parser.add_argument("--generations", type=int, default=2, help="generations in the fake run (default 2)")
    parser.add_argument("--ckpt-mb", type=int, default=90, help="size of each fake checkpoint in MiB (default 90)")
    parser.add_argument("--keep", default=None, help="build the run here and keep it (default: a temporary dir)")
    parser.add_argument("--profile-imports", action="store_true", help="also time a process that only imports")
    parser.add_argument("--write", action="store_true", help="store in docs/data/inspect-speed.json, render the page")
    args, extra = parser.parse_known_args()  # anything else is passed to distill inspect, e.g. --jobs 1
    prov = provenance()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.keep) if args.keep else Path(tmp) / "bench100-run"
        start = time.perf_counter()
        make_run(run_dir, args.generations, args.ckpt_mb)
        print(f"built {run_dir} ({args.generations} generations, {NUM_TRAIN} x {NUM_CLASSES} float16 caches) "
              f"in {time.perf_counter() - start:.1f} s")
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "120"}
        times, cpu = [], []
        for _ in range(args.repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "benchmarks.bench100", str(run_dir), *extra], env=env,
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            times.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if done.returncode != 0:
                sys.exit(f"distill inspect failed ({done.returncode}): {done.stderr.strip()}")
        load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
        print(f"distill inspect, whole process, {os.cpu_count()} CPUs (load average {load}): "
              f"wall best {min(times):.2f} s, all {', '.join(f'{t:.2f}' for t in times)} s; "
              f"CPU time (all processes) {', '.join(f'{t:.2f}' for t in cpu)} s")
        imports = []
        for _ in range(args.repeat if args.profile_imports or args.write else 0):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run([sys.executable, "-c", "import distill.cli, distill.analysis.command"], env=env, check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            imports.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if imports:
            print(f"of which importing distill.cli + distill.analysis.command alone: CPU "
                  f"{', '.join(f'{t:.2f}' for t in imports)} s")
    if args.write:
        data = {"provenance": prov, "generations": args.generations, "ckpt_mb": args.ckpt_mb, "train": NUM_TRAIN,
                "classes": NUM_CLASSES, "options": extra, "wall_seconds": times, "cpu_seconds": cpu,
                "import_cpu_seconds": imports}
        print("rendered:", ", ".join(publish("docs/data/inspect-speed.json", data)))


if __name__ == "__main__":
    main()
