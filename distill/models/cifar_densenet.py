"""DenseNet-BC for CIFAR (Huang et al., "Densely Connected Convolutional Networks", CVPR 2017), registered into timm.

The configurations are the ones the Born-Again Networks paper (Furlanello et al., 2018) distils:
``cifar_densenet_bc_<depth>_<growth>`` has a 3x3 stem of ``2 * growth`` channels, then 3 dense blocks of
``n = (depth - 4) / 6`` bottleneck layers (BN-ReLU-conv1x1 to ``4 * growth``, BN-ReLU-conv3x3 to ``growth``, output
concatenated to the input), with a compression-0.5 transition (BN-ReLU-conv1x1-avgpool2) between blocks, a final
BN-ReLU, average pooling and the classifier.

Parameter counts match the paper's one-decimal figures (which it quotes once for both CIFAR-10 and CIFAR-100):
DenseNet-BC-100-12 0.8M (800,032 at 100 classes; 769,162 at 10 classes, 3.9% under), DenseNet-BC-250-24 15.3M
(15,324,406 at 10 classes; 15,480,556 at 100 classes).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models import build_model_with_cfg, register_model
from torch import nn

from distill.models.base import ClassifierBackbone, cifar_cfg, init_weights

_ARCHS: dict[str, dict[str, Any]] = {
    "cifar_densenet_bc_100_12": {"depth": 100, "growth_rate": 12},
    "cifar_densenet_bc_250_24": {"depth": 250, "growth_rate": 24},
}

default_cfgs = {name: cifar_cfg() for name in _ARCHS}


def _bn_relu_conv(cin: int, cout: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                         nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False))


class DenseLayer(nn.Module):
    """Bottleneck dense layer: ``growth_rate`` new channels from a 1x1 (``4 * growth_rate``) then 3x3 convolution,
    concatenated to the input.

    Args:
        cin: input channels.
        growth_rate: channels added by the layer.
    """

    def __init__(self, cin: int, growth_rate: int) -> None:
        super().__init__()
        width = 4 * growth_rate
        self.body = nn.Sequential(_bn_relu_conv(cin, width, 1), _bn_relu_conv(width, growth_rate, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class CifarDenseNetBC(ClassifierBackbone):
    """DenseNet-BC-``depth``-``growth_rate`` for 32x32 inputs.

    Args:
        depth: total weighted layers, ``6n + 4`` (100, 190, 250, ...).
        growth_rate: channels each dense layer adds (``k`` in the paper).
        num_classes: classifier outputs (0 for a feature extractor).
        in_chans: input channels.
        compression: channel reduction factor of the transition layers (0.5 for the "C" in BC).
        drop_rate: dropout before the classifier.
    """

    def __init__(self, depth: int = 100, growth_rate: int = 12, num_classes: int = 100, in_chans: int = 3,
                 compression: float = 0.5, drop_rate: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        c = 2 * growth_rate
        self.conv1 = nn.Conv2d(in_chans, c, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for i in range(3):
            for _ in range(n):
                stages.append(DenseLayer(c, growth_rate))
                c += growth_rate
            if i < 2:
                cout = int(c * compression)
                stages += [_bn_relu_conv(c, cout, 1), nn.AvgPool2d(2)]
                c = cout
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(c)
        self._init_head(c, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.stages(self.conv1(x))), inplace=True)


def _create(name: str, pretrained: bool, **kwargs: Any) -> CifarDenseNetBC:
    """Build the registered architecture ``name``; ``kwargs`` override its defaults. No pretrained weights exist."""
    return build_model_with_cfg(CifarDenseNetBC, name, pretrained, **{**_ARCHS[name], **kwargs})


@register_model
def cifar_densenet_bc_100_12(pretrained: bool = False, **kwargs: Any) -> CifarDenseNetBC:
    """DenseNet-BC-100 with growth rate 12 (0.8M parameters at 10 classes)."""
    return _create("cifar_densenet_bc_100_12", pretrained, **kwargs)


@register_model
def cifar_densenet_bc_250_24(pretrained: bool = False, **kwargs: Any) -> CifarDenseNetBC:
    """DenseNet-BC-250 with growth rate 24 (15.3M parameters at 10 classes)."""
    return _create("cifar_densenet_bc_250_24", pretrained, **kwargs)
