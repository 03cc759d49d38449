"""A run's settings, resolved once from the recipe before anything runs, and frozen.

:func:`distill.resolve.resolve_run` turns a parsed recipe into a :class:`RunSpec`: the run's seed, data and speed
settings and one :class:`GenerationSpec` per generation (the base recipe with that generation's ``per_generation``
override merged in), each with its loss resolved into a :class:`LossSpec`. The loop, preflight, the cache checks,
evaluation and ``distill inspect`` read these objects; nothing re-parses the recipe afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Optional

import numpy as np
from jsonargparse.typing import ClosedUnitInterval, PositiveFloat, PositiveInt

from distill.losses.base import DistillLoss
from distill.models.factory import backbone_label
from distill.optim import OptimizerConfig
from distill.speed import SpeedConfig

__all__ = ["CacheConfig", "GenerationSpec", "KDConfig", "LoadSpec", "LossSpec", "RunSpec", "backbone_label", "freeze",
           "generation_seed", "replay_seed", "thaw"]


REPLAY_SEED_STREAM = 10_000  # generation_seed(seed, REPLAY_SEED_STREAM): the view seed of cache.mode replay


def generation_seed(seed: int, generation: int) -> int:
    """Seed of one generation: a 32-bit value derived from (run seed, generation) by numpy's SeedSequence.

    Distinct generations get statistically independent initialisations and data orders; the same pair always gives
    the same seed.
    """
    return int(np.random.SeedSequence([seed, generation]).generate_state(1)[0])


def replay_seed(seed: int, data_seed: int | None = None) -> int:
    """View seed of ``cache.mode: replay``: one per run, shared by every generation's cache build and training.

    ``data.seed`` when the recipe sets it (it then fixes every generation's views anyway), else
    ``generation_seed(seed, 10_000)``: derived from the run seed like a generation's seed, but from a stream no
    generation uses, so the views are independent of every generation's initialisation and data order.
    """
    return int(data_seed) if data_seed is not None else generation_seed(seed, REPLAY_SEED_STREAM)


@dataclass(frozen=True)
class KDConfig:
    """How students learn from their teacher.

    ``temperature`` and ``alpha`` left unset (null) take the loss's own default: for ``standard`` (and ``cwtm``,
    ``dkpp``) Born-Again Networks' teacher-only loss, ``alpha = 1`` at ``T = 1`` (Furlanello et al., 2018); for
    ``dkd`` and ``dist`` their papers' CIFAR ``T = 4``. A resolved spec holds the values in force. The teacher of
    generation k is generation k-1 by default. ``standardize``: z-score the logits of the distillation term (Sun et
    al., 2024), for any logit loss. ``init_args``: the loss's own arguments (checked against its signature).
    """

    temperature: Optional[PositiveFloat] = None
    alpha: Optional[ClosedUnitInterval] = None
    variant: str = "standard"
    teacher: Literal["previous", "ensemble"] = "previous"
    standardize: bool = False
    init_args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CacheConfig:
    """Where the teacher scores come from during student training, and how the soft-label cache stores them.

    ``mode``: ``clean`` reads the previous generation's logits on un-augmented images from the cache (no teacher
    forward pass; default); ``replay`` caches the teacher's scores of ``epochs`` augmented views per sample and the
    student trains on exactly those views (epoch t uses view epoch t % epochs; needs an augmenting in-memory image
    dataset); ``online`` runs the teacher(s) on the student's augmented batch. ``dtype``: float16 halves the size of a
    ``full`` cache; logits need only ~3 significant digits. ``format``: ``full`` logits or ``topk`` (the ``topk``
    largest log-probabilities in float16 + int16 class indices, 4 * topk bytes a view; the rest of the probability
    spread evenly). ``epochs`` (replay only): 10 views per sample by default -- building costs 10 inference passes
    over the training set (about 3-4 training epochs of compute) and 10x the storage of one clean view, while giving
    the student views as varied as 10 epochs of ordinary augmentation; longer students cycle through them.
    ``embeddings``: also store each view's pre-logit embedding (the classifier's input, ``D`` values in ``dtype``) for
    the losses that read the teacher's embeddings (``rkd``, ``pkt``, ``sp``).
    """

    mode: Literal["clean", "replay", "online"] = "clean"
    dtype: Literal["float16", "float32"] = "float16"
    format: Literal["full", "topk"] = "full"
    topk: PositiveInt = 10
    epochs: PositiveInt = 10
    embeddings: bool = False


def freeze(value: Any) -> Any:
    """A read-only copy: mappings become ``MappingProxyType``, lists tuples (recursively)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A plain, mutable copy of a :func:`freeze`-d value (dicts and lists), for code that takes recipe values."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class LoadSpec:
    """Where a loaded (not trained) generation 0 takes its weights from: exactly one of the three sources.

    Attributes:
        kind: ``pretrained`` (timm's hub), ``file`` (a local weights file through timm's loading path) or
            ``checkpoint`` (``gen-k/model.ckpt`` of another distill run; its recipe's backbone is rebuilt).
        path: the file (None for ``pretrained``).
    """

    kind: Literal["pretrained", "file", "checkpoint"]
    path: str | None = None

    def describe(self) -> str:
        """The ``source`` recorded in ``summary.json``."""
        return {"pretrained": "loaded: timm hub weights (pretrained: true)", "file": f"loaded: file {self.path}",
                "checkpoint": f"loaded: distill checkpoint {self.path}"}[self.kind]


