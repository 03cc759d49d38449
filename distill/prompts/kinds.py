"""Prompt kinds: the trainable tokens (and input maps) a :class:`~distill.prompts.model.PromptedViT` adds to its base.

Token layout in every block (``P`` = number of prefix tokens, CLS / registers)::

    [ prefix (P) | prompt before (n_before) | patches (N) | prompt after (n_after) ]

A kind says how many tokens go before and after the patches and, for each block ``i``, which tokens sit in those
slots when the block runs (``tokens(i, context)``; ``None`` keeps what the previous block produced there). Position
embeddings are never added to prompt tokens, and the wrapper pools over prefix and patch tokens only.

Registered kinds (``PROMPTS``): ``none`` (no tokens: linear probe / full fine-tuning), ``shallow``, ``deep``,
``around``, ``input_dependent`` and ``input_map``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from distill.registry import Registry

PROMPTS: Registry[type] = Registry("prompt kind")
INITS = ("random", "sample", "kmeans")


@dataclass(frozen=True)
class Geometry:
    """What a kind needs to know of its base: token width, number of blocks and the flattened patch size."""

    dim: int
    depth: int
    patch_numel: int

    @property
    def xavier_bound(self) -> float:
        """VPT's uniform Xavier bound, ``sqrt(6 / (patch_numel + dim))``."""
        return math.sqrt(6.0 / (self.patch_numel + self.dim))


def _tokens(n: int, geometry: Geometry, layers: int = 1) -> nn.Parameter:
    bound = geometry.xavier_bound
    return nn.Parameter(torch.empty(layers, n, geometry.dim).uniform_(-bound, bound))


def kmeans(points: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 25) -> torch.Tensor:
    """``k`` centres of ``points`` ``(M, D)`` by Lloyd's algorithm from ``k`` distinct random points."""
    centres = points[torch.randperm(len(points), generator=generator)[:k]].clone()
    for _ in range(iterations):
        assign = torch.cdist(points, centres).argmin(1)
        for j in range(k):
            members = points[assign == j]
            if len(members):
                centres[j] = members.mean(0)
    return centres


def pick(points: torch.Tensor, k: int, method: str, generator: torch.Generator) -> torch.Tensor:
    """``k`` vectors from real embeddings ``points`` ``(M, D)``: a random sample (``sample``) or k-means centres."""
    if method == "kmeans" and len(points) >= k:
        return kmeans(points, k, generator)
    replace = len(points) < k
    index = torch.randint(len(points), (k,), generator=generator) if replace else \
        torch.randperm(len(points), generator=generator)[:k]
    return points[index].clone()


class PromptKind(nn.Module):
    """Base class of the kinds: no tokens, no input map (the ``none`` kind's behaviour)."""

    n_before: int = 0
    n_after: int = 0

    def __init__(self, geometry: Geometry) -> None:
        super().__init__()
        self.geometry = geometry

    @property
    def length(self) -> int:
        """Prompt tokens in every block."""
        return self.n_before + self.n_after

    def map_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """The patch embeddings ``(B, N, D)`` as the base's blocks will see them (before position embeddings)."""
        return patches

    def tokens(self, layer: int, context: torch.Tensor) -> torch.Tensor | None:
        """Tokens ``(B or 1, n_before + n_after, D)`` for the prompt slots of block ``layer``, or None to keep them.

        Args:
            layer: block index; block 0 must get tokens when the kind has any.
            context: the mean mapped patch embedding of each sample ``(B, D)`` (input-dependent prompts read it).
        """
        return None

    def init_from_data(self, states: list[torch.Tensor], method: str, generator: torch.Generator) -> None:
        """Set the static tokens from real token states: ``states[i]`` ``(M, D)`` are patch tokens entering block i
        (``states[0]``: patch embeddings); ``method`` is ``sample`` or ``kmeans``."""
        for name, param in self.named_parameters():
            if name.split(".")[-1] in self.static_tokens:
                with torch.no_grad():
                    for i in range(param.shape[0]):
                        param[i].copy_(pick(states[min(i, len(states) - 1)], param.shape[1], method, generator))

    static_tokens: tuple[str, ...] = ()


@PROMPTS.register("none")
class NoPrompt(PromptKind):
    """No prompt tokens: with the head alone trainable, a linear probe; with ``train_base``, full fine-tuning."""


@PROMPTS.register("shallow")
class ShallowPrompt(PromptKind):
    """``length`` tokens after the prefix tokens, entering block 0 only (VPT-shallow)."""

    static_tokens = ("prompt",)

    def __init__(self, geometry: Geometry, length: int = 8) -> None:
        super().__init__(geometry)
        self.n_before = int(length)
        self.prompt = _tokens(self.n_before, geometry)

    def tokens(self, layer: int, context: torch.Tensor) -> torch.Tensor | None:
        return self.prompt[0:1] if layer == 0 else None


