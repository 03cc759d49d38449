"""The backbone contract the project follows (timm's): ``num_classes``, ``num_features``, ``forward_features``,
``forward_head(pre_logits=)``, ``reset_classifier`` and a ``default_cfg`` with the input statistics.

The engine itself only calls ``model(x) -> logits``; the rest is for users and for inspection tools.
"""

from __future__ import annotations

import torch
from torch import nn


def cifar_cfg(**overrides) -> dict:
    """timm default config for a 32x32 model trained from scratch on CIFAR (no pretrained weights)."""
    cfg = {
        "url": "", "num_classes": 100, "input_size": (3, 32, 32), "pool_size": None, "crop_pct": 1.0,
        "interpolation": "bilinear", "mean": (0.5071, 0.4865, 0.4409), "std": (0.2673, 0.2564, 0.2762),
        "first_conv": "conv1", "classifier": "fc",
    }
    cfg.update(overrides)
    return cfg


class ClassifierBackbone(nn.Module):
    """Base class: a feature extractor followed by global average pooling and a linear classifier ``fc``.

    Subclasses build their layers, call ``self._init_head(num_features, num_classes)`` and implement
    :meth:`forward_features` returning a ``(B, num_features, H, W)`` map.
    """

    num_classes: int
    num_features: int

    def _init_head(self, num_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        self.num_features = num_features
        self.num_classes = num_classes
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the feature map and apply the classifier (or stop before it when ``pre_logits``)."""
        x = self.drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` (0 removes it). Only average pooling exists."""
        if global_pool not in (None, "avg"):
            raise ValueError(f"only global_pool='avg' is supported, got {global_pool!r}")
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions, unit/zero batch norm, zero classifier bias: the usual CIFAR-from-scratch init."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
