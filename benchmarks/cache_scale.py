"""The soft-label cache at ImageNet-1k size, on synthetic teacher outputs (docs/cache-scale.md).

Builds caches of ``--samples`` (default 1,281,167, ImageNet-1k's training set) x ``--classes`` (1000) with the
engine's own writer (:class:`~distill.cache.CacheWriter`, driven batch by batch as the predict loop drives it) and
reads them with the engine's own reader (:class:`~distill.cache.SoftLabelCache`): clean full float16, clean top-k
10, replay top-k 10 with 10 views, and 512-d float16 teacher embeddings (``cache.embeddings``). For each: bytes per
sample and per view, build throughput (encode + write + fsync + sha256; the teacher's forward pass is not part of
it), and random-batch reads (batch of ``--batch`` random indices, one process, as the training step reads) beside
this machine's memory-copy throughput of the same bytes measured in the same run (the limit), with the resident
memory of the reading process (anonymous vs file-backed pages: the memory map keeps the arrays out of the
process's own memory). Then how each cost grows with samples, classes and views (three sizes each, least-squares
slope).

Usage: ``python -m benchmarks.cache_scale [--samples N] [--dir /tmp/cache-scale] [--write]``; ``--write`` stores
``docs/data/cache-scale.json`` and renders the page's section. The caches are deleted afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.machine import load_average, provenance
from benchmarks.pages import publish
from distill.cache import CacheLayout, CacheWriter, SoftLabelCache
from distill.io import atomic_write_json

DATA = "docs/data/cache-scale.json"
IMAGENET = 1_281_167
BUILD_BATCH = 4096
POOL = 4  # distinct synthetic batches, cycled: the writer's work does not depend on the values
# What a GPU consumes, for comparison (a published figure, not measured here): plain ResNet-50 training on ImageNet-1k
# at 579.36 s per epoch on 8 NVIDIA V100 (batch 1024), the "Vanilla" row of FKD's training-speed table
# (github.com/szq0214/FKD, FKD/README.md).
GPU_REFERENCE = {"what": "ResNet-50 ImageNet-1k training, 8x V100, batch 1024 (FKD README, 'Vanilla' row)",
                 "seconds_per_epoch": 579.36, "samples": IMAGENET, "gpus": 8}


class SyntheticTeacher(nn.Module):
    """A stand-in teacher whose classifier input is the embedding and whose output is a prepared batch of logits, so
    the writer's embedding tap sees what it sees on a real network (``get_classifier()``'s input)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = _Prepared()

    def get_classifier(self) -> nn.Module:
        return self.head

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)


class _Prepared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logits = torch.zeros(0)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.logits[: len(embedding)]


class _Trainer:
    world_size = 1


class _Module:
    def __init__(self) -> None:
        self.student = SyntheticTeacher()


def layout_of(fmt: str, views: int, embeddings: bool) -> CacheLayout:
    k = 10 if fmt == "topk" else None
    if views == 1:
        return CacheLayout(format=fmt, topk=k, embeddings=embeddings)
    return CacheLayout(mode="replay", format=fmt, topk=k, view_epochs=views, view_seed=0, augmentation="synthetic",
                       embeddings=embeddings)


def fingerprint(samples: int, classes: int) -> dict[str, Any]:
    return {"name": "synthetic", "length": samples, "num_classes": classes}


def build(directory: Path, samples: int, classes: int, fmt: str, views: int, dim: int) -> dict[str, float]:
    """Write one cache with the engine's writer; seconds of the whole build and of its finishing steps."""
    shutil.rmtree(directory, ignore_errors=True)
    writer = CacheWriter(directory, samples, classes, "float16", {
        "generation": 0, "teacher_checkpoint": "synthetic", "teacher_sha256": "0" * 64,
        "dataset": fingerprint(samples, classes)}, layout_of(fmt, views, dim > 0))
    g = torch.Generator().manual_seed(0)
    logits = [3 * torch.randn(BUILD_BATCH, classes, generator=g) for _ in range(POOL)]
    embeds = [torch.relu(torch.randn(BUILD_BATCH, max(dim, 1), generator=g)) for _ in range(POOL)]
    trainer, module = _Trainer(), _Module()
    start = time.perf_counter()
    writer.on_predict_start(trainer, module)
    step = 0
    for view in range(views):
        for lo in range(0, samples, BUILD_BATCH):
            n = min(BUILD_BATCH, samples - lo)
            prediction = logits[step % POOL][:n]
            if dim:
                module.student.head.logits = prediction
                module.student(embeds[step % POOL][:n])  # the tap records the classifier's input
            batch = (None, None, torch.arange(lo, lo + n), torch.full((n,), view))
            writer.write_on_batch_end(trainer, module, prediction, None, batch, step)
            step += 1
    writer.on_predict_end(trainer, module)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "fsync_seconds": writer.seconds["fsync"], "sha256_seconds": writer.seconds["sha256"]}


