"""Distillation losses by name (``kd.variant``): logit losses (served by any cache mode) and feature losses.

See :mod:`distill.losses.base` for the contract every loss follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distill.arguments import accepted_kwargs, check_kwargs
from distill.losses.base import LOSSES, TEACHER_FEATURES, TEACHER_LOGITS, DistillLoss, Progress
from distill.losses.feature import AttentionLoss, FitNetsLoss, attention_map, attention_transfer
from distill.losses.logit import (
    CrossEntropy,
    CWTMLoss,
    DKPPLoss,
    KDLoss,
    cwtm_weights,
    dkpp_permute,
    kd_kl,
    kd_per_sample,
)

# kd keys passed to a loss whose constructor takes them; set with --kd.alpha / --kd.temperature, not init_args.
KD_KEYS = ("alpha", "temperature")


def loss_kwargs(variant: str, alpha: float, temperature: float, init_args: Mapping[str, Any] | None = None
                ) -> dict[str, Any]:
    """Constructor keywords of loss ``variant``: ``kd.alpha``/``kd.temperature`` where it takes them, plus
    ``kd.init_args`` (checked: an unknown key raises :class:`~distill.arguments.ArgumentsError` naming the accepted).
    """
    cls = LOSSES.get(variant)
    check_kwargs(cls, dict(init_args or {}), "kd.init_args", reserved=KD_KEYS)
    accepted = accepted_kwargs(cls) or set()
    kd = {k: v for k, v in (("alpha", alpha), ("temperature", temperature)) if k in accepted}
    return {**kd, **dict(init_args or {})}


def build_loss(generation: int, variant: str, alpha: float = 1.0, temperature: float = 1.0,
               init_args: Mapping[str, Any] | None = None) -> DistillLoss:
    """Cross-entropy for generation 0, the registered ``variant`` (with its arguments) for students."""
    if generation == 0:
        return CrossEntropy()
    return LOSSES.get(variant)(**loss_kwargs(variant, alpha, temperature, init_args))


__all__ = ["LOSSES", "TEACHER_FEATURES", "TEACHER_LOGITS", "AttentionLoss", "CWTMLoss", "CrossEntropy", "DKPPLoss",
           "DistillLoss", "FitNetsLoss", "KDLoss", "Progress", "attention_map", "attention_transfer", "build_loss",
           "cwtm_weights", "dkpp_permute", "kd_kl", "kd_per_sample", "loss_kwargs"]
