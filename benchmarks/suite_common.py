"""Shared pieces of the benchmark suite: run profiles, data modules, recipes, device helpers and machine facts."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from jsonargparse import Namespace

from distill.config import parse_recipe
from distill.data import DATASETS, DataNotFoundError, DistillDataModule
from distill.data.memory import MemoryImageSet
from distill.data.sources import Split
from distill.data.torchvision_sets import FashionMNISTDataModule
from distill.generations import BornAgainRun

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Profile:
    """Sizes and settings of one benchmark run.

    Attributes:
        name: ``full``, ``quick``, ``tiny`` (tests) or ``gpu``.
        dataset: registered dataset name (an in-memory image dataset).
        backbone: backbone spec of teacher and students.
        device: where data and models live (``cpu`` or ``cuda``).
        precision: Lightning precision (``32-true`` or ``bf16-mixed``); the hand-written loops autocast to match.
        channels_last: ``speed.channels_last`` for every network.
        batch_size: training batch size.
        eval_batch_size: cache-build and evaluation batch size.
        timing_train: training samples of the timing data.
        steps: timed training steps per variant in the step benchmark (interleaved with the others).
        build_rounds: interleaved rounds of (prepared-batch compute, inference loop, build) for clean and replay.
        build_views: view epochs of the timed replay build.
        loop_train: training samples of the Lightning-vs-PyTorch epochs.
        loop_rounds: interleaved rounds of (our loop, hand-written loop), one epoch each.
        acc_train: training samples of the accuracy runs.
        acc_epochs: epochs of the teacher and of every student in the accuracy runs (also the replay ``cache.epochs``).
        acc_topk: ``cache.topk`` of the top-k accuracy run.
        test_subset: evaluate accuracy on the first this many test images (None: the whole test set).
        bytes_views: views written per format in the bytes-per-view measurement.
    """

    name: str
    dataset: str = "fashion_mnist"
    backbone: Any = field(default_factory=lambda: {"name": "small_cnn", "init_args": {"width": 16}})
    device: str = "cpu"
    precision: str = "32-true"
    channels_last: bool = False
    batch_size: int = 128
    eval_batch_size: int = 1000
    timing_train: int = 8192
    steps: int = 60
    build_rounds: int = 5
    build_views: int = 2
    loop_train: int = 2048
    loop_rounds: int = 8
    acc_train: int = 6000
    acc_epochs: int = 4
    acc_topk: int = 3
    test_subset: int | None = None
    bytes_views: int = 20000

    @property
    def quick(self) -> bool:
        return self.name != "full" and self.name != "gpu"

    @property
    def bf16(self) -> bool:
        return self.precision.startswith("bf16")


FULL = Profile("full")
QUICK = Profile("quick", backbone={"name": "small_cnn", "init_args": {"width": 8}}, batch_size=64,
                eval_batch_size=512, timing_train=2048, steps=8, build_rounds=2, loop_train=1024, loop_rounds=2,
                acc_train=1024, acc_epochs=1, test_subset=2000, bytes_views=5000)
TINY = replace(QUICK, name="tiny", backbone={"name": "small_cnn", "init_args": {"width": 4}}, batch_size=32,
               eval_batch_size=128, timing_train=128, steps=2, build_rounds=1, loop_train=64, loop_rounds=1,
               acc_train=64, test_subset=128, bytes_views=500)
GPU = Profile("gpu", dataset="cifar10_jpeg", backbone="cifar_resnet20", device="cuda", precision="bf16-mixed",
              channels_last=True, batch_size=256, eval_batch_size=2048, timing_train=50000, steps=60, build_rounds=3,
              build_views=4, loop_train=50000, loop_rounds=2, acc_train=50000, acc_epochs=5, acc_topk=3,
              bytes_views=50000)
PROFILES = {p.name: p for p in (FULL, QUICK, TINY, GPU)}


class SyntheticFashion(FashionMNISTDataModule):
    """Fashion-MNIST-shaped random images (timing only, when the real files are absent)."""

    def _load_splits(self) -> tuple[Split, None, Split]:
        g = torch.Generator().manual_seed(0)
        n = self.train_subset or 8192

        def split(size: int) -> Split:
            return Split(labels=torch.arange(size) % 10,
                         images=torch.randint(0, 256, (size, 1, 28, 28), generator=g, dtype=torch.uint8))

        return split(n), None, split(1000)


def datamodule(profile: Profile, train: int, synthetic_ok: bool = False) -> tuple[DistillDataModule, str]:
    """The profile's data module on ``train`` training samples (memory pipeline, on the profile's device).

    Returns the module and what it holds: the dataset name, or a note that random images stand in for it.
    """
    options = dict(train_subset=train, batch_size=profile.batch_size, eval_batch_size=profile.eval_batch_size,
                   pipeline="memory", device=profile.device)
    try:
        dm = DATASETS.get(profile.dataset)(**options)
        dm.setup("fit")
        what = profile.dataset
    except DataNotFoundError:
        if not (synthetic_ok and profile.dataset == "fashion_mnist"):
            raise
        dm, what = SyntheticFashion(**options), "random 1x28x28 images (Fashion-MNIST files not found)"
        dm.setup("fit")
    if profile.test_subset is not None and len(dm.test_set) > profile.test_subset:
        t = dm.test_set
        dm.test_set = MemoryImageSet(t.images[:profile.test_subset], t.labels[:profile.test_subset], t.spec)
    return dm, what


def recipe(profile: Profile, train: int, epochs: int, *extra: str) -> Namespace:
    """A parsed recipe for ``profile`` (the data module itself is handed to the run separately)."""
    data = {"name": profile.dataset, "train_subset": train, "batch_size": profile.batch_size,
            "eval_batch_size": profile.eval_batch_size, "device": profile.device}
    return parse_recipe(None, [
        "--seed", "0", "--generations", "1", "--data", json.dumps(data), "--backbone",
        profile.backbone if isinstance(profile.backbone, str) else json.dumps(profile.backbone),
        "--trainer.max_epochs", str(epochs), "--trainer.accelerator", "gpu" if profile.device != "cpu" else "cpu",
        "--trainer.devices", "1", "--trainer.precision", profile.precision, "--trainer.enable_progress_bar", "false",
        "--speed.channels_last", str(profile.channels_last).lower(), "--optimizer.lr", "0.05", *extra])


def engine_run(cfg: Namespace, out: Path, dm: DistillDataModule, teacher_ckpt: Path | None = None) -> BornAgainRun:
    """A :class:`BornAgainRun` in ``out`` using ``dm``; ``teacher_ckpt`` is copied in as its generation 0."""
    run = BornAgainRun(cfg, out, "benchmark")
    run.dm = dm
    run.layout.gen_dir(0).mkdir(parents=True, exist_ok=True)
    run.layout.gen_dir(1).mkdir(parents=True, exist_ok=True)
    if teacher_ckpt is not None:
        shutil.copy(teacher_ckpt, run.layout.checkpoint(0))
    return run


def sync(device: str) -> None:
    """Wait for queued device work (timings on a GPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def autocast(profile: Profile) -> AbstractContextManager:
    """bf16 autocast matching ``trainer.precision: bf16-mixed`` for the hand-written loops."""
    if not profile.bf16:
        return nullcontext()
    return torch.autocast(torch.device(profile.device).type, dtype=torch.bfloat16)


def timed(fn: Callable[[], Any], device: str) -> float:
    """Wall seconds of ``fn()`` (device work included)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def machine() -> dict[str, Any]:
    """CPU model, cores, GPU, versions, load average, date and commit of this run."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    import lightning

    return {"cpu": cpu, "cores": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "lightning": lightning.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit}
