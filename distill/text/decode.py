"""Answers of several tokens from a frozen causal language model behind a soft prompt, shallow or deep.

Pure functions over a Hugging Face causal LM (frozen: nothing here changes it) and a soft prompt tensor: shallow
``(n, d)``, or deep ``(layers, n, d)`` -- layer 0's tokens go in like the shallow prompt's, layer ``i``'s are written
over the prompt positions of the states entering decoder layer ``i`` (the deep kinds' forward pre-hooks,
:func:`distill.text.kinds.deep_tokens`, registered only while a forward runs); :func:`deepen` gives the deep prompt
that starts where a shallow one stands:

* :func:`teacher_forced_loss` -- cross-entropy on the answer tokens only, the gold answer fed in (teacher forcing);
* :func:`greedy` -- greedy decoding until a stop token, and :func:`exact_match` of the decoded answers;
* :func:`free_running_losses` -- the model's own outputs feed the next position through a :class:`Feedback`
  strategy (registry :data:`FEEDBACK`): ``argmax`` (the hard token's embedding: no gradient flows back through it,
  the notes' warning "argmax may not work"), ``gumbel_st`` (straight-through Gumbel-softmax: the hard token forward,
  the tempered softmax's gradient backward) and ``expected`` (the softmax-weighted mean of the embedding matrix).

Each example is a :class:`QA`: the leading special tokens (BOS, where the tokenizer adds one), the question's tokens
and the answer's tokens (ending with a stop token). The prompt goes right after the leading tokens, through
``inputs_embeds``; rows are padded on either side (``"left"`` or ``"right"``) with the attention mask and the position
ids set so that padding changes nothing (each real token's position is its index among the row's real tokens).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.errors import UserError
from distill.registry import Registry
from distill.text.kinds import deep_tokens, layer_stack, overwrite_slots


class PaddingSideError(UserError, ValueError):
    """A padding side other than ``left`` or ``right``."""


class DeepPromptError(UserError, ValueError):
    """A prompt that is neither ``(n, d)`` nor ``(layers, n, d)`` with at most the model's number of layers."""


@dataclass(frozen=True)
class QA:
    """One question and its answer as token ids: ``lead`` (special tokens before the prompt), ``question`` (after the
    prompt) and ``answer`` (the target, ending with a stop token; empty when only decoding)."""

    lead: tuple[int, ...]
    question: tuple[int, ...]
    answer: tuple[int, ...] = ()


def encode(tokenizer: Any, question: str, answer: str | None = None, stop: int | None = None) -> QA:
    """A :class:`QA` from text: the tokenizer's leading special tokens become ``lead``; ``answer``'s tokens are
    followed by the ``stop`` token (default: the tokenizer's EOS)."""
    ids = list(tokenizer(question)["input_ids"])
    special = set(tokenizer.all_special_ids)
    k = 0
    while k < len(ids) and ids[k] in special:
        k += 1
    target: tuple[int, ...] = ()
    if answer is not None:
        target = (*tokenizer(answer, add_special_tokens=False)["input_ids"],
                  tokenizer.eos_token_id if stop is None else stop)
    return QA(tuple(ids[:k]), tuple(ids[k:]), target)


def _pad_left(rows: list[Tensor], width: int) -> list[Tensor]:
    return [F.pad(r, (0, 0, width - len(r), 0)) for r in rows]


def _pad_right(rows: list[Tensor], width: int) -> list[Tensor]:
    return [F.pad(r, (0, 0, 0, width - len(r))) for r in rows]


PADDERS: dict[str, Callable[[list[Tensor], int], list[Tensor]]] = {"left": _pad_left, "right": _pad_right}


@dataclass(frozen=True)
class Padded:
    """A padded batch of embedded rows: ``embeds (B, T, d)``, ``mask (B, T)`` (1 real, 0 pad), ``positions (B, T)``
    and ``columns[i]``: the column of each real token of row ``i``, in order."""

    embeds: Tensor
    mask: Tensor
    positions: Tensor
    columns: list[Tensor]

    def last(self) -> Tensor:
        """The column of each row's last real token, ``(B,)``."""
        return torch.stack([c[-1] for c in self.columns])


