"""Epoch time of the in-memory fast path vs the per-sample torchvision path on the CIFAR-10 JPEG copy.

Times ``--batches`` training batches of each pipeline (after a warm-up batch, which also starts the workers) with the
same model step, in ``--rounds`` interleaved rounds, and extrapolates to a full epoch (50,000 images); the memory
path's one-off decoding (setup) is printed separately. Run: ``python -m benchmarks.data_pipeline`` (both models);
it writes ``docs/data/data-pipeline.json`` and renders the datasets page's section from it
(``benchmarks/data_pipeline_page.py``).
The tarball is extracted once into ``~/.cache/distill/cifar10-jpeg`` (see :func:`distill.data.ensure_cifar10_jpeg`).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn

from benchmarks.machine import provenance
from benchmarks.pages import publish
from distill.data import DATASETS, ensure_cifar10_jpeg


def small_convnet() -> nn.Module:
    """A small CIFAR conv net (about 0.1 M parameters)."""
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(128, 10))


def trivial() -> nn.Module:
    """Global average pooling + a linear layer: next to no compute, so the loader dominates."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))


def time_batches(loader, model: nn.Module, batches: int) -> float:
    """Seconds per batch over ``batches`` training steps after one warm-up step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    it = iter(loader)

    def step() -> None:
        x, y, _ = next(it)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(batches):
        step()
    return (time.perf_counter() - start) / batches


def measure(root, model: str, args: argparse.Namespace) -> dict:
    """Interleaved rounds of both pipelines with one model; per pipeline the setup time and seconds per batch."""
    per_epoch = 50000 / args.batch_size
    loaders, models, times, setup = {}, {}, {}, {}
    for pipeline in ("memory", "torchvision"):
        torch.manual_seed(0)
        dm = DATASETS.get("cifar10_jpeg")(root=str(root), pipeline=pipeline, num_workers=args.workers,
                                          batch_size=args.batch_size, seed=0)
        t = time.perf_counter()
        dm.setup("fit")
        setup[pipeline] = time.perf_counter() - t
        print(f"{pipeline:12s} setup {setup[pipeline]:6.1f} s")
        loaders[pipeline] = dm.train_dataloader()
        models[pipeline] = small_convnet() if model == "convnet" else trivial()
        times[pipeline] = []
    for _ in range(args.rounds):  # interleaved rounds: other load on the machine hits both paths alike
        for pipeline in times:
            times[pipeline].append(time_batches(loaders[pipeline], models[pipeline], args.batches))
    for pipeline, ts in times.items():
        print(f"{pipeline:12s} {min(ts) * 1e3:7.2f} ms/batch best, {sorted(ts)[len(ts) // 2] * 1e3:7.2f} median of "
              f"{len(ts)} rounds; epoch (extrapolated to {per_epoch:.0f} batches) {min(ts) * per_epoch:6.1f} s best")
    ratios = [tv / mem for tv, mem in zip(times["torchvision"], times["memory"], strict=True)]
    print(f"torchvision / memory epoch time per round: {', '.join(f'{r:.1f}x' for r in ratios)} (model={model})")
    return {"model": model, "setup_seconds": setup, "seconds_per_batch": times, "epoch_batches": per_epoch,
            "ratio_per_round": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=50, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per pipeline")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision path")
    parser.add_argument("--models", nargs="*", choices=["trivial", "convnet"], default=["trivial", "convnet"])
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads of the main process (0: torch's default); 1 gives stable numbers "
                             "on a small shared machine, where a descheduled OpenMP thread stalls every parallel op")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/data and the page alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    prov = provenance()
    t = time.perf_counter()
    root = ensure_cifar10_jpeg()
    print(f"image folder {root} ready in {time.perf_counter() - t:.1f} s")
    results = [measure(root, model, args) for model in args.models]
    if args.no_write:
        return
    data = {"provenance": prov, "batch_size": args.batch_size, "batches": args.batches, "rounds": args.rounds,
            "workers": args.workers, "torch_threads": torch.get_num_threads(), "results": results}
    print("rendered:", ", ".join(publish("docs/data/data-pipeline.json", data)))


if __name__ == "__main__":
    main()
