"""The prompt kinds on a language model: where their tokens go in a text batch, how they start, what they became.

The kinds themselves are the ViT's (:mod:`distill.prompts.kinds`, registry ``PROMPTS``): a kind says how many tokens
go before and after the task input and which tokens fill those slots before layer ``i`` (``tokens(i, context)``),
and may map the input's embeddings (``map_patches``). Here they meet text:

* :class:`Layout` -- per sample, where the ``n_before`` tokens go (right after the leading special tokens: CLS,
  BOS, where ``{prompt}`` stands in the template) and the ``n_after`` tokens (right after the input span,
  ``x[:, 2]``), for left and right padding alike, and the extended attention mask and position ids;
* :func:`with_text_length` -- ``init: {text: ...}`` fixes the prompt's length to the text's token count;
* :func:`set_static_tokens` -- the static tokens from per-layer states of real tokens (English or vocabulary init);
* :func:`nearest_tokens` -- each block-0 prompt vector's nearest vocabulary token and its cosine;
* :func:`layer_stack` and :func:`deep_tokens` -- the deep kinds' mechanism, shared by :class:`~distill.text.prompted.
  PromptedLM` and :mod:`distill.text.decode`: while a forward runs, a pre-hook on each layer ``i >= 1`` writes that
  layer's own tokens over the prompt slots of the states entering it (:func:`overwrite_slots`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import UserError
from distill.prompts.kinds import PROMPTS, PromptKind


class LayerStackError(UserError, ValueError):
    """A base without a list of ``config.num_hidden_layers`` transformer layers to prompt (deep kinds)."""


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The base's stack of transformer layers: its first ``ModuleList`` of ``config.num_hidden_layers`` modules
    (``encoder.layer`` of BERT, ``transformer.h`` of GPT-2, ``model.layers`` of Llama)."""
    depth = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return module
    raise LayerStackError(f"prompted_lm: base {type(model).__name__} has no list of {depth} layers to prompt")