def pad(rows: Sequence[Tensor], side: str = "left") -> Padded:
    """Stack rows of embeddings ``(len_i, d)`` into a :class:`Padded` batch, padding on ``side``."""
    if side not in PADDERS:
        raise PaddingSideError(f"padding side {side!r}: expected 'left' or 'right'")
    width = max(len(r) for r in rows)
    embeds = torch.stack(PADDERS[side](list(rows), width))
    ones = [torch.ones(len(r), 1, dtype=torch.long, device=embeds.device) for r in rows]
    mask = torch.stack(PADDERS[side](ones, width)).squeeze(-1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return Padded(embeds, mask, positions, [m.nonzero().squeeze(1) for m in mask])


def _embed(model: Any, ids: Sequence[int], like: Tensor) -> Tensor:
    table = model.get_input_embeddings()
    return table(torch.tensor(list(ids), dtype=torch.long, device=like.device)).to(like.dtype)


def first_layer(prompt: Tensor) -> Tensor:
    """The tokens that go into the input embeddings: the shallow prompt ``(n, d)`` itself, or layer 0 of a deep one."""
    if prompt.dim() not in (2, 3):
        raise DeepPromptError(f"prompt of shape {tuple(prompt.shape)}: expected (n, d) or (layers, n, d)")
    return prompt if prompt.dim() == 2 else prompt[0]


def rows(model: Any, prompt: Tensor, batch: Sequence[QA], tail: Callable[[int, QA], Sequence[Tensor]]) -> list[Tensor]:
    """Each example's embedded row: its lead tokens, the prompt (layer 0 of a deep one), its question, then
    ``tail(i, qa)``'s pieces."""
    first = first_layer(prompt)
    return [torch.cat([_embed(model, qa.lead, first), first, _embed(model, qa.question, first), *tail(i, qa)])
            for i, qa in enumerate(batch)]


def prompt_slots(padded: Padded, batch: Sequence[QA], length: int) -> Tensor:
    """``(B, length)``: the columns of each row's prompt positions (right after its lead tokens)."""
    return torch.stack([cols[len(qa.lead):len(qa.lead) + length] for qa, cols in zip(batch, padded.columns,
                                                                                      strict=True)])


def body(model: Any, prompt: Tensor, batch: Sequence[QA], padded: Padded, **kwargs: Any) -> Any:
    """The model's body (``model.base_model``) over a padded batch of :func:`rows`; a deep prompt's layers ``i >= 1``
    overwrite the prompt positions entering decoder layer ``i`` during this forward only."""
    layers = list(layer_stack(model))
    if prompt.dim() == 3 and len(prompt) > len(layers):
        raise DeepPromptError(f"deep prompt of {len(prompt)} layers for a model of {len(layers)}")
    deep = layers[:len(prompt)] if prompt.dim() == 3 else []
    slots = prompt_slots(padded, batch, first_layer(prompt).shape[0])
    with deep_tokens(deep, lambda i: prompt[i], lambda h, tokens: overwrite_slots(h, slots, tokens[None])):
        return model.base_model(inputs_embeds=padded.embeds, attention_mask=padded.mask,
                                position_ids=padded.positions, **kwargs)


def hidden(model: Any, prompt: Tensor, batch: Sequence[QA], padded: Padded) -> Tensor:
    """The last hidden states ``(B, T, d)`` of the model's body for a padded batch of :func:`rows` (the vocabulary
    head is applied by :func:`head` only where logits are needed)."""
    return body(model, prompt, batch, padded).last_hidden_state


@torch.no_grad()
def deepen(model: Any, prompt: Tensor, lead: Sequence[int] = ()) -> Tensor:
    """The deep prompt ``(layers, n, d)`` equal to the shallow ``prompt`` ``(n, d)`` after the ``lead`` tokens: layer
    0 is ``prompt``, layer ``i`` the states its positions have entering decoder layer ``i``. In a causal model those
    states depend only on what comes before, so this deep prompt scores exactly like the shallow one."""
    embeds = torch.cat([_embed(model, lead, prompt), prompt])[None]
    out = model.base_model(inputs_embeds=embeds, output_hidden_states=True)
    depth = len(layer_stack(model))
    return torch.stack([prompt, *[h[0, len(lead):] for h in out.hidden_states[1:depth]]]).to(prompt.dtype)


def head(model: Any, states: Tensor) -> Tensor:
    """The model's next-token logits for hidden states ``(..., d)``."""
    return model.get_output_embeddings()(states)


def teacher_forced_logits(model: Any, prompt: Tensor, batch: Sequence[QA], side: str = "left") -> list[Tensor]:
    """Per example, the logits ``(len(answer), V)`` that predict its answer tokens with the gold answer fed in."""
    padded = pad(rows(model, prompt, batch, lambda _i, qa: [_embed(model, qa.answer[:-1], prompt)]), side)
    states = hidden(model, prompt, batch, padded)
    pairs = enumerate(zip(batch, padded.columns, strict=True))
    picked = [states[i, cols[len(cols) - len(qa.answer):]] for i, (qa, cols) in pairs]
    return list(head(model, torch.cat(picked)).split([len(qa.answer) for qa in batch]))


def teacher_forced_loss(model: Any, prompt: Tensor, batch: Sequence[QA], side: str = "left") -> Tensor:
    """Cross-entropy on the answer tokens only (the mean over every answer token of the batch), teacher forcing."""
    logits = teacher_forced_logits(model, prompt, batch, side)
    target = torch.tensor([t for qa in batch for t in qa.answer], device=prompt.device)
    return F.cross_entropy(torch.cat(logits).float(), target)


def unroll(model: Any, prompt: Tensor, batch: Sequence[QA], steps: int, choose: Callable[[Tensor], Tensor],
           side: str = "left") -> list[Tensor]:
    """Run the model forward ``steps`` positions past each example's question, feeding back ``choose(logits)``
    (the next input embedding, ``(B, d)``) at each step; return the next-token logits ``(B, V)`` of every step.

    The rows (lead, prompt, question) run once (a deep prompt's layers written in then, and held in the key/value
    cache from there on); each later position is one new column for every row, with that cache. The new column is
    real in every row (its mask is 1, its position one past the row's last real token), so the padding of the first
    pass -- either side -- stays out of view.
    """
    padded = pad(rows(model, prompt, batch, lambda _i, _qa: []), side)
    out = body(model, prompt, batch, padded, use_cache=True)
    logits = [head(model, out.last_hidden_state[torch.arange(len(batch)), padded.last()])]
    mask, position = padded.mask, padded.positions[torch.arange(len(batch)), padded.last()]
    for _ in range(steps - 1):
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        position = position + 1
        out = model.base_model(inputs_embeds=choose(logits[-1])[:, None], attention_mask=mask,
                               position_ids=position[:, None], cache=out.cache, use_cache=True)
        logits.append(head(model, out.last_hidden_state[:, -1]))
    return logits


@torch.no_grad()
def greedy(model: Any, prompt: Tensor, batch: Sequence[QA], max_new_tokens: int, stop: Sequence[int] = (),
           side: str = "left") -> list[list[int]]:
    """Greedy decoding: each example's answer tokens, up to (not including) its first ``stop`` token, at most
    ``max_new_tokens`` (every row runs all the steps; what follows a stop is dropped)."""
    table = model.get_input_embeddings().weight
    logits = unroll(model, prompt, batch, max_new_tokens, lambda x: table[x.argmax(-1)].to(prompt.dtype), side)
    tokens = torch.stack([x.argmax(-1) for x in logits], 1).tolist()
    stops = set(stop)
    return [row[:next((k for k, t in enumerate(row) if t in stops), len(row))] for row in tokens]


def normalise(text: str) -> str:
    """An answer for exact match: surrounding space and a trailing full stop removed, case-folded."""
    return text.strip().removesuffix(".").strip().casefold()


def exact_match(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """The fraction of ``predicted`` answers equal to ``gold`` after :func:`normalise`."""
    return sum(normalise(p) == normalise(g) for p, g in zip(predicted, gold, strict=True)) / max(len(gold), 1)


class Feedback(ABC):
    """How a free-running model's next-token logits ``(B, V)`` become the next position's input embedding ``(B, d)``
    given the embedding matrix ``(V, d)``."""

    @abstractmethod
    def __call__(self, logits: Tensor, embedding: Tensor) -> Tensor:
        """The embedding fed to the next position."""


FEEDBACK: Registry[Callable[..., Feedback]] = Registry("feedback")


@FEEDBACK.register("argmax")
@dataclass
class Argmax(Feedback):
    """The most likely token's embedding: an index lookup, so no gradient reaches the logits (nor the prompt)."""

    def __call__(self, logits: Tensor, embedding: Tensor) -> Tensor:
        return embedding[logits.argmax(-1)]


@FEEDBACK.register("gumbel_st")
@dataclass
class GumbelStraightThrough(Feedback):
    """Straight-through Gumbel-softmax: forward the one-hot of ``argmax(logits + g)`` (``g`` Gumbel noise from a
    generator seeded with ``seed``), backward the gradient of ``softmax((logits + g) / temperature)``."""

    temperature: float = 1.0
    seed: int = 0
    _generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, logits: Tensor, embedding: Tensor) -> Tensor:
        u = torch.rand(logits.shape, generator=self._generator, dtype=torch.float64)
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-12))).to(logits)
        soft = torch.softmax((logits + gumbel) / self.temperature, -1)
        hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft)
        return (hard - soft.detach() + soft) @ embedding.to(soft)


