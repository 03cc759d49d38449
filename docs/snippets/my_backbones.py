"""A user's own backbone, plugged into distill in two ways (see docs/backbones.md)."""

import torch
from torch import nn

import distill


@distill.register_backbone("tiny_mlp")  # way 1: a registered name, usable as `backbone: tiny_mlp`
class TinyMLP(nn.Module):
    """Flatten -> hidden layer -> logits. Only `forward(x) -> (B, num_classes)` is required."""

    def __init__(self, num_classes: int, in_chans: int = 1, image_size: int = 8, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_chans * image_size * image_size, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
