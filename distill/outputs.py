"""What a student or teacher gives a loss: logits plus, on request, named intermediate features.

One mechanism for every model: forward hooks on named submodules. A name is a module path as
``model.named_modules()`` lists it (``layers.1``, ``stages.2.blocks.0``), or, for a timm model, an index into its
``feature_info`` (``"-1"`` is the last stage, ``"0"`` the first) -- the names timm's ``forward_intermediates`` and
``features_only`` use, resolved to the module that produces them -- or :data:`EMBEDDING`, the pre-logit embedding
``(B, D)``: the input of the model's classifier (``get_classifier()``, timm's contract), which is what timm's
``forward_head(x, pre_logits=True)`` returns. A cached teacher serves the same name from the cache
(``cache.embeddings``), so a loss reads ``features["embedding"]`` whether its teacher is cached or online.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from distill.errors import UserError

EMBEDDING = "embedding"
"""Feature name of the pre-logit embedding ``(B, D)`` (the classifier's input, flattened)."""
EMBEDDING_BANK = "embedding_bank"
"""Teacher "feature" of a loss that reads the teacher's embedding of any training sample by index (CRD's negatives):
a cached teacher serves it as :attr:`ModelOutput.bank` (with the batch's :attr:`ModelOutput.index`); no network
module produces it, so a :class:`FeatureTap` ignores it."""


class EmbeddingBank(Protocol):
    """The teacher's embeddings of every training sample, read by dataset index: ``bank(index) -> (n, D)`` float32
    on the training device; ``len(bank)`` is the number of training samples."""

    def __len__(self) -> int: ...

    def __call__(self, index: torch.Tensor) -> torch.Tensor: ...


@dataclass
class ModelOutput:
    """Logits ``(B, C)`` and the features asked for, by name (``(B, C_l, H_l, W_l)`` for conv maps).

    A cached teacher asked for :data:`EMBEDDING_BANK` also sets ``bank`` (every training sample's embedding, by index)
    and ``index`` (the dataset indices of the batch's samples).
    """

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    bank: EmbeddingBank | None = None
    index: torch.Tensor | None = None


def logits_of(x: torch.Tensor | ModelOutput) -> torch.Tensor:
    """The logits of a :class:`ModelOutput`, or the tensor itself (so logit losses take plain tensors too)."""
    return x.logits if isinstance(x, ModelOutput) else x


class FeatureError(UserError, ValueError):
    """A feature name that names no module of the model; the message lists some that exist."""


def classifier_of(model: nn.Module) -> nn.Module:
    """The model's classifier (``model.get_classifier()``, timm's contract), whose input is the pre-logit embedding.

    Raises:
        FeatureError: the model has no ``get_classifier`` (not a timm-style backbone).
    """
    try:
        return model.get_classifier()
    except AttributeError:
        raise FeatureError(f"feature {EMBEDDING!r}: {type(model).__name__} has no get_classifier() (timm's backbone "
                           "contract), so its pre-logit embedding cannot be found") from None


def resolve_feature(model: nn.Module, name: str) -> str:
    """The module path of feature ``name`` in ``model`` (an index into timm's ``feature_info``, or a module path)."""
    info = getattr(model, "feature_info", None)
    if name.lstrip("-").isdigit() and info:
        entries = list(info)
        index = int(name)
        if not -len(entries) <= index < len(entries):
            raise FeatureError(f"feature {name!r}: the model has {len(entries)} feature_info entries")
        return str(entries[index]["module"])
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        sample = [n for n in modules if n and n.count(".") <= 1][:12]
        raise FeatureError(f"feature {name!r} names no module of {type(model).__name__} (modules include: "
                           f"{', '.join(sample)}{', ...' if len(modules) > len(sample) + 1 else ''})")
    return name


class FeatureTap:
    """Run ``model`` and collect the outputs of its named submodules: ``tap(x) -> ModelOutput``.

    A plain callable, not an ``nn.Module``: the model stays where its owner keeps it (a LightningModule's
    ``student``), so its parameters, mode and state dict appear once. The forward hooks are registered once, here;
    they keep a reference to each tapped output, and the tap hands them out and forgets them after every call.

    Args:
        model: any ``nn.Module`` returning logits.
        names: feature names (see the module docstring); the output's ``features`` keys are these names.
    """

    def __init__(self, model: nn.Module, names: Iterable[str] = ()) -> None:
        self.model = model
        self.names = tuple(names)
        self._store: dict[str, torch.Tensor] = {}
        self._handles = [classifier_of(model).register_forward_pre_hook(self._embedding_hook) if name == EMBEDDING
                         else model.get_submodule(resolve_feature(model, name)).register_forward_hook(self._hook(name))
                         for name in self.names if name != EMBEDDING_BANK]

    def remove(self) -> None:
        """Take the hooks off the model (a tap used once, for a check)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self._store[name] = output[0] if isinstance(output, (tuple, list)) else output
        return hook

    def _embedding_hook(self, module: nn.Module, inputs: tuple) -> None:
        self._store[EMBEDDING] = inputs[0].flatten(1)

    def take(self) -> dict[str, torch.Tensor]:
        """The features tapped since the last call (by whoever ran the model), forgotten here."""
        features, self._store = self._store, {}
        return features

    def __call__(self, x: torch.Tensor) -> ModelOutput:
        self._store = {}
        logits = self.model(x)
        return ModelOutput(logits, self.take())


def check_features(loss, student: nn.Module, teacher: nn.Module, sample: torch.Tensor, where: str) -> None:
    """Raise :class:`FeatureError` (one line) unless the features ``loss`` reads exist in both networks and fit it.

    One sample goes through each network in eval mode without gradients; the hooks are removed afterwards and the
    networks' modes restored. ``where`` prefixes the message (it is completed with the side, ``student``/``teacher``).
    """
    names = loss.feature_names()
    if names == ((), ()):
        return
    outputs = []
    for wanted, net, who in zip(names, (student, teacher), ("student", "teacher"), strict=True):
        try:
            tap = FeatureTap(net, wanted)
        except FeatureError as e:
            raise FeatureError(f"{where}, {who}): {e}") from None
        was_training = net.training
        net.eval()
        with torch.no_grad():
            outputs.append(tap(sample))
        net.train(was_training)
        tap.remove()
    try:
        loss.check(*outputs)
    except ValueError as e:
        raise FeatureError(f"{where}): {e}") from None
