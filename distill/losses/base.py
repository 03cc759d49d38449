"""The loss contract: what a distillation loss is given, what it declares it needs, and the registry of losses.

A loss is an ``nn.Module`` called as ``loss(student, target, teacher, progress)``:

* ``student`` / ``teacher``: :class:`~distill.outputs.ModelOutput` (logits plus the features the loss asked for) or
  plain logits ``(B, C)``; ``teacher`` is None for a loss that needs none (generation 0);
* ``target``: class indices ``(B,)``;
* ``progress``: the current epoch and step (:class:`Progress`), for warm-ups.

It returns a :class:`LossOutput`: the ``total`` the optimizer minimises and its named ``terms`` (``ce``, ``kd``;
DKD's ``tckd`` and ``nckd``, ...) with the ``weights`` that make the total, ``total = sum(weights[n] * terms[n])``.
The engine logs each term as ``train/<name>`` beside ``train/loss``.

It declares in :attr:`DistillLoss.needs` what the teacher must serve -- ``{"teacher_logits"}`` (every cache mode
serves it), ``{"teacher_embeddings"}`` (the pre-logit embedding: a cache built with ``cache.embeddings``, or a
teacher run online) or ``{"teacher_features"}`` (only a teacher run online) -- and in
:meth:`DistillLoss.feature_names` which named features of student and teacher it reads. A loss that owns parameters
(a FitNets regressor, say) says so with :attr:`DistillLoss.has_parameters`; the engine then calls
:meth:`DistillLoss.bind` with one batch's outputs, where it creates them from their shapes; they train with the
student and are saved in its checkpoint under ``loss.``.

The engine builds a generation's loss once, from the generation's resolved :class:`~distill.spec.LossSpec` (its class
and complete constructor arguments), and hands that one instance to preflight, the teacher source and the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from distill.outputs import ModelOutput
from distill.registry import Registry

TEACHER_LOGITS = "teacher_logits"
TEACHER_FEATURES = "teacher_features"
TEACHER_EMBEDDINGS = "teacher_embeddings"
TEACHER_BANK = "teacher_embedding_bank"  # every training sample's teacher embedding by index: a cache with embeddings


@dataclass(frozen=True)
class Progress:
    """Where training is: epoch (0-based), global optimizer step, and the schedule's length in epochs."""

    epoch: int = 0
    step: int = 0
    max_epochs: int = 1


class LossOutput(NamedTuple):
    """What a loss returns: the total and its named terms.

    Attributes:
        total: the scalar the optimizer minimises (with its graph).
        terms: the method's own terms by name, in its order, each a detached scalar (``ce``, ``kd``; ``ce``,
            ``tckd``, ``nckd``; ...): logged as ``train/<name>``.
        weights: each term's factor in the total at this step (a warm-up included): ``total`` equals
            ``sum(weights[n] * terms[n])`` up to rounding.
    """

    total: torch.Tensor
    terms: Mapping[str, torch.Tensor]
    weights: Mapping[str, float]


class DistillLoss(nn.Module):
    """Base of the pluggable losses (see the module docstring for the call contract)."""

    needs: ClassVar[frozenset[str]] = frozenset({TEACHER_LOGITS})
    # Reads the teacher's whole distribution (not only its top classes): a ``topk`` cache with k < C cannot serve it.
    full_distribution: ClassVar[bool] = False
    # Owns parameters created in :meth:`bind` from one batch's shapes (the engine calls ``bind`` only then).
    has_parameters: ClassVar[bool] = False

    @property
    def needs_teacher(self) -> bool:
        """Whether the engine must supply a teacher at all."""
        return bool(self.needs)

    def feature_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Names of the student's and the teacher's intermediate features this loss reads (none by default)."""
        return (), ()

    def bind(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        """Create the loss's own parameters from one batch's outputs (shapes), once; called when
        :attr:`has_parameters` is set; nothing by default."""

    def check(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        """Raise ``ValueError`` (one line) when one sample's outputs cannot feed this loss; checked in preflight."""

    def forward(self, student: torch.Tensor | ModelOutput, target: torch.Tensor,
                teacher: torch.Tensor | ModelOutput | None = None, progress: Progress | None = None) -> LossOutput:
        raise NotImplementedError


LOSSES: Registry[type[DistillLoss]] = Registry("kd.variant")
