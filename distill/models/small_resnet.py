"""Small residual networks for tiny inputs (digits 8x8, MNIST-like 28x28 grey, 32x32 colour) that fit their data.

Why they exist: born-again gains need a teacher that fits its training set (its soft labels then regularise the
student instead of passing on underfitting). ``small_cnn`` has three convolutions and a receptive field of about 18
pixels; ``docs/backbones.md`` measures how well each family fits Fashion-MNIST. These are the CIFAR ResNet layout
(He et al. 2016, section 4.2: a 3x3 stem, three stages of ``n`` basic blocks at widths w, 2w, 4w, stride 2 between
stages) shrunk in depth and adjustable in width, with a ``stem_stride`` so 28x28 inputs can start at 14x14 (4x less
compute, the receptive field still covers the image).

Registered into timm (after ``import distill``): ``timm.create_model("small_resnet8", num_classes=10, in_chans=1)``.

* ``small_resnet8`` -- n = 1 (8 layers), width 16: the CPU recipes' backbone for Fashion-MNIST and CIFAR-10;
* ``small_resnet8_w32`` -- n = 1, width 32;
* ``small_resnet14_w32`` -- n = 2 (14 layers), width 32.

The parameter counts are measured in ``docs/backbones.md`` (``benchmarks/backbones.py``), not stated here.
"""

from __future__ import annotations

import torch
from timm.models import build_model_with_cfg, register_model
from torch import nn

from distill.models.base import ClassifierBackbone, init_weights
from distill.models.cifar_resnet import BasicBlock

_ARCHS: dict[str, dict[str, int]] = {
    "small_resnet8": {"blocks": 1, "width": 16},
    "small_resnet8_w32": {"blocks": 1, "width": 32},
    "small_resnet14_w32": {"blocks": 2, "width": 32},
}

# Grey 28x28 is the default input (Fashion-MNIST); 1- or 3-channel inputs of any size >= 8x8 work (global pooling).
default_cfgs = {
    name: {"url": "", "num_classes": 10, "input_size": (1, 28, 28), "pool_size": None, "crop_pct": 1.0,
           "interpolation": "bilinear", "mean": (0.5,), "std": (0.5,), "first_conv": "stem.0", "classifier": "fc"}
    for name in _ARCHS
}


class SmallResNet(ClassifierBackbone):
    """A 3x3 conv-BN-ReLU stem, then three stages of ``blocks`` basic blocks at widths w, 2w, 4w.

    Args:
        num_classes: classifier outputs.
        in_chans: input channels.
        width: channels of the first stage.
        blocks: basic blocks per stage (depth = 6 * blocks + 2).
        stem_stride: stride of the stem (2 halves the resolution once more: for 28x28 or larger inputs).
        drop_rate: dropout before the classifier.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 16, blocks: int = 1,
                 stem_stride: int = 1, drop_rate: float = 0.0) -> None:
        super().__init__()
        if width < 1 or blocks < 1 or stem_stride < 1:
            raise ValueError(f"width, blocks and stem_stride must be >= 1, got {width}, {blocks}, {stem_stride}")
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, stride=stem_stride, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        cin = width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                layers.append(BasicBlock(cin, cout, stride=2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self._init_head(cin, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def _create(name: str, pretrained: bool, **kwargs) -> SmallResNet:
    return build_model_with_cfg(SmallResNet, name, pretrained, **{**_ARCHS[name], **kwargs})


@register_model
def small_resnet8(pretrained: bool = False, **kwargs) -> SmallResNet:
    """Small ResNet, 8 layers, width 16. No pretrained weights exist."""
    return _create("small_resnet8", pretrained, **kwargs)


@register_model
def small_resnet8_w32(pretrained: bool = False, **kwargs) -> SmallResNet:
    """Small ResNet, 8 layers, width 32. No pretrained weights exist."""
    return _create("small_resnet8_w32", pretrained, **kwargs)


@register_model
def small_resnet14_w32(pretrained: bool = False, **kwargs) -> SmallResNet:
    """Small ResNet, 14 layers, width 32. No pretrained weights exist."""
    return _create("small_resnet14_w32", pretrained, **kwargs)
