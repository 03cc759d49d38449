"""The loss contract: what a distillation loss is given, what it declares it needs, and the registry of losses.

A loss is an ``nn.Module`` called as ``loss(student, target, teacher, progress)``:

* ``student`` / ``teacher``: :class:`~distill.outputs.ModelOutput` (logits plus the features the loss asked for) or
  plain logits ``(B, C)``; ``teacher`` is None for a loss that needs none (generation 0);
* ``target``: class indices ``(B,)``;
* ``progress``: the current epoch and step (:class:`Progress`), for warm-ups.

It declares in :attr:`DistillLoss.needs` what the teacher must serve -- ``{"teacher_logits"}`` (every cache mode
serves it) or ``{"teacher_features"}`` (only a teacher run online) -- and in :meth:`DistillLoss.feature_names` which
named features of student and teacher it reads. Parameters it owns (a FitNets regressor, say) are created in
:meth:`DistillLoss.bind` from the first batch's shapes; they train with the student and are saved in its checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from distill.outputs import ModelOutput
from distill.registry import Registry

TEACHER_LOGITS = "teacher_logits"
TEACHER_FEATURES = "teacher_features"


@dataclass(frozen=True)
class Progress:
    """Where training is: epoch (0-based), global optimizer step, and the schedule's length in epochs."""

    epoch: int = 0
    step: int = 0
    max_epochs: int = 1


class DistillLoss(nn.Module):
    """Base of the pluggable losses (see the module docstring for the call contract)."""

    needs: ClassVar[frozenset[str]] = frozenset({TEACHER_LOGITS})
    # Reads the teacher's whole distribution (not only its top classes): a ``topk`` cache with k < C cannot serve it.
    full_distribution: ClassVar[bool] = False

    @property
    def needs_teacher(self) -> bool:
        """Whether the engine must supply a teacher at all."""
        return bool(self.needs)

    def feature_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Names of the student's and the teacher's intermediate features this loss reads (none by default)."""
        return (), ()

    def bind(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        """Create the loss's own parameters from one batch's outputs (shapes); nothing by default."""

    def check(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        """Raise ``ValueError`` (one line) when one sample's outputs cannot feed this loss; checked in preflight."""

    def forward(self, student: torch.Tensor | ModelOutput, target: torch.Tensor,
                teacher: torch.Tensor | ModelOutput | None = None, progress: Progress | None = None) -> torch.Tensor:
        raise NotImplementedError


LOSSES: Registry[type[DistillLoss]] = Registry("kd.variant")
