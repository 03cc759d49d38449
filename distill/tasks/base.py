"""The task contract: what the loop calls on a registered task, and the registry of tasks.

A task is a :class:`Task` -- a LightningModule class the loop builds from a generation's spec. The loop never names
one; it asks ``TASKS.get(spec.task)`` for the class and calls

* ``check_network(spec, network)`` -- in preflight, what the task itself needs of a generation's network (a
  :class:`~distill.config.RecipeError`, one line); accepts any network by default;
* ``create(spec, context, loss)`` -- a fresh module for generation ``spec.index`` that trains with ``loss``, the
  generation's one loss instance (built from ``spec.loss`` by the run, already checked in preflight);
* ``from_network(spec, context, network)`` -- a module around an already trained network (a loaded generation 0, or
  a finished generation rebuilt for evaluation and caching); it only predicts, so its loss is cross-entropy;
* ``network_from_checkpoint(spec, context, path)`` -- the trained network of ``gen-k/model.ckpt`` (loaded
  ``weights_only=True``), as the next generation's online teacher or for inspection.

Its network is the attribute ``student``, and its ``predict_step`` returns ``(B, C)`` float logits: that is what the
engine evaluates and caches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch import nn

from distill.losses.base import DistillLoss
from distill.registry import Registry
from distill.spec import GenerationSpec

__all__ = ["TASKS", "Task", "TaskContext", "parameter_counts"]


@dataclass(frozen=True)
class TaskContext:
    """What the data and the run give a task besides its spec.

    Attributes:
        num_classes: classes of the dataset.
        in_chans: input channels of the dataset.
        sample: one training input ``(1, C, H, W)`` (shapes for losses that build parameters from them).
        teacher: the teacher source of a student (None for generation 0 or a rebuilt module).
        speed: the run's ``speed`` settings (channels_last, compile, steps_per_call), applied to every network built
            and to training.
        input_stats: ``(mean, std)`` per channel the data's tensors were normalised with (on ``[0, 1]`` pixels),
            None when the data module does not say (a prompted base re-normalises from them to its own).
        batch_size: samples per optimizer step (``data.batch_size``): with ``speed.steps_per_call`` K > 1 the
            training step receives K of them at once and splits them.
    """

    num_classes: int
    in_chans: int
    sample: torch.Tensor
    teacher: Any = None
    speed: Any = None
    input_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    batch_size: int | None = None


class Task(L.LightningModule):
    """Base of the registered tasks: the class methods the loop calls (see the module docstring).

    Attributes:
        student: the network the task trains (what is evaluated, cached and checkpointed as the generation).
    """

    student: nn.Module

    @classmethod
    def check_network(cls, spec: GenerationSpec, network: nn.Module) -> None:
        """Preflight: raise :class:`~distill.config.RecipeError` when ``network`` cannot serve this task (any can)."""

    @classmethod
    def create(cls, spec: GenerationSpec, context: TaskContext, loss: DistillLoss) -> Task:
        """A fresh module for generation ``spec.index`` (the RNGs are seeded first) that trains with ``loss``."""
        raise NotImplementedError

    @classmethod
    def from_network(cls, spec: GenerationSpec, context: TaskContext, network: nn.Module) -> Task:
        """A module around a trained network, for evaluation and cache building."""
        raise NotImplementedError

    @classmethod
    def network_from_checkpoint(cls, spec: GenerationSpec, context: TaskContext, path: Any) -> nn.Module:
        """The trained network saved in ``path`` (a ``gen-k/model.ckpt``), in eval mode."""
        raise NotImplementedError

    @classmethod
    def monitorable_metrics(cls, has_val: bool) -> frozenset[str] | None:
        """The metrics a module of this task logs once per epoch (what a user callback's ``monitor`` may name: the
        callback reads it at every epoch's end), or None when the task does not say (then any name is accepted)."""
        return None


TASKS: Registry[type[Task]] = Registry("task")


def parameter_counts(module: Task) -> dict[str, int]:
    """Trainable and total parameters of a task module's network (its ``student``, without a loss's own)."""
    params = list(module.student.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}
