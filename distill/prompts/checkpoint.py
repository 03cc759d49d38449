"""Prompted checkpoints: the trained tensors (prompt, head, g / map, the base only when it trained) plus a
reference to the frozen base (``{"source", "sha256"}`` under the checkpoint key ``prompted_base``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from distill.prompts.base import BaseMismatchError
from distill.prompts.model import PromptedViT

REFERENCE_KEY = "prompted_base"


def trainable_state(state: Mapping[str, torch.Tensor], network: PromptedViT, prefix: str = "") -> dict:
    """``state`` without the entries of the frozen base (``prefix`` is the network's name in ``state``)."""
    frozen = tuple(prefix + p for p in network.frozen_prefixes())
    return {k: v for k, v in state.items() if not (frozen and k.startswith(frozen))}


def check_reference(network: PromptedViT, reference: Mapping[str, str] | None, where: str | Path) -> None:
    """Refuse a checkpoint whose base reference is missing or names weights that hash differently.

    Raises:
        BaseMismatchError: one line naming the checkpoint and both hashes.
    """
    if not reference or "sha256" not in reference:
        raise BaseMismatchError(f"{where} holds no base reference ({REFERENCE_KEY}); it is not a prompted checkpoint")
    if reference["sha256"] != network.reference.sha256:
        raise BaseMismatchError(f"{where} was trained on base {reference.get('source')} with sha256 "
                                f"{reference['sha256'][:16]}..., but the base built now ({network.reference.source}) "
                                f"has sha256 {network.reference.sha256[:16]}...; refusing to load it")


def load_prompted(network: PromptedViT, path: str | Path, prefix: str = "student.") -> PromptedViT:
    """Load a prompted checkpoint's trained tensors into ``network`` (whose base was built from its source).

    Raises:
        BaseMismatchError: the base differs from the one the checkpoint was trained on.
        RuntimeError: the checkpoint's tensors do not fit the network (another prompt kind or length).
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    check_reference(network, checkpoint.get(REFERENCE_KEY), path)
    state = {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    missing, unexpected = network.load_state_dict(state, strict=False)
    frozen = network.frozen_prefixes()
    missing = [k for k in missing if not (frozen and k.startswith(frozen))]
    if missing or unexpected:
        raise RuntimeError(f"{path} does not fit this prompted network: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return network
