"""Where a student's teacher scores come from: the soft-label cache (default) or teacher models run online.

Neither source is an ``nn.Module`` attribute of the student's LightningModule, so Lightning never moves the teacher
into train mode, never hands its parameters to the optimizer and never checkpoints it with the student.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from distill.cache import SoftLabelCache
from distill.metrics import ensemble_logits


class TeacherSource(Protocol):
    """Callable giving teacher logits for a batch: ``(images, dataset_indices) -> (B, C) float32``."""

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor: ...

    def to(self, device: torch.device) -> TeacherSource: ...


class CachedTeacher:
    """Teacher scores read from one cache, or the probability-average of several (``kd.teacher: ensemble``).

    Args:
        caches: verified caches of the teacher generation(s).
    """

    def __init__(self, caches: list[SoftLabelCache]) -> None:
        if not caches:
            raise ValueError("a cached teacher needs at least one cache")
        self.caches = caches
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> CachedTeacher:
        self.device = torch.device(device)
        return self

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        members = [c.lookup(index) for c in self.caches]
        return ensemble_logits(members).to(self.device, non_blocking=True)


class OnlineTeacher:
    """Teacher model(s) run on the student's own (augmented) batch, in eval mode and without gradients.

    Args:
        models: trained teacher networks; several are averaged in probability space.
    """

    def __init__(self, models: list[nn.Module]) -> None:
        if not models:
            raise ValueError("an online teacher needs at least one model")
        self.models = [m.eval().requires_grad_(False) for m in models]

    def to(self, device: torch.device) -> OnlineTeacher:
        self.models = [m.to(device) for m in self.models]
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        outs = []
        for m in self.models:
            if m.training:  # someone called .train() on it: a teacher must never update BN statistics
                m.eval()
            outs.append(m(x).float())
        return ensemble_logits(outs)
