"""Epoch time of the in-memory fast path vs the per-sample torchvision path on the CIFAR-10 JPEG copy.

Times ``--batches`` training batches of each pipeline (after a warm-up batch, which also starts the workers) with the
same model step, in ``--rounds`` interleaved rounds, and extrapolates to a full epoch (50,000 images); the memory
path's one-off decoding (setup) is printed separately. Run: ``python benchmarks/data_pipeline.py``.
The tarball is extracted once into ``~/.cache/distill/cifar10-jpeg`` (see :func:`distill.data.ensure_cifar10_jpeg`).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=100, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per pipeline")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the torchvision path")
    parser.add_argument("--model", choices=["trivial", "convnet"], default="trivial")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads of the main process (0: torch's default); 1 gives stable numbers "
                             "on a small shared machine, where a descheduled OpenMP thread stalls every parallel op")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    t = time.perf_counter()
    root = ensure_cifar10_jpeg()
    print(f"image folder {root} ready in {time.perf_counter() - t:.1f} s")
    per_epoch = 50000 / args.batch_size
    loaders, models, times = {}, {}, {}
    for pipeline in ("memory", "torchvision"):
        torch.manual_seed(0)
        dm = DATASETS.get("cifar10_jpeg")(root=str(root), pipeline=pipeline, num_workers=args.workers,
                                          batch_size=args.batch_size, seed=0)
        t = time.perf_counter()
        dm.setup("fit")
        print(f"{pipeline:12s} setup {time.perf_counter() - t:6.1f} s")
        loaders[pipeline] = dm.train_dataloader()
        models[pipeline] = small_convnet() if args.model == "convnet" else trivial()
        times[pipeline] = []
    for _ in range(args.rounds):  # interleaved rounds: other load on the machine hits both paths alike
        for pipeline in times:
            times[pipeline].append(time_batches(loaders[pipeline], models[pipeline], args.batches))
    for pipeline, ts in times.items():
        best, median = min(ts), sorted(ts)[len(ts) // 2]
        print(f"{pipeline:12s} {best * 1e3:7.2f} ms/batch best, {median * 1e3:7.2f} median of {len(ts)} rounds; "
              f"epoch (extrapolated to {per_epoch:.0f} batches) {best * per_epoch:6.1f} s best")
    ratio = [min(times["torchvision"]) / min(times["memory"]),
             sorted(times["torchvision"])[args.rounds // 2] / sorted(times["memory"])[args.rounds // 2]]
    print(f"torchvision / memory epoch time: {ratio[0]:.1f}x (best), {ratio[1]:.1f}x (median) "
          f"(model={args.model}, {args.rounds} x {args.batches} batches of {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}, torchvision workers {args.workers})")

if __name__ == "__main__":
    main()
