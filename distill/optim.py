"""Optimizers and learning-rate schedules by name (registries, so recipes can add their own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LRScheduler

from distill.registry import Registry


@dataclass(frozen=True)
class OptimizerConfig:
    """Optimizer and schedule of one generation.

    Defaults are the classic CIFAR-from-scratch recipe: SGD with Nesterov momentum 0.9, lr 0.1 (batch 128 scale),
    weight decay 5e-4, cosine decay to zero over ``max_epochs`` (no milestone tuning needed for short schedules).
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    scheduler: str = "cosine"
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: int = 0


OPTIMIZERS: Registry[Callable[[Iterable, OptimizerConfig], torch.optim.Optimizer]] = Registry("optimizer.name")
SCHEDULERS: Registry[Callable[[torch.optim.Optimizer, OptimizerConfig, int], LRScheduler]] = Registry(
    "optimizer.scheduler")


@OPTIMIZERS.register("sgd")
def _sgd(params: Iterable, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


@OPTIMIZERS.register("adamw")
def _adamw(params: Iterable, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params: Iterable, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@SCHEDULERS.register("constant")
def _constant(opt: torch.optim.Optimizer, cfg: OptimizerConfig, epochs: int) -> LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


@SCHEDULERS.register("cosine")
def _cosine(opt: torch.optim.Optimizer, cfg: OptimizerConfig, epochs: int) -> LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs - cfg.warmup_epochs))


@SCHEDULERS.register("multistep")
def _multistep(opt: torch.optim.Optimizer, cfg: OptimizerConfig, epochs: int) -> LRScheduler:
    return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.milestones, gamma=cfg.gamma)


def build_optimizer(params: Iterable, cfg: OptimizerConfig, epochs: int) -> tuple[torch.optim.Optimizer, LRScheduler]:
    """Optimizer plus an epoch-stepped scheduler, with an optional linear warm-up of ``warmup_epochs``."""
    opt = OPTIMIZERS.get(cfg.name)(params, cfg)
    sched = SCHEDULERS.get(cfg.scheduler)(opt, cfg, epochs)
    if cfg.warmup_epochs > 0:
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=cfg.warmup_epochs)
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, sched], milestones=[cfg.warmup_epochs])
    return opt, sched
