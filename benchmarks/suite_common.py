"""Shared pieces of the benchmark suite: run profiles, data modules, recipes and device helpers."""

from __future__ import annotations

import json
import shutil
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
from distill.resolve import resolve_run


@dataclass(frozen=True)
class Regime:
    """One timing regime: a network and batch size whose training step is short ("small") or long ("large").

    Attributes:
        name: ``small`` or ``large`` (the page's headings).
        backbone: backbone spec of teacher and student.
        batch_size: training batch size.
        train: training samples (one epoch per timed fit).
        eval_batch_size: cache-build batch size.
        build_train: training samples of the cache-build timing (None: the whole training set, as a run builds it).
    """

    name: str
    backbone: Any
    batch_size: int
    train: int
    eval_batch_size: int = 1000
    build_train: int | None = None


def _small_cnn(width: int) -> dict[str, Any]:
    return {"name": "small_cnn", "init_args": {"width": width}}


@dataclass(frozen=True)
class Profile:
    """Sizes and settings of one benchmark run.

    Attributes:
        name: ``full``, ``quick``, ``tiny`` (tests), ``gpu`` or ``gpu-dry`` (the GPU profile shrunk for a CPU).
        dataset: registered dataset name (an in-memory image dataset).
        device: where data and models live (``cpu`` or ``cuda``).
        precision: Lightning precision (``32-true`` or ``bf16-mixed``); the hand-written loops autocast to match.
        channels_last: ``speed.channels_last`` for every network.
        compile: ``speed.compile`` for every network (the hand-written loops compile theirs too).
        threads: torch intra-op threads (0: torch's default). 1 on a small shared CPU, where a descheduled OpenMP
            thread stalls every parallel op of both sides at random.
        regimes: the timing regimes.
        warmup_epochs: untimed epochs before the timed one of every fit and bare loop (compilation, autotuning).
        rounds: interleaved rounds of every timed variant, per regime.
        backbone: backbone of the accuracy runs.
        batch_size: training batch size of the accuracy runs.
        eval_batch_size: evaluation and cache-build batch size of the accuracy runs.
        accuracy: run the accuracy part (cache settings vs test accuracy).
        acc_train: training samples of the accuracy runs.
        acc_epochs: epochs of the teacher and of every student in the accuracy runs (also the replay ``cache.epochs``).
        acc_topk: ``cache.topk`` of the top-k accuracy run.
        test_subset: evaluate accuracy on the first this many test images (None: the whole test set).
        bytes_views: views written per format in the bytes-per-view measurement.
        ban_epochs: epochs per generation of the whole born-again recipe (teacher + 3 students) timed at the end;
            0 skips it.
        ban_train: training samples of that recipe (None: all).
    """

    name: str
    dataset: str = "fashion_mnist"
    device: str = "cpu"
    precision: str = "32-true"
    channels_last: bool = False
    compile: bool = False
    threads: int = 1
    regimes: tuple[Regime, ...] = (Regime("small", _small_cnn(4), 32, 4096, 1000, 16384),
                                   Regime("large", _small_cnn(16), 128, 2048, 1000, 8192))
    warmup_epochs: int = 0
    rounds: int = 6
    backbone: Any = field(default_factory=lambda: _small_cnn(16))
    batch_size: int = 128
    eval_batch_size: int = 1000
    accuracy: bool = True
    acc_train: int = 6000
    acc_epochs: int = 4
    acc_topk: int = 3
    test_subset: int | None = None
    bytes_views: int = 20000
    ban_epochs: int = 0
    ban_train: int | None = None

    @property
    def quick(self) -> bool:
        return self.name not in ("full", "gpu")

    @property
    def bf16(self) -> bool:
        return self.precision.startswith("bf16")


FULL = Profile("full")
QUICK = Profile("quick", regimes=(Regime("small", _small_cnn(4), 32, 1024, 1000, 8192),
                                 Regime("large", _small_cnn(16), 128, 512, 1000, 4096)),
                rounds=5, backbone=_small_cnn(8), batch_size=64, eval_batch_size=512, acc_train=1024, acc_epochs=1,
                test_subset=2000, bytes_views=5000)
