"""Speed of the engine's real path against bare PyTorch loops doing the same math, per timing regime.

Every engine timing is :meth:`BornAgainRun.train` (``Trainer.fit`` on the engine's ``GenerationModule`` with the
run's default callbacks: progress bar, CSV logger, per-epoch checkpoint, epoch seeding, non-finite-loss guard) or
:meth:`BornAgainRun.build_cache` (Lightning's predict loop and the cache writer). Each bare loop uses the same
network, data loader, optimizer, schedule, precision and device, and nothing else. Variants run in interleaved rounds
(the order rotates each round), so load that comes and goes hits every variant alike; each figure keeps all rounds.
"""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.profilers import SimpleProfiler
from torch import nn

from benchmarks.machine import load_average
from benchmarks.suite_common import Profile, Regime, autocast, datamodule, engine_run, recipe, sync, timed
from distill.cache import CacheWriter
from distill.cache.replay import build_loader
from distill.data import DistillDataModule
from distill.generations import BornAgainRun
from distill.optim import OptimizerConfig, build_optimizer
from distill.spec import thaw
from distill.speed import SpeedConfig, apply_speed
from distill.tasks.born_again import GenerationModule

#: ``speed.steps_per_call`` values timed beside our K = 1 epoch (variants ``ours_k{K}``)
STEPS_PER_CALL = (4, 16)
#: goals of the ratios (op, value); the others are reported without one
GOALS = {"lightning_over_torch": (">=", 0.95), "cached_over_ce": ("<=", 1.03), "build_over_inference": (">=", 0.95),
         **{f"lightning_k{k}_over_torch": (">=", 0.95) for k in STEPS_PER_CALL}}


def spread(values: list[float]) -> dict[str, Any]:
    """min / median / max of ``values`` (all kept)."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "values": list(values)}


def verdict(values: list[float], op: str, goal: float) -> str:
    """``met`` when every value clears the goal, ``missed`` when none does, else ``within noise``."""
    ok = [v >= goal if op == ">=" else v <= goal for v in values]
    return "met" if all(ok) else "missed" if not any(ok) else "within noise"


def ratio(name: str, num: list[float], den: list[float]) -> dict[str, Any]:
    """``median(num) / median(den)`` and the per-round ratios ``num[r] / den[r]`` (the spread), with a verdict.

    For a throughput ratio pass the times the other way round (bare time over our time). The verdict reads the ratio
    of medians and every per-round ratio: "met" only when all of them clear the goal.
    """
    rounds = [a / b for a, b in zip(num, den, strict=True)]
    value = statistics.median(num) / statistics.median(den)
    out = {"value": value, "min": min(rounds), "max": max(rounds), "rounds": rounds, "goal": None, "verdict": "-"}
    if name in GOALS:
        op, goal = GOALS[name]
        out.update(goal=[op, goal], verdict=verdict([value, *rounds], op, goal))
    return out


class EpochClock(Callback):
    """Stamps a fit: its start, the start of its last epoch and the end of training (after the last checkpoint)."""

    def __init__(self, device: str) -> None:
        self.device, self.stamps = device, {}

    def _stamp(self, key: str) -> None:
        sync(self.device)
        self.stamps[key] = time.perf_counter()

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stamp("fit")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stamp("epoch")  # the last epoch's start survives

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stamp("end")
        self.batches = trainer.num_training_batches
        if isinstance(trainer.profiler, SimpleProfiler):
            self.profile = {k: sum(v) for k, v in trainer.profiler.recorded_durations.items()}

    @property
    def epoch_seconds(self) -> float:
        return self.stamps["end"] - self.stamps["epoch"]


def fit(run: BornAgainRun, generation: int, device: str, extra: list | None = None) -> EpochClock:
    """:meth:`BornAgainRun.train` of a generation with an :class:`EpochClock` (and ``extra``) among its callbacks."""
    clock, user = EpochClock(device), run._user_objects

    def with_clock(spec: Any) -> tuple[list, list]:
        loggers, callbacks = user(spec)
        return loggers, [*callbacks, *(extra or []), clock]

    with mock.patch.object(run, "_user_objects", with_clock):
        run.train(run.specs[generation])
    return clock


def network(profile: Profile, regime: Regime, dm: DistillDataModule) -> nn.Module:
    """A fresh backbone of the regime, with the profile's speed settings, on its device."""
    from distill.models import create_backbone

    net = create_backbone(thaw(regime.backbone), dm.num_classes, dm.in_chans)
    speed = SpeedConfig(channels_last=profile.channels_last, compile=profile.compile)
    return apply_speed(net, speed).to(profile.device)


