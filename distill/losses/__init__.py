"""Distillation losses by name (``kd.variant``): logit losses (served by any cache mode) and feature losses.

See :mod:`distill.losses.base` for the contract every loss follows.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from distill.arguments import ArgumentsError, accepted_kwargs, check_kwargs
from distill.losses.base import LOSSES, TEACHER_FEATURES, TEACHER_LOGITS, DistillLoss, Progress
from distill.losses.feature import AttentionLoss, FitNetsLoss, attention_map, attention_transfer
from distill.losses.logit import (
    CrossEntropy,
    CWTMLoss,
    DISTLoss,
    DKDLoss,
    DKPPLoss,
    KDLoss,
    LogitLoss,
    cwtm_weights,
    dist_terms,
    dkd_terms,
    dkpp_permute,
    kd_kl,
    kd_per_sample,
    pearson,
    standardize,
)
from distill.spec import thaw

# kd keys passed to a loss whose constructor takes them; set with --kd.alpha etc., not in init_args.
KD_KEYS = ("alpha", "temperature", "standardize")


def loss_default(variant: str, key: str) -> Any:
    """The default of constructor argument ``key`` of loss ``variant`` (None when it has no such argument)."""
    param = inspect.signature(LOSSES.get(variant).__init__).parameters.get(key)
    return None if param is None or param.default is param.empty else param.default


def loss_kwargs(variant: str, alpha: float | None = None, temperature: float | None = None,
                init_args: Mapping[str, Any] | None = None, standardize: bool = False) -> dict[str, Any]:
    """Constructor keywords of loss ``variant``: ``kd.alpha``/``kd.temperature``/``kd.standardize`` where it takes
    them (None: the loss's own default), plus ``kd.init_args`` (checked: an unknown key raises
    :class:`~distill.arguments.ArgumentsError` naming the accepted ones).
    """
    cls = LOSSES.get(variant)
    check_kwargs(cls, dict(init_args or {}), "kd.init_args", reserved=KD_KEYS)
    accepted = accepted_kwargs(cls) or set()
    if standardize and "standardize" not in accepted:
        raise ArgumentsError(f"kd.standardize applies to logit losses; kd.variant {variant!r} has no logit term")
    kd = {k: v for k, v in (("alpha", alpha), ("temperature", temperature), ("standardize", standardize))
          if k in accepted and v is not None}
    return {**kd, **dict(init_args or {})}


def build_loss(generation: int, variant: str, alpha: float | None = None, temperature: float | None = None,
               init_args: Mapping[str, Any] | None = None, standardize: bool = False) -> DistillLoss:
    """Cross-entropy for generation 0, the registered ``variant`` (with its arguments) for students."""
    if generation == 0:
        return CrossEntropy()
    return LOSSES.get(variant)(**loss_kwargs(variant, alpha, temperature, init_args, standardize))


def loss_for(generation: int, kd: Any) -> DistillLoss:
    """The loss of ``generation`` from its ``kd`` settings (a :class:`~distill.spec.KDConfig`)."""
    return build_loss(generation, kd.variant, kd.alpha, kd.temperature, thaw(kd.init_args), kd.standardize)



__all__ = ["LOSSES", "TEACHER_FEATURES", "TEACHER_LOGITS", "AttentionLoss", "CWTMLoss", "CrossEntropy", "DISTLoss",
           "DKDLoss", "DKPPLoss", "DistillLoss", "FitNetsLoss", "KDLoss", "LogitLoss", "Progress", "attention_map",
           "attention_transfer", "build_loss", "cwtm_weights", "dist_terms", "dkd_terms", "dkpp_permute", "kd_kl",
           "kd_per_sample", "loss_default", "loss_for", "loss_kwargs", "pearson", "standardize"]