TINY = replace(QUICK, name="tiny", regimes=(Regime("small", _small_cnn(2), 16, 64, 32, 64),
                                            Regime("large", _small_cnn(4), 32, 64, 32, 64)),
               rounds=2, backbone=_small_cnn(4), batch_size=32, eval_batch_size=128, acc_train=64, test_subset=128,
               bytes_views=500)
GPU = Profile("gpu", dataset="cifar10_jpeg", device="cuda", precision="bf16-mixed", channels_last=True, compile=True,
              threads=0, regimes=(Regime("small", "cifar_resnet20", 128, 10000, 2048),
                                  Regime("large", "cifar_resnet56", 512, 10000, 2048)),
              warmup_epochs=1, rounds=5, backbone="cifar_resnet20", batch_size=256, eval_batch_size=2048,
              accuracy=False, bytes_views=50000, ban_epochs=3)
#: the GPU profile's code path on a CPU in seconds: same settings but the device, tiny sizes, Fashion-MNIST data
GPU_DRY = replace(GPU, name="gpu-dry", dataset="fashion_mnist", device="cpu", compile=False, threads=1,
                  regimes=(Regime("small", "cifar_resnet20", 16, 64, 32, 64),
                           Regime("large", "cifar_resnet20", 32, 64, 32, 64)),
                  warmup_epochs=0, rounds=1, bytes_views=500, ban_epochs=1, ban_train=64, test_subset=128)
PROFILES = {p.name: p for p in (FULL, QUICK, TINY, GPU, GPU_DRY)}


class SyntheticFashion(FashionMNISTDataModule):
    """Fashion-MNIST-shaped random images (timing only, when the real files are absent)."""

    def _load_splits(self) -> tuple[Split, None, Split]:
        g = torch.Generator().manual_seed(0)
        n = self.train_subset or 8192

        def split(size: int) -> Split:
            return Split(labels=torch.arange(size) % 10,
                         images=torch.randint(0, 256, (size, 1, 28, 28), generator=g, dtype=torch.uint8))

        return split(n), None, split(1000)


def datamodule(profile: Profile, train: int | None, synthetic_ok: bool = False,
               regime: Regime | None = None) -> tuple[DistillDataModule, str]:
    """The profile's data module on ``train`` training samples (memory pipeline, on the profile's device).

    Batch sizes are the regime's (default: the accuracy runs'). Returns the module and what it holds: the dataset
    name, or a note that random images stand in for it.
    """
    options = dict(train_subset=train, batch_size=(regime or profile).batch_size, pipeline="memory",
                   eval_batch_size=(regime or profile).eval_batch_size, device=profile.device)
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


def recipe(profile: Profile, train: int | None, epochs: int, *extra: str, regime: Regime | None = None,
           progress_bar: bool = False, generations: int = 1) -> Namespace:
    """A parsed recipe for ``profile`` (the data module itself is handed to the run separately).

    ``regime``: its backbone and batch sizes (default: the accuracy runs'); ``progress_bar``: the engine's default
    bar (what a user gets), else none.
    """
    sizes = regime or profile
    data = {"name": profile.dataset, "train_subset": train, "batch_size": sizes.batch_size,
            "eval_batch_size": sizes.eval_batch_size, "device": profile.device}
    return parse_recipe(None, [
        "--seed", "0", "--generations", str(generations), "--data", json.dumps(data), "--backbone",
        sizes.backbone if isinstance(sizes.backbone, str) else json.dumps(sizes.backbone),
        "--trainer.max_epochs", str(epochs), "--trainer.accelerator", "gpu" if profile.device != "cpu" else "cpu",
        "--trainer.devices", "1", "--trainer.precision", profile.precision,
        "--trainer.enable_progress_bar", str(progress_bar).lower(), "--speed.compile", str(profile.compile).lower(),
        "--speed.channels_last", str(profile.channels_last).lower(), "--optimizer.lr", "0.05", *extra])


def engine_run(cfg: Namespace, out: Path, dm: DistillDataModule, teacher_ckpt: Path | None = None) -> BornAgainRun:
    """A :class:`BornAgainRun` in ``out`` using ``dm``; ``teacher_ckpt`` is copied in as its generation 0."""
    run = BornAgainRun(resolve_run(cfg), out, "benchmark")
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