@FEEDBACK.register("expected")
@dataclass
class ExpectedEmbedding(Feedback):
    """The expected embedding under ``softmax(logits / temperature)``: a soft mixture of the vocabulary."""

    temperature: float = 1.0

    def __call__(self, logits: Tensor, embedding: Tensor) -> Tensor:
        return torch.softmax(logits / self.temperature, -1) @ embedding.to(logits)


def free_running_losses(model: Any, prompt: Tensor, batch: Sequence[QA], feedback: Feedback, side: str = "left",
                        detach_feedback: bool = False) -> tuple[Tensor, Tensor]:
    """Free-running answer losses: at step ``t`` the model sees its own ``t`` previous outputs, each fed back by
    ``feedback``, and is scored (cross-entropy) on the gold answer's token ``t``.

    Returns ``(losses, valid)``, both ``(B, A)`` with ``A`` the longest answer; ``valid`` is 1 where an example's
    answer has a token ``t``. ``detach_feedback`` cuts the gradient through the fed-back embeddings (what remains is
    the direct path from each position to the prompt), so the difference of the two gradients is what flows through
    the fed-back outputs.
    """
    embedding = model.get_input_embeddings().weight

    def choose(logits: Tensor) -> Tensor:
        nxt = feedback(logits.float(), embedding).to(prompt.dtype)
        return nxt.detach() if detach_feedback else nxt

    logits = torch.stack(unroll(model, prompt, batch, answer_length(batch), choose, side), 1).float()  # (B, A, V)
    target = torch.tensor([list(qa.answer) + [-100] * (logits.shape[1] - len(qa.answer)) for qa in batch],
                          device=logits.device)
    losses = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100, reduction="none")
    return losses.view_as(target), target != -100


