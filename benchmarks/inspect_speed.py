"""Wall time of ``distill inspect`` on a CIFAR-100-sized run: 50,000 training samples, 100 classes, 2 generations.

What it builds (in a temporary directory, or ``--keep DIR``): a complete, valid run directory for a synthetic
100-class data module registered here as ``bench100`` (CIFAR-100 class names, 500 training images per class,
10,000 test images) -- ``config.yaml`` written by the real recipe parser, ``gen-k/model.ckpt`` (random bytes of a
full ResNet-18 checkpoint's size, ``--ckpt-mb``, since only its sha256 is read), ``gen-k/test_logits.npy`` and
``cache/gen-k/{logits.npy, manifest.json}`` (float16, with genuine checksums and the data module's fingerprint). The
logits have superclass structure and ~1 % confidently relabelled samples, so every output (taxonomy score, suspects,
image grid) is produced.

What it measures: a fresh ``python`` process that registers ``bench100`` and calls ``distill.cli.main(["inspect",
RUN])``, timed from outside; that is the whole command -- interpreter start, imports (torch, lightning, matplotlib),
recipe parsing, cache verification (sha256 of arrays and checkpoints), all analysis, every PNG/CSV/JSON and the
terminal tables (sent to /dev/null). Not measured: decoding a real dataset -- ``bench100`` makes labels instantly and
an image only when the suspect grid asks for it, whereas real CIFAR-100 decodes 50,000 images in ``setup``.

Usage: ``python benchmarks/inspect_speed.py [--repeat 3] [--generations 2] [--keep DIR] [--profile-imports]
[--write] [distill inspect options, e.g. --jobs 1]``. ``--write`` (implies ``--profile-imports``) stores the timings
in ``docs/data/inspect-speed.json`` and renders the dark-knowledge page's section (``benchmarks/pages.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from distill.analysis.taxonomy import CIFAR100_CLASSES, CIFAR100_SUPERCLASSES
from distill.data import DATASETS, DistillDataModule

NUM_TRAIN, NUM_TEST, NUM_CLASSES = 50_000, 10_000, 100


class LazyImages(Dataset):
    """``(image, label, index)`` with a deterministic random 3x32x32 image made on access; labels held in memory."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(int(i)))
        return image, self.labels[i], i


@DATASETS.register("bench100")
class Bench100DataModule(DistillDataModule):
    """Synthetic CIFAR-100-sized data module (labels balanced, shuffled with a fixed seed)."""

    name, num_classes, in_chans, class_names = "bench100", NUM_CLASSES, 3, list(CIFAR100_CLASSES)

    def transform_description(self) -> str:
        return "synthetic"

    def setup(self, stage: str | None = None) -> None:
        if self.cache_set is not None:
            return
        rng = np.random.default_rng(0)
        self.train_set = self.cache_set = LazyImages(rng.permutation(np.arange(NUM_TRAIN) % NUM_CLASSES))
        self.test_set = LazyImages(rng.permutation(np.arange(NUM_TEST) % NUM_CLASSES))


def fake_logits(labels: np.ndarray, seed: int, relabel: float = 0.01) -> np.ndarray:
    """Logits with a strong true-class peak, a weaker superclass bump, noise, and ``relabel`` confident "errors"."""
    rng = np.random.default_rng(seed)
    position = {name: i for i, name in enumerate(CIFAR100_CLASSES)}
    group = np.zeros(NUM_CLASSES, dtype=np.int64)
    for g, members in enumerate(CIFAR100_SUPERCLASSES.values()):
        group[[position[m] for m in members]] = g
    seen = labels.copy()
    flip = rng.random(len(labels)) < relabel
    seen[flip] = rng.integers(0, NUM_CLASSES, flip.sum())  # the teacher "sees" another class
    z = rng.normal(0.0, 1.0, (len(labels), NUM_CLASSES)).astype(np.float32)
    z += 3.0 * (group[None, :] == group[seen][:, None])
    z[np.arange(len(labels)), seen] += rng.normal(9.0, 2.0, len(labels))
    return z


def make_run(root: Path, generations: int, ckpt_mb: int) -> None:
    """Write a complete run directory for ``bench100`` under ``root``."""
    from distill.cache import Manifest, sha256_file
    from distill.config import dump_config, parse_recipe
    from distill.generations import RunLayout, build_datamodule

    cfg = parse_recipe(None, ["--data", '{"name": "bench100"}', "--generations", str(generations - 1)])
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(dump_config(cfg))
    dm = build_datamodule(cfg.data)
    layout, train, test = RunLayout(root), dm.train_labels(), dm.test_labels()
    for k in range(generations):
        layout.gen_dir(k).mkdir(parents=True, exist_ok=True)
        layout.checkpoint(k).write_bytes(np.random.default_rng(k).bytes(ckpt_mb << 20))
        np.save(layout.test_logits(k), fake_logits(test, 1000 + k))
        cache = layout.cache_dir(k)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "logits.npy", fake_logits(train, k).astype(np.float16))
        Manifest(generation=k, teacher_checkpoint=str(layout.checkpoint(k).relative_to(root)),
                 teacher_sha256=sha256_file(layout.checkpoint(k)), dataset=dm.fingerprint(), dtype="float16",
                 shape=[NUM_TRAIN, NUM_CLASSES], array_sha256=sha256_file(cache / "logits.npy"),
                 array_bytes=(cache / "logits.npy").stat().st_size).write(cache)


def child(run_dir: str, extra: list[str]) -> int:
    """Inside the timed process: ``distill inspect RUN`` with ``bench100`` registered (by importing this file)."""
    from distill.cli import main

    return main(["inspect", run_dir, *extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (default 3; best and all are printed)")
    parser.add_argument("--generations", type=int, default=2, help="generations in the fake run (default 2)")
    parser.add_argument("--ckpt-mb", type=int, default=90, help="size of each fake checkpoint in MiB (default 90)")
    parser.add_argument("--keep", default=None, help="build the run here and keep it (default: a temporary dir)")
    parser.add_argument("--profile-imports", action="store_true", help="also time a process that only imports")
    parser.add_argument("--write", action="store_true", help="store in docs/data/inspect-speed.json, render the page")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()  # anything else is passed to distill inspect, e.g. --jobs 1
    if args.child:
        sys.exit(child(args.child, extra))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pages import ROOT, provenance, render
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
            done = subprocess.run([sys.executable, __file__, "--child", str(run_dir), *extra], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
        (ROOT / "docs" / "data" / "inspect-speed.json").write_text(json.dumps(data, indent=1) + "\n")
        print("rendered:", ", ".join(render(["dk-speed"])))


if __name__ == "__main__":
    main()