def bare_epoch(profile: Profile, regime: Regime, dm: DistillDataModule, optimizer: OptimizerConfig, epochs: int,
               step: bool = True) -> float:
    """Seconds of the last of ``epochs`` hand-written epochs: forward, cross-entropy, backward, SGD step.

    ``step=False`` only draws the batches (the data cost the engine's empty step is compared with).
    """
    L.seed_everything(0, workers=True, verbose=False)
    net = network(profile, regime, dm).train()
    opt, sched = build_optimizer(net.parameters(), optimizer, epochs)
    dm.steps_per_call = 1  # one batch per item (an engine fit with speed.steps_per_call K leaves K here)
    loader = dm.train_dataloader()

    def epoch(e: int) -> None:
        loader.sampler.set_epoch(e)
        for x, y, _ in loader:
            if not step:
                continue
            with autocast(profile):
                loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()

    for e in range(epochs - 1):
        epoch(e)
    return timed(lambda: epoch(epochs - 1), profile.device)


@contextmanager
def as_terminal() -> Iterator[None]:
    """Progress bars drawn as on a terminal (rich's ``TTY_COMPATIBLE``/``TTY_INTERACTIVE``), into ``/dev/null``.

    Off a terminal rich draws a bar only when it finishes; a user at a terminal gets it redrawn, so the timings do too.
    """
    with open(os.devnull, "w") as null, mock.patch.dict(os.environ, {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}), \
            redirect_stdout(null):
        yield


def _empty_step(self: L.LightningModule, batch: Any, batch_idx: int) -> torch.Tensor:
    return torch.zeros((), device=self.device, requires_grad=True)


