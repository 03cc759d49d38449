"""What a generation trains: a registered *task*, a LightningModule class the loop builds from a generation's spec.

The loop never names a LightningModule. It asks ``TASKS.get(spec.task)`` for the class and calls

* ``create(spec, context)`` -- a fresh module for generation ``spec.index`` (student, loss, teacher source);
* ``from_network(spec, context, network)`` -- a module around an already trained network (a loaded
  generation 0, or a finished generation rebuilt for evaluation and caching);
* ``network_from_checkpoint(spec, context, path)`` -- the trained network of ``gen-k/model.ckpt`` (loaded
  ``weights_only=True``), as the next generation's online teacher or for inspection.

Its ``predict_step`` returns ``(B, C)`` float logits: that is what the engine evaluates and caches. A new task is one
file here that registers a class with these three class methods (see ``born_again.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import lightning as L
import torch
from torch import nn

from distill.registry import Registry
from distill.spec import GenerationSpec


@dataclass(frozen=True)
class TaskContext:
    """What the data and the run give a task besides its spec.

    Attributes:
        num_classes: classes of the dataset.
        in_chans: input channels of the dataset.
        sample: one training input ``(1, C, H, W)`` (shapes for losses that build parameters from them).
        teacher: the teacher source of a student (None for generation 0 or a rebuilt module).
        speed: the recipe's ``speed`` section (channels_last, compile), applied to every network built.
        input_stats: ``(mean, std)`` per channel the data's tensors were normalised with (on ``[0, 1]`` pixels),
            None when the data module does not say (a prompted base re-normalises from them to its own).
    """

    num_classes: int
    in_chans: int
    sample: torch.Tensor
    teacher: Any = None
    speed: Any = None
    input_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None


class Task(Protocol):
    """The class methods the loop calls on a registered task (see the module docstring)."""

    @classmethod
    def create(cls, spec: GenerationSpec, context: TaskContext) -> L.LightningModule: ...

    @classmethod
    def from_network(cls, spec: GenerationSpec, context: TaskContext, network: nn.Module) -> L.LightningModule: ...

    @classmethod
    def network_from_checkpoint(cls, spec: GenerationSpec, context: TaskContext, path: Any) -> nn.Module: ...


TASKS: Registry[type] = Registry("task")


def input_stats(dm: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The normalisation ``(mean, std)`` of an image data module (its resolved ``spec``), None for other data."""
    spec = getattr(dm, "spec", None)
    if spec is None or not hasattr(spec, "mean"):
        return None
    return tuple(float(m) for m in spec.mean), tuple(float(s) for s in spec.std)


def parameter_counts(module: nn.Module) -> dict[str, int]:
    """Trainable and total parameters of a task module's network (its ``student``, without a loss's own)."""
    params = list(getattr(module, "student", module).parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}


from distill.tasks import born_again, prompted  # noqa: E402,F401  (register "born_again" and "prompted")

__all__ = ["TASKS", "Task", "TaskContext", "input_stats", "parameter_counts"]
