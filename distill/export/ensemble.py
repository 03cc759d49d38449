"""The ensemble of generations 0..K as one module: the probability average a born-again run reports."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distill.metrics import ensemble_logits


class ProbabilityEnsemble(nn.Module):
    """Average the members' softmax probabilities; return ``log`` of the average, ``(B, classes)``.

    The output goes through :func:`~distill.metrics.ensemble_logits`, the very function the run's ``ensemble 0..K``
    rows are computed with, so ``softmax`` of it is the average probability and its argmax the ensemble's
    prediction: an exported ensemble scores what the run's table says.

    Args:
        members: the generations' networks, each ``(B, C, H, W) -> (B, classes)`` logits.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ensemble_logits([member(x) for member in self.members])