@PROMPTS.register("deep")
class DeepPrompt(PromptKind):
    """``length`` tokens per block: before block i runs, the prompt slots are overwritten by block i's own tokens
    (VPT-deep). ``shared``: one set of tokens written before every block."""

    static_tokens = ("prompt",)

    def __init__(self, geometry: Geometry, length: int = 8, shared: bool = False) -> None:
        super().__init__(geometry)
        self.n_before = int(length)
        self.shared = bool(shared)
        self.prompt = _tokens(self.n_before, geometry, 1 if shared else geometry.depth)

    def tokens(self, layer: int, context: torch.Tensor) -> torch.Tensor | None:
        i = 0 if self.shared else layer
        return self.prompt[i:i + 1]


@PROMPTS.register("around")
class AroundPrompt(PromptKind):
    """``before`` tokens before the patch tokens and ``after`` tokens after them, entering block 0."""

    static_tokens = ("prompt",)

    def __init__(self, geometry: Geometry, before: int = 4, after: int = 4) -> None:
        super().__init__(geometry)
        self.n_before, self.n_after = int(before), int(after)
        self.prompt = _tokens(self.n_before + self.n_after, geometry)

    def tokens(self, layer: int, context: torch.Tensor) -> torch.Tensor | None:
        return self.prompt[0:1] if layer == 0 else None


@PROMPTS.register("input_dependent")
class InputDependentPrompt(PromptKind):
    """The prompt is ``P_i + g(x)``: a 2-layer MLP ``g`` over the mean patch embedding gives ``length`` tokens per
    sample, added to static tokens ``P_i`` (one set for block 0, or one per block with ``deep``). ``g``'s last layer
    starts at zero, so training starts from an ordinary prompt."""

    static_tokens = ("prompt",)

    def __init__(self, geometry: Geometry, length: int = 8, hidden: int = 64, deep: bool = False) -> None:
        super().__init__(geometry)
        self.n_before = int(length)
        self.deep = bool(deep)
        self.prompt = _tokens(self.n_before, geometry, geometry.depth if deep else 1)
        self.g = nn.Sequential(nn.LayerNorm(geometry.dim), nn.Linear(geometry.dim, hidden), nn.GELU(),
                               nn.Linear(hidden, self.n_before * geometry.dim))
        nn.init.zeros_(self.g[-1].weight)
        nn.init.zeros_(self.g[-1].bias)

    def tokens(self, layer: int, context: torch.Tensor) -> torch.Tensor | None:
        if layer > 0 and not self.deep:
            return None
        dynamic = self.g(context).view(context.shape[0], self.n_before, self.geometry.dim)
        return self.prompt[layer:layer + 1] + dynamic


@PROMPTS.register("input_map")
class InputMap(PromptKind):
    """A learned map of the patch embeddings: per-channel affine ``x * scale + shift`` (``mode: affine``) or a
    low-rank residual ``x + (x A) B`` (``mode: lowrank``, ``rank``), both starting at the identity. ``prompt``:
    an optional inner kind (``{kind: deep, length: 8}``) whose tokens are added as well."""

    def __init__(self, geometry: Geometry, mode: str = "affine", rank: int = 4,
                 prompt: dict[str, Any] | None = None) -> None:
        super().__init__(geometry)
        if mode not in ("affine", "lowrank"):
            raise ValueError(f"input_map mode must be 'affine' or 'lowrank', got {mode!r}")
        self.mode = mode
        d = geometry.dim
        if mode == "affine":
            self.scale = nn.Parameter(torch.ones(d))
            self.shift = nn.Parameter(torch.zeros(d))
        else:
            self.down = nn.Parameter(torch.randn(d, rank) / math.sqrt(d))
            self.up = nn.Parameter(torch.zeros(rank, d))
        self.inner = build_kind(prompt, geometry) if prompt else NoPrompt(geometry)
        self.n_before, self.n_after = self.inner.n_before, self.inner.n_after

    def map_patches(self, patches: torch.Tensor) -> torch.Tensor:
        if self.mode == "affine":
            return patches * self.scale + self.shift
        return patches + patches @ self.down @ self.up

    def tokens(self, layer: int, context: torch.Tensor) -> torch.Tensor | None:
        return self.inner.tokens(layer, context)

    def init_from_data(self, states: list[torch.Tensor], method: str, generator: torch.Generator) -> None:
        self.inner.init_from_data(states, method, generator)


def build_kind(spec: dict[str, Any] | str, geometry: Geometry) -> PromptKind:
    """A prompt kind from ``{kind: NAME, ...its arguments}`` (or just a name)."""
    spec = {"kind": spec} if isinstance(spec, str) else dict(spec)
    name = spec.pop("kind", "shallow")
    if name not in PROMPTS:
        raise ValueError(PROMPTS.unknown_message(name, PROMPTS.names()))
    try:
        return PROMPTS.get(name)(geometry, **spec)
    except TypeError as e:
        raise ValueError(f"prompt kind {name!r}: {e}") from None
