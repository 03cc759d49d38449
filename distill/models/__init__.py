"""Backbones: the factory, the user registry and the project's own families (registered into timm on import)."""

from distill.models import cifar_densenet, cifar_resnet, cifar_wrn, small_cnn, small_resnet  # noqa: F401  (timm)
from distill.models.base import ClassifierBackbone
from distill.models.factory import (
    BACKBONES,
    BackboneError,
    backbone_label,
    check_output,
    create_backbone,
    register_backbone,
)

__all__ = ["BACKBONES", "BackboneError", "ClassifierBackbone", "backbone_label", "check_output", "create_backbone",
           "register_backbone"]