def memory_status() -> dict[str, float]:
    """This process's resident memory in MB: total, anonymous (its own) and file-backed (mapped pages)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def copy_limit(nbytes: int, repeats: int, rng: np.random.Generator) -> float:
    """Median seconds to copy ``nbytes`` from a random offset of a 1 GiB in-memory buffer (beyond the CPU caches)."""
    src = np.ones(1 << 30, dtype=np.uint8)
    dst = np.empty(nbytes, dtype=np.uint8)
    times = []
    for _ in range(repeats):
        off = int(rng.integers(0, len(src) - nbytes))
        start = time.perf_counter()
        np.copyto(dst, src[off:off + nbytes])
        times.append(time.perf_counter() - start)
    del src
    return float(np.median(times))


def read(directory: Path, samples: int, classes: int, batch: int, repeats: int, dim: int) -> dict[str, Any]:
    """Open (verify) the cache and time random-batch lookups, as the training step does them, and the raw gathers."""
    start = time.perf_counter()
    cache = SoftLabelCache(directory, fingerprint(samples, classes), None)
    opened = time.perf_counter() - start
    rng = np.random.default_rng(1)
    before = memory_status()
    lookup, gather, embed = [], [], []
    for r in range(repeats):
        index = torch.from_numpy(rng.integers(0, samples, batch))
        t0 = time.perf_counter()
        cache.lookup(index, r)
        t1 = time.perf_counter()
        rows = cache.stored[r % cache.views] if cache.layout.replay else cache.stored
        rows[index.numpy()]
        t2 = time.perf_counter()
        lookup.append(t1 - t0)
        gather.append(t2 - t1)
        if dim:
            t3 = time.perf_counter()
            cache.lookup_embeddings(index, r)
            embed.append(time.perf_counter() - t3)
    after = memory_status()
    view_bytes = cache.format.bytes_per_view
    out = {"open_seconds": opened, "bytes_per_view": view_bytes, "batch_bytes": batch * view_bytes,
           "array_bytes": int(cache.stored.nbytes), "lookup_seconds": float(np.median(lookup)),
           "gather_seconds": float(np.median(gather)), "memory_before_mb": before, "memory_after_mb": after}
    if dim:
        out.update(embedding_bytes_per_view=int(cache.embeddings.itemsize * dim),
                   embedding_array_bytes=int(cache.embeddings.nbytes), embedding_seconds=float(np.median(embed)))
    out["copy_seconds"] = copy_limit(out["batch_bytes"], repeats, rng)
    if dim:
        out["embedding_copy_seconds"] = copy_limit(batch * out["embedding_bytes_per_view"], repeats, rng)
    return out


def measure(name: str, root: Path, samples: int, classes: int, fmt: str, views: int, dim: int, batch: int,
            repeats: int) -> dict[str, Any]:
    directory = root / name
    built = build(directory, samples, classes, fmt, views, dim)
    result = {"name": name, "samples": samples, "classes": classes, "format": fmt, "views": views,
              "embedding_dim": dim, "build": built, "read": read(directory, samples, classes, batch, repeats, dim)}
    shutil.rmtree(directory)
    print(f"{name}: build {built['seconds']:.1f} s, lookup {result['read']['lookup_seconds'] * 1e6:.0f} us", flush=True)
    return result


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs``."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


def growth(rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """How build seconds, bytes and lookup time grow along ``key`` (samples, classes or views) over three sizes."""
    xs = [r[key] for r in rows]
    build = [r["build"]["seconds"] for r in rows]
    nbytes = [r["read"]["array_bytes"] for r in rows]
    lookup = [r["read"]["lookup_seconds"] for r in rows]
    return {"along": key, "sizes": xs, "rows": rows, "build_seconds_per_unit": slope(xs, build),
            "bytes_per_unit": slope(xs, nbytes), "lookup_seconds_per_unit": slope(xs, lookup)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=IMAGENET)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/cache-scale"))
    parser.add_argument("--write", action="store_true", help="store docs/data/cache-scale.json and render the page")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one process reading, as the training step reads
    stamp = provenance()
    n, c, b, r = args.samples, args.classes, args.batch, args.repeats
    configs = [("clean full float16", n, c, "full", 1, 0), ("clean top-k 10", n, c, "topk", 1, 0),
               (f"replay top-k 10, {args.views} views", n, c, "topk", args.views, 0),
               (f"clean top-k 10 + {args.dim}-d float16 embeddings", n, c, "topk", 1, args.dim)]
    rows = [measure(name, args.dir, *cfg, b, r) for name, *cfg in configs]
    small = max(n // 20, 4 * BUILD_BATCH)
    scaling = [
        growth([measure(f"top-k 10, {s:,} samples", args.dir, s, c, "topk", 1, 0, b, r)
                for s in (n // 4, n // 2, n)], "samples"),
        growth([measure(f"full float16, {k:,} classes", args.dir, small, k, "full", 1, 0, b, r)
                for k in (c // 10, c, c * 10)], "classes"),
        growth([measure(f"top-k 10, {v} views", args.dir, n // 4, c, "topk", v, 0, b, r)
                for v in (1, max(args.views // 2, 2), args.views)], "views"),
    ]
    result = {"provenance": {**stamp, "load_average_at_end": load_average(), "directory": str(args.dir)},
              "setting": {"samples": n, "classes": c, "views": args.views, "embedding_dim": args.dim, "batch": b,
                          "repeats": r},
              "rows": rows, "scaling": scaling, "gpu_reference": GPU_REFERENCE}
    shutil.rmtree(args.dir, ignore_errors=True)
    if args.json:
        atomic_write_json(args.json, result, indent=1)
    if args.write:
        print("rendered:", ", ".join(publish(DATA, result)))


if __name__ == "__main__":
    main()
