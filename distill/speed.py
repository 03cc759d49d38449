"""Recipe keys for speed on a GPU (``speed.*``); each is a no-op or works unchanged on a CPU.

``steps_per_call`` is the exception that changes how the loop runs (not what it computes): K optimizer steps per
Lightning step, under manual optimization. :func:`steps_per_call_conflict` names the trainer settings that cannot mean
what the user wrote with K > 1 (the recipe is refused with one line).

Mixed precision is not here: it is ``trainer.precision`` (``bf16-mixed`` on an A100/H100; Lightning's CPU autocast
also accepts it), which the engine passes to training, cache building and evaluation alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class SpeedConfig:
    """Optional speed-ups of the student networks (training, cache building and evaluation).

    ``channels_last``: store conv weights and activations as NHWC (``torch.channels_last``); tensor cores on recent
    NVIDIA GPUs run convolutions fastest in that layout, especially with ``bf16-mixed``. On a CPU it is correct but
    rarely faster. ``compile``: ``torch.compile`` the student in place (``nn.Module.compile``: parameter names and
    checkpoints are unchanged); the first steps pay the compilation (tens of seconds), so it pays off in long GPU runs.

    ``steps_per_call``: K optimizer steps of ``data.batch_size`` samples per Lightning step. The training loader yields
    K batches at once (one gather of K x B samples on the in-memory path; the K steps train on slices of it, views, no
    copy) and the task runs the K steps under manual optimization: the same batches, in the same order, through the
    same backward (the precision plugin's), gradient clipping, optimizer and schedule as K = 1, so the same training.
    Lightning's fixed cost per step (hooks, closure, result collection; measured on the benchmarks page) is paid
    once per K steps. What changes for a user: per-batch hooks (callbacks, ``log_every_n_steps``, the progress bar)
    count calls of K steps; ``train/loss`` is logged per call (the mean of its K steps); the epoch's last call is
    short when the epoch's batch count is not a multiple of K. K = 1 (default) is Lightning's automatic optimization,
    unchanged.
    """

    channels_last: bool = False
    compile: bool = False
    steps_per_call: int = 1


# Trainer settings that count Lightning steps (calls, with K > 1) where the user means optimizer steps or batches;
# each maps to why it is refused. Gradient clipping is not here: the task applies it per optimizer step itself.
_COUNTED_IN_CALLS = {
    "accumulate_grad_batches": ("accumulates gradients over Lightning steps, which would be calls of K optimizer "
                                "steps; use a K x larger data.batch_size instead, or speed.steps_per_call 1"),
    "max_steps": "would stop at a call boundary, up to K - 1 optimizer steps late; use trainer.max_epochs",
    "limit_train_batches": "would count calls of K batches, not batches",
    "val_check_interval": "would count calls of K batches, not batches",
}
_NEUTRAL = {"accumulate_grad_batches": (None, 1), "max_steps": (None, -1), "limit_train_batches": (None, 1.0),
            "val_check_interval": (None, 1.0)}  # the defaults: counting nothing
_FRACTIONS = ("limit_train_batches", "val_check_interval")  # an int there counts batches, a float is a fraction


def steps_per_call_conflict(steps_per_call: Any, trainer: Mapping[str, Any]) -> str | None:
    """Why ``speed.steps_per_call`` cannot run with these ``trainer`` settings (one line), or None when it can.

    Args:
        steps_per_call: the recipe's value (checked to be an integer >= 1).
        trainer: the generation's ``trainer`` keyword arguments.
    """
    if isinstance(steps_per_call, bool) or not isinstance(steps_per_call, int) or steps_per_call < 1:
        return f"speed.steps_per_call must be an integer >= 1, got {steps_per_call!r}"
    if steps_per_call == 1:
        return None
    for key, why in _COUNTED_IN_CALLS.items():
        value = trainer.get(key)
        neutral = value in _NEUTRAL[key] and not isinstance(value, bool)
        if key in _FRACTIONS and isinstance(value, int):  # int 1: one batch, not the whole epoch
            neutral = False
        if not neutral:
            return f"speed.steps_per_call {steps_per_call} with trainer.{key} {value!r}: {key} {why}"
    return None


def _to_channels_last(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook: hand 4-D inputs to the network in channels_last memory format (a no-op if they are)."""
    if args and isinstance(args[0], torch.Tensor) and args[0].ndim == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def apply_speed(model: nn.Module, speed: SpeedConfig | None) -> nn.Module:
    """Apply ``speed`` to ``model`` in place and return it (its ``state_dict`` keys never change).

    Args:
        model: a backbone (student or teacher).
        speed: the recipe's ``speed`` section (None: nothing to do).
    """
    if speed is None:
        return model
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
        model.register_forward_pre_hook(_to_channels_last)
    if speed.compile:
        model.compile()
    return model


CLIPPING = ("gradient_clip_val", "gradient_clip_algorithm")


def manual_trainer_kwargs(kwargs: dict[str, Any], speed: SpeedConfig | None) -> dict[str, Any]:
    """``kwargs`` for the training ``Trainer``: without gradient clipping when ``speed.steps_per_call`` > 1.

    Lightning refuses ``gradient_clip_val`` under manual optimization; the task clips each optimizer step itself
    (through ``configure_gradient_clipping``, after the precision plugin unscales, as Lightning does for K = 1).
    """
    if speed is None or speed.steps_per_call == 1:
        return kwargs
    return {key: value for key, value in kwargs.items() if key not in CLIPPING}
