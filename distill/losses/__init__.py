"""Distillation losses by name (``kd.variant``): logit losses (served by any cache mode) and feature losses.

See :mod:`distill.losses.base` for the contract every loss follows.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from distill.arguments import ArgumentsError, accepted_kwargs, check_kwargs
from distill.losses.base import (
    LOSSES,
    TEACHER_BANK,
    TEACHER_EMBEDDINGS,
    TEACHER_FEATURES,
    TEACHER_LOGITS,
    DistillLoss,
    LossOutput,
    Progress,
)
from distill.losses.contrastive import CRDLoss, contrast_logits, log_normalizer, nce_loss
from distill.losses.feature import AttentionLoss, FitNetsLoss, attention_map, attention_transfer
from distill.losses.logit import (
    CrossEntropy,
    CWTMLoss,
    DISTLoss,
    DKDLoss,
    DKPPLoss,
    KDLoss,
    LogitLoss,
    binary_log_split,
    cwtm_weights,
    dist_terms,
    dkd_terms,
    dkpp_permute,
    kd_combine,
    kd_kl,
    kd_per_sample,
    kd_terms,
    pearson,
    standardize,
)
from distill.losses.relational import EmbeddingLoss, PKTLoss, RKDLoss, SPLoss, pkt_loss, rkd_terms, sp_loss

# kd keys passed to a loss whose constructor takes them; set with --kd.alpha etc., not in init_args.
KD_KEYS = ("alpha", "temperature", "standardize")


def loss_arguments(variant: str, alpha: float | None = None, temperature: float | None = None,
                   init_args: Mapping[str, Any] | None = None, standardize: bool = False) -> dict[str, Any]:
    """The complete constructor keywords of loss ``variant``, in its signature's order.

    ``kd.alpha``/``kd.temperature``/``kd.standardize`` where the loss takes them (None: its own default), the
    ``kd.init_args``, and every other parameter at its signature's default -- read here, once per generation, by
    :mod:`distill.resolve`, which stores the result in the generation's :class:`~distill.spec.LossSpec`.

    Raises:
        ArgumentsError: an init_args key the loss does not take (the message names the accepted ones) or one set by
            its own recipe key, ``kd.standardize`` on a loss without a logit term, a required argument not given.
    """
    cls = LOSSES.get(variant)
    given = dict(init_args or {})
    check_kwargs(cls, given, "kd.init_args", reserved=KD_KEYS)
    accepted = accepted_kwargs(cls) or set()
    if standardize and "standardize" not in accepted:
        raise ArgumentsError(f"kd.standardize applies to logit losses; kd.variant {variant!r} has no logit term")
    given.update({k: v for k, v in (("alpha", alpha), ("temperature", temperature), ("standardize", standardize))
                  if k in accepted and v is not None})
    params = [p for p in inspect.signature(cls).parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD,
                                                                                  p.KEYWORD_ONLY)]
    missing = [p.name for p in params if p.default is p.empty and p.name not in given]
    if missing:
        raise ArgumentsError(f"kd.init_args for {variant!r}: {cls.__name__}.__init__() missing {len(missing)} "
                             f"required argument{'s' if len(missing) > 1 else ''}: "
                             f"{', '.join(repr(name) for name in missing)}")
    resolved = {p.name: given.pop(p.name, p.default) for p in params if p.name in given or p.default is not p.empty}
    return {**resolved, **given}


def build_loss(generation: int, variant: str, alpha: float | None = None, temperature: float | None = None,
               init_args: Mapping[str, Any] | None = None, standardize: bool = False) -> DistillLoss:
    """Cross-entropy for generation 0, the registered ``variant`` (with :func:`loss_arguments`) for students.

    For use outside the engine (a notebook, a test); a run builds each generation's loss from its resolved
    :class:`~distill.spec.LossSpec`.
    """
    if generation == 0:
        return CrossEntropy()
    return LOSSES.get(variant)(**loss_arguments(variant, alpha, temperature, init_args, standardize))


__all__ = ["KD_KEYS", "LOSSES", "TEACHER_BANK", "TEACHER_EMBEDDINGS", "TEACHER_FEATURES", "TEACHER_LOGITS",
           "AttentionLoss", "CRDLoss", "CWTMLoss", "CrossEntropy", "DISTLoss", "DKDLoss", "DKPPLoss", "DistillLoss",
           "EmbeddingLoss", "FitNetsLoss", "KDLoss", "LogitLoss", "LossOutput", "PKTLoss", "Progress", "RKDLoss",
           "SPLoss", "attention_map", "attention_transfer", "binary_log_split", "build_loss", "contrast_logits",
           "cwtm_weights", "dist_terms", "dkd_terms", "dkpp_permute", "kd_combine", "kd_kl", "kd_per_sample",
           "kd_terms", "log_normalizer", "loss_arguments", "nce_loss", "pearson", "pkt_loss", "rkd_terms", "sp_loss",
           "standardize"]
