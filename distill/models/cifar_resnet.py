"""CIFAR ResNets of the KD literature, registered into timm: He et al. 2016 and the CRD benchmark's ``x4`` variants.

* ``cifar_resnet{20,32,56,110}`` -- He et al., "Deep Residual Learning for Image Recognition" (2016), section 4.2:
  a 3x3 stem of 16 channels, then 3 stages of ``n = (depth - 2) / 6`` basic blocks with widths 16/32/64.
  The paper's counts (0.27M / 0.46M / 0.85M / 1.7M, 10 classes) are for option-A shortcuts (identity with
  stride-2 subsampling and zero-padded channels, parameter-free).
* ``cifar_resnet{8,32}x4`` -- Tian et al., "Contrastive Representation Distillation" (CRD, 2020) teacher/student
  pair: stem 32, stages 64/128/256. CRD quotes 1.2M / 7.4M parameters at 100 classes.

Every model here uses **option-B shortcuts** (1x1 conv + BN wherever the stride or width changes), exactly as the CRD
repository does for both families. That matches the CRD figures (measured 1,233,540 / 7,433,860 at 100 classes) and
adds only 2,752 parameters (< 1.1%) to the He et al. option-A counts (ResNet-20 at 10 classes: 272,474 vs 269,722), so
every published figure matches within 3%. ``shortcut="A"`` rebuilds the parameter-free option-A variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.models import build_model_with_cfg, register_model
from torch import nn

from distill.models.base import ClassifierBackbone, cifar_cfg, init_weights

_ARCHS: dict[str, dict[str, Any]] = {
    "cifar_resnet20": {"depth": 20, "widths": (16, 16, 32, 64)},
    "cifar_resnet32": {"depth": 32, "widths": (16, 16, 32, 64)},
    "cifar_resnet56": {"depth": 56, "widths": (16, 16, 32, 64)},
    "cifar_resnet110": {"depth": 110, "widths": (16, 16, 32, 64)},
    "cifar_resnet8x4": {"depth": 8, "widths": (32, 64, 128, 256)},
    "cifar_resnet32x4": {"depth": 32, "widths": (32, 64, 128, 256)},
}

default_cfgs = {name: cifar_cfg() for name in _ARCHS}


class _PadShortcut(nn.Module):
    """Option-A shortcut: subsample spatially by ``stride`` and zero-pad the extra output channels (no parameters)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """Post-activation basic block: conv3x3-BN-ReLU-conv3x3-BN, add the shortcut, ReLU.

    Args:
        cin: input channels.
        cout: output channels.
        stride: stride of the first convolution (and of the shortcut).
        shortcut: ``"B"`` (1x1 conv + BN projection) or ``"A"`` (parameter-free zero padding) when shapes change.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            if shortcut == "B":
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            else:
                self.shortcut = _PadShortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)


class CifarResNet(ClassifierBackbone):
    """CIFAR ResNet: 3x3 stem, three stages of ``(depth - 2) / 6`` basic blocks (strides 1/2/2), average pool, fc.

    Args:
        depth: total weighted layers, ``6n + 2`` (20, 32, 56, 110 for He et al.; 8, 32 for CRD's x4 variants).
        widths: ``(stem, stage1, stage2, stage3)`` channels: ``(16, 16, 32, 64)`` for He et al.,
            ``(32, 64, 128, 256)`` for CRD's ``x4`` models.
        num_classes: classifier outputs (0 for a feature extractor).
        in_chans: input channels.
        shortcut: ``"B"`` (1x1 conv + BN projection, the CRD choice; default) or ``"A"`` (zero padding, He et al.).
        drop_rate: dropout before the classifier.
    """

    def __init__(self, depth: int = 20, widths: Sequence[int] = (16, 16, 32, 64), num_classes: int = 100,
                 in_chans: int = 3, shortcut: str = "B", drop_rate: float = 0.0) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2, got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths[1:]):
            blocks = [BasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1, shortcut)
                      for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self._init_head(cin, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(F.relu(self.bn1(self.conv1(x)), inplace=True))


def _create(name: str, pretrained: bool, **kwargs: Any) -> CifarResNet:
    """Build the registered architecture ``name``; ``kwargs`` override its defaults. No pretrained weights exist."""
    return build_model_with_cfg(CifarResNet, name, pretrained, **{**_ARCHS[name], **kwargs})


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-20 (He et al.; 0.27M parameters at 10 classes)."""
    return _create("cifar_resnet20", pretrained, **kwargs)


@register_model
def cifar_resnet32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32 (He et al.; 0.46M parameters at 10 classes)."""
    return _create("cifar_resnet32", pretrained, **kwargs)


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-56 (He et al.; 0.85M parameters at 10 classes)."""
    return _create("cifar_resnet56", pretrained, **kwargs)


@register_model
def cifar_resnet110(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-110 (He et al.; 1.7M parameters at 10 classes)."""
    return _create("cifar_resnet110", pretrained, **kwargs)


@register_model
def cifar_resnet8x4(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-8x4 (CRD student; 1.2M parameters at 100 classes)."""
    return _create("cifar_resnet8x4", pretrained, **kwargs)


@register_model
def cifar_resnet32x4(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-32x4 (CRD teacher; 7.4M parameters at 100 classes)."""
    return _create("cifar_resnet32x4", pretrained, **kwargs)