class PlainModule(L.LightningModule):
    """The bare loop's math as the smallest LightningModule: cross-entropy step, the same optimizer and schedule."""

    def __init__(self, net: nn.Module, optimizer: OptimizerConfig, epochs: int, empty: bool = False) -> None:
        super().__init__()
        self.net, self.optimizer_cfg, self.epochs, self.empty = net, optimizer, epochs, empty

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.empty:
            return _empty_step(self, batch, batch_idx)
        x, y, _ = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> dict[str, Any]:
        opt, sched = build_optimizer(self.net.parameters(), self.optimizer_cfg, self.epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def plain_fit(profile: Profile, regime: Regime, dm: DistillDataModule, optimizer: OptimizerConfig, epochs: int,
              empty: bool = False) -> float:
    """Last-epoch seconds of :class:`PlainModule` under a plain ``Trainer`` (no logger, checkpoint, bar or summary).

    What Lightning's loop itself costs around the same math; with ``empty`` the pure Lightning floor.
    """
    L.seed_everything(0, workers=True, verbose=False)
    clock = EpochClock(profile.device)
    dm.steps_per_call = 1
    trainer = L.Trainer(accelerator="gpu" if profile.device != "cpu" else "cpu", devices=1,
                        precision=profile.precision, max_epochs=epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
    trainer.fit(PlainModule(network(profile, regime, dm), optimizer, epochs, empty), dm.train_dataloader())
    return clock.epoch_seconds


class PythonCalls(Callback):
    """``cProfile`` over a fit's training epochs (from the first epoch's start to the end of training, checkpoints
    included, trainer setup not): Python function calls and own time per training step, by package.

    cProfile slows every call down, so the times are inflated; the counts are exact.
    """

    def __init__(self) -> None:
        import cProfile

        self.profiler, self.by_package = cProfile.Profile(), {}

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == 0:
            self.profiler.enable()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import pstats

        self.profiler.disable()
        steps = trainer.global_step or 1
        out: dict[str, dict[str, float]] = {}
        for (path, _, _), (_, calls, own, _, _) in pstats.Stats(self.profiler).stats.items():  # type: ignore
            package = next((name for marker, name in _PACKAGES if marker in path), "other Python")
            row = out.setdefault(package, {"calls": 0.0, "own_ms": 0.0})
            row["calls"] += calls / steps
            row["own_ms"] += 1000 * own / steps
        self.by_package = dict(sorted(out.items(), key=lambda kv: -kv[1]["calls"]))


#: cProfile path markers of the packages a step's Python calls are counted under (the first match wins)
_PACKAGES = (("lightning", "lightning"), ("/torch/", "torch"), ("/distill/", "distill"), ("benchmarks", "benchmark"),
             ("~", "builtins (C functions)"))


def regime_timing(profile: Profile, regime: Regime, work: Path) -> dict[str, Any]:
    """Every timed variant of one regime, ``profile.rounds`` interleaved rounds; see the module docstring."""
    dm, what = datamodule(profile, regime.train, True, regime)
    bdm = dm if regime.build_train == regime.train else datamodule(profile, regime.build_train, True, regime)[0]
    epochs = profile.warmup_epochs + 1
    cfg = {mode: recipe(profile, regime.train, epochs, "--cache.mode", mode, regime=regime, progress_bar=True)
           for mode in ("clean", "online")}
    runs = {name: engine_run(cfg[mode], work / name, dm) for name, mode in (
        ("ce", "clean"), ("cached", "clean"), ("online", "online"))}
    for k in STEPS_PER_CALL:  # our CE epoch at speed.steps_per_call K
        runs[f"ce_k{k}"] = engine_run(recipe(profile, regime.train, epochs, "--speed.steps_per_call", str(k),
                                             regime=regime, progress_bar=True), work / f"ce_k{k}", dm)
    runs["build"] = engine_run(recipe(profile, regime.build_train, epochs, regime=regime, progress_bar=True),
                               work / "build", bdm)
    fit(runs["ce"], 0, profile.device)  # the teacher: generation 0, trained for the epochs of the timed fits
    for name in ("cached", "online", "build"):
        runs[name].layout.checkpoint(0).write_bytes(runs["ce"].layout.checkpoint(0).read_bytes())
    teacher = runs["build"].restore(runs["build"].specs[0])
    runs["cached"].build_cache(runs["cached"].specs[0], teacher)
    runs["build"].build_cache(runs["build"].specs[0], teacher)  # warm-up
    loader = build_loader(bdm, runs["build"].cache_layout(runs["build"].specs[0]))
    net = teacher.student.eval()
    finish: dict[str, list[float]] = {"fsync": [], "sha256": []}
    real_finish = CacheWriter._finish

    def finish_timed(writer: CacheWriter) -> None:
        real_finish(writer)
        for k in finish:
            finish[k].append(writer.seconds[k])

    def build() -> float:
        with mock.patch.object(CacheWriter, "_finish", finish_timed):
            return timed(lambda: runs["build"].build_cache(runs["build"].specs[0], teacher), profile.device)

    def inference() -> float:
        def loop() -> None:
            with torch.inference_mode(), autocast(profile):
                for batch in loader:
                    net(batch[0])
        return timed(loop, profile.device)

    def empty(extra: list | None = None) -> float:
        with mock.patch.object(GenerationModule, "training_step", _empty_step):
            return fit(runs["ce"], 0, profile.device, extra).epoch_seconds

    optimizer = OptimizerConfig(**cfg["clean"].optimizer.as_dict())
    variants: dict[str, Callable[[], float]] = {
        "ours": lambda: fit(runs["ce"], 0, profile.device).epoch_seconds,
        "ours_stock_bar": lambda: fit(runs["ce"], 0, profile.device, [RichProgressBar(leave=True)]).epoch_seconds,
        **{f"ours_k{k}": (lambda k=k: fit(runs[f"ce_k{k}"], 0, profile.device).epoch_seconds) for k in STEPS_PER_CALL},
        "torch": lambda: bare_epoch(profile, regime, dm, optimizer, epochs),
        "cached": lambda: fit(runs["cached"], 1, profile.device).epoch_seconds,
        "online": lambda: fit(runs["online"], 1, profile.device).epoch_seconds,
        "empty_step": empty,
        "plain": lambda: plain_fit(profile, regime, dm, optimizer, epochs),
        "plain_empty": lambda: plain_fit(profile, regime, dm, optimizer, epochs, empty=True),
        "data_only": lambda: bare_epoch(profile, regime, dm, optimizer, epochs, step=False),
        "build": build,
        "inference": inference,
    }
    t: dict[str, list[float]] = {name: [] for name in variants}
    loads = []
    names = list(variants)
    with as_terminal():
        for r in range(profile.rounds):
            loads.append(load_average())
            for name in names[r % len(names):] + names[:r % len(names)]:
                t[name].append(variants[name]())
        with mock.patch.object(L, "Trainer", _profiled_trainer):
            clock = fit(runs["ce"], 0, profile.device)
        counter = PythonCalls()
        empty([counter])
        calls = counter.by_package
    steps, n = clock.batches, len(dm.train_set)

    def per_step(a: str, b: str) -> list[float]:
        return [1000 * (x - y) / steps for x, y in zip(t[a], t[b], strict=True)]

    floor, plain_floor, extra = per_step("empty_step", "data_only"), per_step("plain_empty", "data_only"), \
        per_step("ours", "torch")
    above = [e - f for e, f in zip(extra, floor, strict=True)]  # ours less the empty-step floor
    over_plain = per_step("ours", "plain")  # ours less the smallest LightningModule doing the same math
    bare_step = [b / steps for b in t["torch"]]
    return {
        "data": f"{what}, {n} training images ({steps} steps an epoch), {len(bdm.cache_set)} for the cache build",
        "settings": {"backbone": regime.backbone, "batch_size": regime.batch_size,
                     "eval_batch_size": regime.eval_batch_size, "train": n, "steps": steps,
                     "timed_epoch": f"epoch {epochs} of {epochs}"},
        "seconds": {name: spread(v) for name, v in t.items()},
        "lightning_over_torch": ratio("lightning_over_torch", t["torch"], t["ours"]),
        **{f"lightning_k{k}_over_torch": ratio(f"lightning_k{k}_over_torch", t["torch"], t[f"ours_k{k}"])
           for k in STEPS_PER_CALL},
        "plain_over_torch": ratio("plain_over_torch", t["torch"], t["plain"]),
        "ours_over_plain": ratio("ours_over_plain", t["plain"], t["ours"]),
        "cached_over_ce": ratio("cached_over_ce", t["cached"], t["ours"]),
        "online_over_ce": ratio("online_over_ce", t["online"], t["ours"]),
        "stock_bar_over_ours": ratio("stock_bar_over_ours", t["ours_stock_bar"], t["ours"]),
        "build_over_inference": ratio("build_over_inference", t["inference"], t["build"]),
        "build_finish_seconds": {k: spread(v) for k, v in finish.items()},
        "images_per_s": {"ours": n / statistics.median(t["ours"]), "torch": n / statistics.median(t["torch"]),
                         "build": len(bdm.cache_set) / statistics.median(t["build"]),
                         "inference": len(bdm.cache_set) / statistics.median(t["inference"])},
        "step_ms": {"torch": 1000 * statistics.median(bare_step), "ours": 1000 * statistics.median(t["ours"]) / steps},
        "floor_ms_per_step": spread(floor),
        "plain_floor_ms_per_step": spread(plain_floor),
        "extra_ms_per_step": spread(extra),
        "above_floor_ms_per_step": spread(above),
        "plain_extra_ms_per_step": spread(per_step("plain", "torch")),
        "above_plain_ms_per_step": spread(over_plain),
        "floor_bound": statistics.median(bare_step) / (statistics.median(bare_step) + statistics.median(floor) / 1000),
        "floor_python_calls_per_step": calls,
        "profile_ms_per_step": {k: 1000 * v / steps for k, v in sorted(clock.profile.items(), key=lambda kv: -kv[1])
                                if 1000 * v / steps >= 0.01},
        "load_average_per_round": loads,
    }


def _profiled_trainer(*args: Any, **kwargs: Any) -> L.Trainer:
    """``lightning.Trainer`` with Lightning's :class:`SimpleProfiler` (per-hook durations), for one profiled fit."""
    return _REAL_TRAINER(*args, **{**kwargs, "profiler": SimpleProfiler()})


_REAL_TRAINER = L.Trainer


def run_timing(profile: Profile, work: Path) -> dict[str, Any]:
    """Every regime of ``profile``: ``{"regimes": {name: ...}}``."""
    return {"regimes": {regime.name: regime_timing(profile, regime, work / regime.name) for regime in profile.regimes}}