def free_running_loss(model: Any, prompt: Tensor, batch: Sequence[QA], feedback: Feedback,
                      side: str = "left") -> Tensor:
    """The mean free-running loss over every answer token of the batch (:func:`free_running_losses`)."""
    losses, valid = free_running_losses(model, prompt, batch, feedback, side)
    return losses[valid].mean()


def english_init(model: Any, tokenizer: Any, text: str) -> Tensor:
    """A prompt of ``text``'s token embeddings (no special tokens): its length is their count."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return model.get_input_embeddings().weight[ids].detach().clone()


def vocab_init(model: Any, length: int, seed: int) -> Tensor:
    """A prompt of ``length`` vocabulary embeddings drawn uniformly (with a generator seeded with ``seed``)."""
    table = model.get_input_embeddings().weight
    ids = torch.randint(0, table.shape[0], (length,), generator=torch.Generator().manual_seed(seed))
    return table[ids.to(table.device)].detach().clone()


def random_init(model: Any, length: int, seed: int) -> Tensor:
    """A prompt of ``length`` Gaussian vectors with the embedding table's standard deviation (seeded)."""
    table = model.get_input_embeddings().weight
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(length, table.shape[1], generator=g) * table.detach().float().std()).to(table)


def nearest_tokens(model: Any, prompt: Tensor) -> tuple[list[int], list[float]]:
    """Each prompt vector's nearest vocabulary token by cosine, and that cosine."""
    table = model.get_input_embeddings().weight.detach().float()
    cos = F.normalize(prompt.detach().float(), dim=-1) @ F.normalize(table, dim=-1).T
    best = cos.max(-1)
    return best.indices.tolist(), [round(float(c), 4) for c in best.values]


def answer_length(batch: Sequence[QA]) -> int:
    """The longest answer of ``batch`` in tokens (stop token included)."""
    return max(len(qa.answer) for qa in batch)


__all__ = ["FEEDBACK", "QA", "Argmax", "DeepPromptError", "ExpectedEmbedding", "Feedback", "GumbelStraightThrough",
           "Padded", "PaddingSideError", "answer_length", "body", "deepen", "encode", "english_init", "exact_match",
           "first_layer", "free_running_loss", "free_running_losses", "greedy", "head", "hidden", "nearest_tokens",
           "normalise", "pad", "prompt_slots", "random_init", "rows", "teacher_forced_logits", "teacher_forced_loss",
           "unroll", "vocab_init"]
