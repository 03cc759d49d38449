"""Recipe keys for speed on a GPU (``speed.*``); each is a no-op or works unchanged on a CPU.

Mixed precision is not here: it is ``trainer.precision`` (``bf16-mixed`` on an A100/H100; Lightning's CPU autocast
also accepts it), which the engine passes to training, cache building and evaluation alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SpeedConfig:
    """Optional speed-ups of the student networks (training, cache building and evaluation).

    ``channels_last``: store conv weights and activations as NHWC (``torch.channels_last``); tensor cores on recent
    NVIDIA GPUs run convolutions fastest in that layout, especially with ``bf16-mixed``. On a CPU it is correct but
    rarely faster. ``compile``: ``torch.compile`` the student in place (``nn.Module.compile``: parameter names and
    checkpoints are unchanged); the first steps pay the compilation (tens of seconds), so it pays off in long GPU runs.
    """

    channels_last: bool = False
    compile: bool = False


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