@dataclass(frozen=True)
class LossSpec:
    """A generation's loss, resolved once: its class and its complete constructor arguments.

    The run builds the loss from it once per generation (:meth:`build`) and hands that one instance to preflight,
    the teacher source and the task.

    Attributes:
        name: the ``kd.variant`` it was registered under (``cross_entropy`` for generation 0).
        cls: the loss class.
        kwargs: every constructor argument, read-only: the recipe's values and the signature's defaults.
    """

    name: str
    cls: type[DistillLoss]
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def build(self) -> DistillLoss:
        """A new instance of the loss (its constructor checks the values: ``TypeError``/``ValueError``)."""
        return self.cls(**thaw(self.kwargs))


@dataclass(frozen=True)
class GenerationSpec:
    """Everything one generation is: what trains, on what, from whom, how, for how long, with which seed.

    Attributes:
        index: the generation number k.
        seed: its seed, :func:`generation_seed` of (run seed, k).
        task: the registered task that trains it (``distill.tasks.TASKS``).
        backbone: the backbone spec (a name, or a frozen ``name|class_path`` + ``init_args`` mapping).
        label: the backbone's display name, with the arguments that tell two of the same family apart.
        kd: the recipe's ``kd`` section (``variant``, ``alpha``, ``temperature`` with the loss's defaults filled in
            for a student, ``init_args``) and teacher mode.
        loss: the loss that trains it, resolved (cross-entropy for generation 0).
        members: the generations whose scores teach this one (empty for generation 0).
        cache: where teacher scores come from and how caches are stored.
        optimizer: optimizer and schedule.
        trainer: keyword arguments of :class:`lightning.Trainer` (without the user's loggers and callbacks).
        loggers: the user's ``trainer.logger`` entries (``class_path``/``init_args`` values), built per generation.
        callbacks: the user's ``trainer.callbacks`` entries, built per generation.
        load: where a loaded generation 0 comes from; None when the generation is trained.
    """

    index: int
    seed: int
    task: str
    backbone: Any
    label: str
    kd: KDConfig
    loss: LossSpec
    members: tuple[int, ...]
    cache: CacheConfig
    optimizer: OptimizerConfig
    trainer: Mapping[str, Any]
    loggers: tuple[Any, ...] = ()
    callbacks: tuple[Any, ...] = ()
    load: LoadSpec | None = None

    @property
    def max_epochs(self) -> int:
        return int(self.trainer["max_epochs"])

    @property
    def teacher_label(self) -> str | None:
        """``gen-0+gen-1`` style name of the teacher, None for generation 0."""
        return "+".join(f"gen-{j}" for j in self.members) or None

    def trainer_kwargs(self) -> dict[str, Any]:
        """A mutable copy of :attr:`trainer` for ``lightning.Trainer(**kwargs)``."""
        return thaw(self.trainer)


@dataclass(frozen=True)
class RunSpec:
    """A whole run, resolved: everything :class:`~distill.generations.BornAgainRun` reads.

    Attributes:
        seed: the run seed (each generation has its own, derived from it).
        data: the ``data`` section (read-only): ``name`` and the data module's keyword arguments.
        speed: the ``speed`` section, applied to every network built.
        generations: one spec per generation 0..N.
    """

    seed: int
    data: Mapping[str, Any]
    speed: SpeedConfig
    generations: tuple[GenerationSpec, ...]

    @property
    def replay_seed(self) -> int:
        """The view seed of ``cache.mode: replay`` (:func:`replay_seed` of the run seed and ``data.seed``)."""
        return replay_seed(self.seed, self.data.get("seed"))
