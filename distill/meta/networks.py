"""Networks for episodes: the conv-4 of the MAML paper (per-task batch statistics) and the sinusoid MLP.

Every network names its last layer ``head``: ANIL adapts ``head.*`` only, and the baselines read the features
before it (``forward_features``).

Normalisation: ``BatchNorm2d(track_running_stats=False)``, i.e. batch statistics always, in training *and*
evaluation. That is the transductive per-task mode of the MAML reference code: the statistics of each forward pass
come from the batch in hand (an episode's support set while adapting, its query set when scoring), so nothing is
carried between tasks and there are no running buffers for ``functional_call`` to thread through the inner loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distill.registry import Registry

NETWORKS: Registry[type[nn.Module]] = Registry("meta network")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout, track_running_stats=False),
                         nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True))


@NETWORKS.register("conv4")
class Conv4(nn.Module):
    """Four conv3x3-BN-ReLU-maxpool blocks of ``hidden`` channels, flattened, then a linear ``head``.

    Args:
        num_outputs: outputs of the head (N of an N-way task).
        in_chans: input channels.
        image_hw: ``(H, W)`` of the inputs (sizes the head).
        hidden: channels of every block (64 in the MAML paper; 32 is enough for 28x28 grey images on a CPU).
        blocks: number of blocks.
    """

    def __init__(self, num_outputs: int, in_chans: int = 1, image_hw: tuple[int, int] = (28, 28), hidden: int = 32,
                 blocks: int = 4) -> None:
        super().__init__()
        chans = [in_chans] + [hidden] * blocks
        self.features = nn.Sequential(*[_block(a, b) for a, b in zip(chans, chans[1:], strict=False)])
        with torch.no_grad():
            dim = self.features(torch.zeros(2, in_chans, *image_hw)).flatten(1).shape[1]
        self.feature_dim = dim
        self.head = nn.Linear(dim, num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


@NETWORKS.register("mlp")
class MLP(nn.Module):
    """The sinusoid network of the MAML paper: inputs -> ``hidden`` x ``layers`` ReLU -> linear ``head``.

    Args:
        num_outputs: outputs (1 for regression).
        in_features: input size (1 for the sinusoid).
        hidden: width of every hidden layer (40 in the paper).
        layers: hidden layers (2 in the paper).
        in_chans, image_hw: the input shape every network is given; unused (the inputs are ``in_features`` numbers).
    """

    def __init__(self, num_outputs: int = 1, in_features: int = 1, hidden: int = 40, layers: int = 2,
                 in_chans: int = 1, image_hw: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        del in_chans, image_hw
        sizes = [in_features] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            mods += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*mods)
        self.feature_dim = sizes[-1]
        self.head = nn.Linear(sizes[-1], num_outputs)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def build_network(config: dict[str, Any], num_outputs: int, in_chans: int, image_hw: tuple[int, int]) -> nn.Module:
    """The network named ``config["name"]`` with the episode's output count and input shape plus its other keys."""
    kwargs = {k: v for k, v in config.items() if k != "name"}
    return NETWORKS.get(config.get("name", "conv4"))(num_outputs=num_outputs, in_chans=in_chans,
                                                     image_hw=tuple(image_hw), **kwargs)
