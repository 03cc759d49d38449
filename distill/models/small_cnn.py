"""A small CNN for tiny grey or colour images (digits 8x8, MNIST-like 28x28): the quick-start backbone."""

from __future__ import annotations

import torch
from timm.models import build_model_with_cfg, register_model
from torch import nn

from distill.models.base import ClassifierBackbone, init_weights

default_cfgs = {
    "small_cnn": {"url": "", "num_classes": 10, "input_size": (1, 28, 28), "pool_size": None, "crop_pct": 1.0,
                  "interpolation": "bilinear", "mean": (0.5,), "std": (0.5,), "first_conv": "stem.0",
                  "classifier": "fc"},
}


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(ClassifierBackbone):
    """Three conv-BN-ReLU stages (width w, 2w, 4w) with one 2x2 max-pool after each of the first two.

    Args:
        num_classes: classifier outputs.
        in_chans: input channels.
        width: channels of the first stage (32 -> ~0.1M parameters; enough for digits and Fashion-MNIST).
        drop_rate: dropout before the classifier.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 32, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.stem = _block(in_chans, width)
        self.stages = nn.Sequential(nn.MaxPool2d(2, ceil_mode=True), _block(width, 2 * width),
                                    nn.MaxPool2d(2, ceil_mode=True), _block(2 * width, 4 * width))
        self._init_head(4 * width, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


@register_model
def small_cnn(pretrained: bool = False, **kwargs) -> SmallCNN:
    """Small CNN (width 32, ~0.1M parameters). No pretrained weights exist."""
    return build_model_with_cfg(SmallCNN, "small_cnn", pretrained, **kwargs)
