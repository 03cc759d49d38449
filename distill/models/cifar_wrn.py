"""Wide ResNets for CIFAR (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016), registered into timm.

``cifar_wrn_<depth>_<k>``: a 3x3 stem of 16 channels, then 3 groups of ``n = (depth - 4) / 6`` pre-activation wide
basic blocks (BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3) with widths 16k/32k/64k and strides 1/2/2, a final BN-ReLU,
average pooling and the classifier. Where the width or stride changes the shortcut is a bias-free 1x1 convolution
(no BN) applied to the pre-activated input, as in the authors' code and the CRD repository.

Parameter counts (10 classes) match the paper: WRN-16-2 0.69M, WRN-40-2 2.2M, WRN-28-10 36.5M; WRN-28-2 (1.47M)
is the student/teacher of the Born-Again Networks recipes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.models import build_model_with_cfg, register_model
from torch import nn

from distill.models.base import ClassifierBackbone, cifar_cfg, init_weights

_ARCHS: dict[str, dict[str, Any]] = {
    "cifar_wrn_16_2": {"depth": 16, "widen_factor": 2},
    "cifar_wrn_28_2": {"depth": 28, "widen_factor": 2},
    "cifar_wrn_40_2": {"depth": 40, "widen_factor": 2},
    "cifar_wrn_28_10": {"depth": 28, "widen_factor": 10},
}

default_cfgs = {name: cifar_cfg() for name in _ARCHS}


class WideBasicBlock(nn.Module):
    """Pre-activation wide basic block.

    Args:
        cin: input channels.
        cout: output channels.
        stride: stride of the first convolution (and of the shortcut).
        drop_rate: dropout between the two convolutions (the paper uses 0.3 on CIFAR).
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.drop = nn.Dropout(drop_rate)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.relu(self.bn1(x))
        out = self.conv1(act)
        out = self.conv2(self.drop(F.relu(self.bn2(out), inplace=True)))
        return out + (x if self.shortcut is None else self.shortcut(act))


class CifarWideResNet(ClassifierBackbone):
    """Wide ResNet WRN-``depth``-``widen_factor`` for 32x32 inputs.

    Args:
        depth: total weighted layers, ``6n + 4`` (16, 28, 40, ...).
        widen_factor: width multiplier ``k`` of the 16/32/64 base widths.
        num_classes: classifier outputs (0 for a feature extractor).
        in_chans: input channels.
        drop_rate: dropout *inside* each block, between its two convolutions, as in the paper (not before the
            classifier, unlike the other families' ``drop_rate``).
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 100, in_chans: int = 3,
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        self.conv1 = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)
        groups, cin = [], 16
        for i, base in enumerate((16, 32, 64)):
            cout = base * widen_factor
            blocks = [WideBasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1, drop_rate)
                      for j in range(n)]
            groups.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(cin)
        self._init_head(cin, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.stages(self.conv1(x))), inplace=True)


def _create(name: str, pretrained: bool, **kwargs: Any) -> CifarWideResNet:
    """Build the registered architecture ``name``; ``kwargs`` override its defaults. No pretrained weights exist."""
    return build_model_with_cfg(CifarWideResNet, name, pretrained, **{**_ARCHS[name], **kwargs})


@register_model
def cifar_wrn_16_2(pretrained: bool = False, **kwargs: Any) -> CifarWideResNet:
    """WRN-16-2 (0.69M parameters at 10 classes)."""
    return _create("cifar_wrn_16_2", pretrained, **kwargs)


@register_model
def cifar_wrn_28_2(pretrained: bool = False, **kwargs: Any) -> CifarWideResNet:
    """WRN-28-2 (1.47M parameters at 10 classes; Born-Again Networks)."""
    return _create("cifar_wrn_28_2", pretrained, **kwargs)


@register_model
def cifar_wrn_40_2(pretrained: bool = False, **kwargs: Any) -> CifarWideResNet:
    """WRN-40-2 (2.2M parameters at 10 classes)."""
    return _create("cifar_wrn_40_2", pretrained, **kwargs)


@register_model
def cifar_wrn_28_10(pretrained: bool = False, **kwargs: Any) -> CifarWideResNet:
    """WRN-28-10 (36.5M parameters at 10 classes)."""
    return _create("cifar_wrn_28_10", pretrained, **kwargs)
