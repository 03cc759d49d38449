"""Speed ratios of the suite: training steps (CE / cached / online), cache build vs bare inference, our loop vs a
hand-written PyTorch loop, and bytes per cached view.

Every ratio compares two things measured in the same process, interleaved, on the same data; the median is taken
over steps or rounds, so a background load that comes and goes hits both sides alike.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from suite_common import Profile, autocast, engine_run, recipe, timed
from torch import nn
from torch.utils.data import DataLoader

from distill.cache import CacheLayout, CacheWriter, SoftLabelCache
from distill.cache.replay import build_loader
from distill.data import DistillDataModule, TensorIndexedDataset
from distill.generations import generation_seed
from distill.losses import build_loss
from distill.models import create_backbone
from distill.optim import OptimizerConfig, build_optimizer
from distill.speed import SpeedConfig, apply_speed
from distill.tasks.born_again import GenerationModule
from distill.teachers import CachedTeacher, OnlineTeacher


def network(profile: Profile, dm: DistillDataModule) -> nn.Module:
    """A fresh backbone of the profile, with its speed settings, on its device."""
    net = create_backbone(profile.backbone, dm.num_classes, dm.in_chans)
    return apply_speed(net, SpeedConfig(channels_last=profile.channels_last)).to(profile.device)


def save_teacher(profile: Profile, dm: DistillDataModule, path: Path) -> GenerationModule:
    """An (untrained) teacher generation saved as a checkpoint (speed does not depend on the weights)."""
    module = GenerationModule(network(profile, dm), build_loss(0, "standard", 1.0, 1.0), None, dm.num_classes,
                              OptimizerConfig(), max_epochs=1, generation=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict()}, path)
    return module


def build_ratios(profile: Profile, dm: DistillDataModule, work: Path) -> dict[str, Any]:
    """``build_over_inference``: cache-build throughput / bare teacher inference throughput, clean and replay.

    Cache build: the engine's :meth:`BornAgainRun.build_cache` -- Lightning's predict loop over
    :func:`~distill.cache.replay.build_loader`, the :class:`CacheWriter` (encode, scatter into the memory map),
    fsync, sha256 and manifest. Bare inference: a hand-written ``torch.inference_mode`` loop running the teacher over
    the same loader (same batches, same data preparation), writing nothing. Replay: the same pair over
    ``build_views`` augmented views per sample. Also, as context, ``build_over_compute``: the build against the teacher
    alone on batches prepared in memory beforehand (so it also charges the data preparation, normalisation and
    augmentation, to the build). Rounds are interleaved; each ratio is the median over rounds of the paired ratio.
    """
    teacher = save_teacher(profile, dm, work / "teacher" / "model.ckpt")
    runs = {name: engine_run(recipe(profile, len(dm.cache_set), 1, *extra), work / name, dm,
                             work / "teacher" / "model.ckpt")
            for name, extra in (("clean", ()), ("replay", ("--cache.mode", "replay", "--cache.epochs",
                                                            str(profile.build_views))))}
    loaders = {name: build_loader(dm, run.cache_layout(run.specs[0])) for name, run in runs.items()}
    prepared = [batch[0] for batch in loaders["clean"]]
    net = teacher.student.eval()

    def bare(batches: Any) -> None:
        with torch.inference_mode(), autocast(profile):
            for batch in batches:
                net(batch[0] if isinstance(batch, (tuple, list)) else batch)

    def build(name: str) -> None:
        runs[name].build_cache(runs[name].specs[0], teacher)

    t: dict[str, list[float]] = {k: [] for k in ("compute", "bare", "build", "replay_bare", "replay_build")}
    for _ in range(profile.build_rounds):
        t["compute"].append(timed(lambda: bare(prepared), profile.device))
        t["bare"].append(timed(lambda: bare(loaders["clean"]), profile.device))
        t["build"].append(timed(lambda: build("clean"), profile.device))
        t["replay_bare"].append(timed(lambda: bare(loaders["replay"]), profile.device))
        t["replay_build"].append(timed(lambda: build("replay"), profile.device))

    def ratio(num: str, den: str) -> float:  # throughput ratio den-time / num-time, paired per round
        return statistics.median(b / a for a, b in zip(t[num], t[den], strict=True))

    n, e = len(dm.cache_set), profile.build_views
    return {
        "build_over_inference": ratio("build", "bare"),
        "replay_build_over_inference": ratio("replay_build", "replay_bare"),
        "build_over_compute": ratio("build", "compute"),
        "inference_images_per_s": n / statistics.median(t["bare"]),
        "compute_images_per_s": n / statistics.median(t["compute"]),
        "build_images_per_s": n / statistics.median(t["build"]),
        "replay_build_views_per_s": e * n / statistics.median(t["replay_build"]),
        "cache_dir": str(runs["clean"].layout.cache_dir(0)), "teacher": teacher,
    }


def step_ratios(profile: Profile, dm: DistillDataModule, cache_dir: str, teacher: nn.Module) -> dict[str, Any]:
    """``cached_over_ce`` and ``online_over_ce``: training-step time of a student with cached / online teacher scores
    over a plain cross-entropy step, same student network, same batches.

    A step is forward, loss (the engine's losses: cross-entropy; KD with alpha 1, T 1), backward and an SGD step;
    the cached step adds :class:`CachedTeacher` (a memory-map gather, or a device gather on a GPU), the online step
    :class:`OnlineTeacher` (a teacher forward pass). Steps of the three kinds are interleaved in rotating order,
    ``steps`` of each after warm-up, all three kinds of step ``i`` on the same batch; each ratio is the median over
    ``i`` of (step time / cross-entropy step time).
    """
    batches = [b for _, b in zip(range(8), dm.train_dataloader(), strict=False)]
    student = network(profile, dm).train()
    opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    ce, kd = build_loss(0, "standard", 1.0, 1.0), build_loss(1, "standard", 1.0, 1.0)
    sources = {"ce": None, "cached": CachedTeacher([SoftLabelCache(cache_dir, dm.fingerprint(), None)]),
               "online": OnlineTeacher([teacher])}
    for source in sources.values():
        if source is not None:
            source.to(torch.device(profile.device))

    def step(name: str, i: int) -> None:
        x, y, index = batches[i % len(batches)]
        source = sources[name]
        with autocast(profile):
            logits = student(x)
            scores = source(x, index) if source is not None else None
            loss = (kd if source is not None else ce)(logits, y, scores)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    names = list(sources)
    for i in range(2):
        for name in names:
            step(name, i)
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(profile.steps):
        for name in names[i % 3:] + names[:i % 3]:
            times[name].append(timed(lambda name=name, i=i: step(name, i), profile.device))
    def paired(name: str) -> float:  # steps i of both kinds ran back to back: their ratio cancels slow load drifts
        return statistics.median(a / b for a, b in zip(times[name], times["ce"], strict=True))

    return {"cached_over_ce": paired("cached"), "online_over_ce": paired("online"),
            "step_ms": {name: 1000 * statistics.median(t) for name, t in times.items()}}


def loop_ratio(profile: Profile, dm: DistillDataModule, work: Path) -> dict[str, Any]:
    """``lightning_over_torch``: training throughput of our loop / a minimal hand-written PyTorch loop.

    Ours: :meth:`BornAgainRun.train` of generation 0 for one epoch -- the engine's Trainer with its CSV logger,
    per-epoch checkpoint, epoch seeding, non-finite-loss guard and torchmetrics accuracy (its reported fit wall
    time). Hand-written: the same seed, network, data loader, optimizer and schedule; forward, cross-entropy,
    backward, step; nothing else. Rounds alternate; the ratio is the median over rounds of (their time / ours).
    """
    cfg = recipe(profile, len(dm.train_set), 1)
    seed = generation_seed(0, 0)

    def ours(r: int) -> float:
        run = engine_run(cfg, work / f"loop-{r}", dm)
        return run.train(run.specs[0])[1]

    def hand_written() -> float:
        L.seed_everything(seed, workers=True, verbose=False)
        net = network(profile, dm).train()
        opt, sched = build_optimizer(net.parameters(), OptimizerConfig(**cfg.optimizer.as_dict()), 1)
        loader = dm.train_dataloader()

        def epoch() -> None:
            loader.sampler.set_epoch(0)
            for x, y, _ in loader:
                with autocast(profile):
                    loss = F.cross_entropy(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            sched.step()

        return timed(epoch, profile.device)

    ratios, ours_t, theirs_t = [], [], []
    for r in range(profile.loop_rounds):
        first, second = (ours, hand_written) if r % 2 == 0 else (hand_written, ours)
        a = first(r) if first is ours else first()
        b = second(r) if second is ours else second()
        o, t = (a, b) if first is ours else (b, a)
        ours_t.append(o)
        theirs_t.append(t)
        ratios.append(t / o)
    n = len(dm.train_set)
    return {"lightning_over_torch": statistics.median(ratios), "ours_images_per_s": n / statistics.median(ours_t),
            "torch_images_per_s": n / statistics.median(theirs_t)}


class _TableScores(L.LightningModule):
    """predict_step returns fixed logits rows for the batch's indices (bytes do not depend on who computed them)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table, self.unused = table, nn.Linear(1, 1)

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self.table[batch[2]]


def bytes_per_view(profile: Profile, work: Path, num_classes: int = 100) -> dict[str, float]:
    """Stored bytes per (view, sample) of each format at ``num_classes`` classes, from caches written to disk.

    A predict loop with the :class:`CacheWriter` writes ``bytes_views`` random logit rows per format; the figure is
    the ``.npy`` payload (file size minus its fixed header of about 128 bytes) divided by the number of views.
    """
    n = profile.bytes_views
    table = torch.randn(n, num_classes, generator=torch.Generator().manual_seed(0)) * 3
    loader = DataLoader(TensorIndexedDataset(torch.zeros(n, 1), torch.zeros(n)), batch_size=4096)
    formats = {"full_float32": ("full", "float32", None), "full_float16": ("full", "float16", None),
               "topk10": ("topk", "float16", 10)}
    dataset = {"length": n, "num_classes": num_classes}
    out: dict[str, float] = {}
    for label, (fmt, dtype, k) in formats.items():
        layout = CacheLayout(format=fmt, topk=k)
        writer = CacheWriter(work / f"bytes-{label}", n, num_classes, dtype, {
            "generation": 0, "teacher_checkpoint": "-", "teacher_sha256": "-", "dataset": dataset}, layout)
        L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                  callbacks=[writer]).predict(_TableScores(table), loader, return_predictions=False)
        out[label] = SoftLabelCache(work / f"bytes-{label}", dataset, None, layout).nbytes / n
    out["classes"] = num_classes
    return out


def run_timing(profile: Profile, dm: DistillDataModule, loop_dm: DistillDataModule, work: Path) -> dict[str, Any]:
    """Every speed measurement of the suite: steps and builds on ``dm``, whole epochs on ``loop_dm``."""
    build = build_ratios(profile, dm, work / "build")
    teacher = build.pop("teacher").student.eval()
    steps = step_ratios(profile, dm, build.pop("cache_dir"), teacher)
    return {**steps, **build, **loop_ratio(profile, loop_dm, work), "bytes_per_view": bytes_per_view(profile, work)}