def overwrite_slots(hidden: torch.Tensor, slots: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """``hidden`` ``(B, L, D)`` with the positions ``slots`` ``(B, n)`` replaced by ``tokens`` ``(B or 1, n, D)``
    (out of place: both get gradient)."""
    b, _, d = hidden.shape
    return hidden.scatter(1, slots[..., None].expand(-1, -1, d), tokens.expand(b, -1, -1).to(hidden.dtype))


@contextmanager
def deep_tokens(layers: Sequence[nn.Module], tokens: Callable[[int], torch.Tensor | None],
                write: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While open, the hidden states ``h`` entering each layer ``i >= 1`` of ``layers`` become ``write(h,
    tokens(i))`` (left alone where ``tokens(i)`` is None): a forward pre-hook per layer, removed on leaving, so the
    base is untouched outside the block."""
    def overwriter(layer: int) -> Callable[[nn.Module, tuple], tuple | None]:
        def hook(module: nn.Module, args: tuple) -> tuple | None:
            own = tokens(layer)
            return None if own is None else (write(args[0], own), *args[1:])
        return hook

    handles = [layer.register_forward_pre_hook(overwriter(i)) for i, layer in enumerate(layers) if i]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class Layout:
    """Where every token of a batch goes once ``n_before`` + ``n_after`` prompt slots are inserted.

    Attributes:
        source: ``(B, L)`` new position of each original token.
        slots: ``(B, n_before + n_after)`` positions of the prompt slots (before-tokens first).
        mask: ``(B, L')`` attention mask of the extended sequence (prompt slots are real tokens).
        span: ``(B, L')`` input-span mask of the extended sequence.
        prompt: ``(B, L')`` True on the prompt slots.
        position_ids: ``(B, L')`` positions counted over real tokens (``cumsum(mask) - 1``), so left padding and
            the inserted slots shift nothing else; 0 on padding.
    """

    source: torch.Tensor
    slots: torch.Tensor
    mask: torch.Tensor
    span: torch.Tensor
    prompt: torch.Tensor
    position_ids: torch.Tensor

    @classmethod
    def of(cls, mask: torch.Tensor, span: torch.Tensor, special: torch.Tensor, n_before: int,
           n_after: int) -> Layout:
        """The layout of a batch with attention mask ``mask``, input-span mask ``span`` and ``special`` (True on
        special-token ids), all ``(B, L)`` bool."""
        b, n = mask.shape
        arange = torch.arange(n, device=mask.device).expand(b, n)
        first = mask.int().argmax(1)  # first real token (left padding moves it)
        leading = (mask & special & ((mask & ~special).cumsum(1) == 0)).sum(1)
        insert = first + leading
        last_span = torch.where(span, arange, -1).amax(1)
        last_real = torch.where(mask, arange, -1).amax(1)
        after = torch.where(last_span >= 0, last_span, last_real) + 1
        source = arange + n_before * (arange >= insert[:, None]) + n_after * (arange >= after[:, None])
        before_slots = insert[:, None] + torch.arange(n_before, device=mask.device)
        after_slots = (after + n_before)[:, None] + torch.arange(n_after, device=mask.device)
        slots = torch.cat([before_slots, after_slots], 1)
        width = n + n_before + n_after
        new_mask = _place(mask, source, width).scatter(1, slots, True)
        prompt = torch.zeros(b, width, dtype=torch.bool, device=mask.device).scatter(1, slots, True)
        position_ids = (new_mask.long().cumsum(1) - 1).clamp_min(0) * new_mask
        return cls(source, slots, new_mask, _place(span, source, width), prompt, position_ids)

    def insert(self, embeds: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
        """``embeds`` ``(B, L, D)`` moved to their new positions, ``tokens`` ``(B or 1, slots, D)`` in the slots."""
        b, _, d = embeds.shape
        out = embeds.new_zeros(b, self.mask.shape[1], d).scatter(1, self.source[..., None].expand(-1, -1, d), embeds)
        return out if tokens is None else self.overwrite(out, tokens)

    def overwrite(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``(B, L', D)`` with its prompt slots replaced by ``tokens`` (out of place: both get gradient)."""
        return overwrite_slots(hidden, self.slots, tokens)

    def last_real(self) -> torch.Tensor:
        """``(B,)`` index of each sample's last real token (the next-token position of a causal model)."""
        arange = torch.arange(self.mask.shape[1], device=self.mask.device)
        return torch.where(self.mask, arange, -1).amax(1)


def _place(values: torch.Tensor, source: torch.Tensor, width: int) -> torch.Tensor:
    return values.new_zeros(values.shape[0], width).scatter(1, source, values)


def _size_args(name: str) -> set[str]:
    """The size arguments the kind ``name`` takes (``length``, ``before``/``after``, an inner ``prompt``)."""
    return set(inspect.signature(PROMPTS.get(name)).parameters) & {"length", "before", "after", "prompt"}


def with_text_length(prompt: dict[str, Any] | str, count: int, text: str) -> dict[str, Any]:
    """The prompt spec with its token count set to ``count``, the number of tokens of the English init ``text``.

    A ``length`` (or ``before + after``) given as well and different is refused, as is a kind without tokens.

    Raises:
        ValueError: one line naming both counts.
    """
    spec = {"kind": prompt} if isinstance(prompt, str) else dict(prompt)
    name = spec.get("kind", "shallow")
    if name not in PROMPTS:
        raise ValueError(PROMPTS.unknown_message(name, PROMPTS.names()))
    args = _size_args(name)
    said = f"init.text {text!r} is {count} tokens"
    if "length" in args:
        if spec.get("length", count) != count:
            raise ValueError(f"prompt.length {spec['length']} differs from the English init: {said}; "
                             f"leave length out or make it {count}")
        return {**spec, "length": count}
    if "before" in args:
        before, after = spec.get("before"), spec.get("after")
        if before is None and after is None:
            return {**spec, "before": count, "after": 0}
        before = count - int(after) if before is None else int(before)
        after = count - before if after is None else int(after)
        if before + after != count:
            raise ValueError(f"prompt.before + prompt.after = {before} + {after} differs from the English init: "
                             f"{said}")
        return {**spec, "before": before, "after": after}
    if "prompt" in args and spec.get("prompt"):
        return {**spec, "prompt": with_text_length(spec["prompt"], count, text)}
    raise ValueError(f"prompt kind {name!r} has no prompt tokens to initialise from init.text")


def static_tokens(kind: PromptKind) -> list[torch.nn.Parameter]:
    """The static prompt parameters of ``kind`` and its inner kinds, each ``(layers, n, D)``."""
    return [m.get_parameter(name) for m in kind.modules() if isinstance(m, PromptKind) for name in m.static_tokens]


@torch.no_grad()
def set_static_tokens(kind: PromptKind, states: list[torch.Tensor]) -> None:
    """Set every static token tensor from ``states[i]`` ``(n, D)``, the states of real tokens entering layer ``i``
    (``states[0]``: their input embeddings)."""
    for param in static_tokens(kind):
        for i in range(param.shape[0]):
            param[i].copy_(states[min(i, len(states) - 1)][:param.shape[1]])


@torch.no_grad()
def nearest_tokens(kind: PromptKind, embedding: torch.Tensor, tokenizer: Any) -> list[dict[str, Any]]:
    """Each block-0 prompt vector's nearest row of the embedding table ``(V, D)`` by cosine.

    Only block 0's tokens live in the embedding space (deeper ones replace hidden states), so those are reported:
    ``[{"slot", "token", "id", "cosine"}, ...]`` in slot order (before-tokens first).
    """
    table = F.normalize(embedding.detach().float(), dim=-1)
    rows = []
    for param in static_tokens(kind):
        vectors = F.normalize(param[0].detach().float().to(table.device), dim=-1)
        cosine, ids = (vectors @ table.T).max(1)
        rows += [{"slot": len(rows) + j, "token": tokenizer.convert_ids_to_tokens(int(i)), "id": int(i),
                  "cosine": round(float(c), 4)} for j, (c, i) in enumerate(zip(cosine, ids, strict=True))]
    return rows
