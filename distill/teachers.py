"""Where a student's teacher scores come from: the soft-label cache (default) or teacher models run online.

Neither source is an ``nn.Module`` attribute of the student's LightningModule, so Lightning never moves the teacher
into train mode, never hands its parameters to the optimizer and never checkpoints it with the student.
"""

from __future__ import annotations

from typing import Any, Protocol

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from distill.cache import SoftLabelCache
from distill.metrics import ensemble_logits
from distill.outputs import EMBEDDING, EMBEDDING_BANK, FeatureError, FeatureTap, ModelOutput


class TeacherSource(Protocol):
    """Callable giving the teacher's output for a batch: ``(images, dataset_indices) -> ModelOutput``.

    The logits are ``(B, C)`` float32; ``features`` holds the named intermediate features a loss asked for: any
    from a teacher run online (:class:`OnlineTeacher`), the pre-logit :data:`~distill.outputs.EMBEDDING` from a cache
    built with ``cache.embeddings`` (:class:`CachedTeacher`).
    """

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> ModelOutput: ...

    def to(self, device: torch.device) -> TeacherSource: ...


class CachedTeacher:
    """Teacher scores read from one cache, or the probability-average of several (``kd.teacher: ensemble``).

    Replay caches are read at view epoch ``epoch % E``; :class:`ViewEpoch` keeps :attr:`epoch` equal to the trainer's
    epoch. On a GPU, caches up to :attr:`RESIDENT_LIMIT` bytes are copied to the device once (``resident``), so a
    lookup is a gather on the device with the batch's indices: no host round trip, no synchronisation. Larger caches
    stay memory-mapped (a host gather and a copy per batch).

    Args:
        caches: verified caches of the teacher generation(s).
        resident: hold the caches on the training device; None (default): only when that device is not the CPU
            (on the CPU the memory map is already an in-memory gather, through the page cache) and the cache is at
            most :attr:`RESIDENT_LIMIT` bytes.
        features: the teacher features the loss reads: none, or :data:`~distill.outputs.EMBEDDING` (one cache built
            with ``cache.embeddings``), served as ``features["embedding"]`` ``(B, D)`` float32 beside the logits;
            with :data:`~distill.outputs.EMBEDDING_BANK` also the cache's embeddings of every sample, by index
            (``ModelOutput.bank``, at the current view epoch) and the batch's indices (``ModelOutput.index``).
    """

    RESIDENT_LIMIT = 4 * 1024**3  # 4 GiB: CIFAR-100 with 10 replayed full float16 views is 100 MB

    def __init__(self, caches: list[SoftLabelCache], resident: bool | None = None,
                 features: tuple[str, ...] = ()) -> None:
        if not caches:
            raise ValueError("a cached teacher needs at least one cache")
        if any(name not in (EMBEDDING, EMBEDDING_BANK) for name in features):
            raise FeatureError(f"a cached teacher serves only the feature {EMBEDDING!r}, not {list(features)}: read "
                               "other teacher features with cache.mode online")
        if features and (len(caches) != 1 or caches[0].embeddings is None):
            raise FeatureError(f"teacher embeddings come from one cache built with cache.embeddings: true "
                               f"({len(caches)} cache(s), {caches[0].directory} "
                               f"{'with' if caches[0].embeddings is not None else 'without'} embeddings)")
        self.caches = caches
        self.features = tuple(features)
        self.bank = CachedBank(self)
        self.resident = resident
        self.device = torch.device("cpu")
        self.epoch = 0

    def to(self, device: torch.device) -> CachedTeacher:
        self.device = torch.device(device)
        for cache in self.caches:
            if self.resident or (self.resident is None and self.device.type != "cpu"
                                 and cache.nbytes <= self.RESIDENT_LIMIT):
                cache.to_device(self.device)
        return self

    def set_epoch(self, epoch: int) -> None:
        """The training epoch whose views are being trained on (replay caches read view epoch ``epoch % E``)."""
        self.epoch = int(epoch)

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> ModelOutput:
        members = [c.lookup(index, self.epoch) for c in self.caches]
        features = {EMBEDDING: self.bank(index)} if EMBEDDING in self.features else {}
        banked = EMBEDDING_BANK in self.features
        return ModelOutput(ensemble_logits(members).to(self.device, non_blocking=True), features,
                           bank=self.bank if banked else None, index=index.to(self.device) if banked else None)


class CachedBank:
    """The :class:`~distill.outputs.EmbeddingBank` of a :class:`CachedTeacher`: its cache's teacher embeddings,
    read by dataset index at the teacher's current view epoch, on its device (float32)."""

    def __init__(self, teacher: CachedTeacher) -> None:
        self.teacher = teacher

    def __len__(self) -> int:
        return len(self.teacher.caches[0])

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        return self.teacher.caches[0].lookup_embeddings(index, self.teacher.epoch).to(self.teacher.device,
                                                                                       non_blocking=True)


class ViewEpoch(Callback):
    """Tell a :class:`CachedTeacher` the current epoch before every training batch (cheap: one attribute).

    Set per batch rather than per epoch so that the first epoch after a resume, whose epoch-start hooks Lightning
    skips, is right too. The data side gets the same epoch from Lightning's ``sampler.set_epoch``.
    """

    def __init__(self, teacher: CachedTeacher) -> None:
        self.teacher = teacher

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.teacher.set_epoch(trainer.current_epoch)


class OnlineTeacher:
    """Teacher model(s) run on the student's own (augmented) batch, in eval mode and without gradients.

    Args:
        models: trained teacher networks; several are averaged in probability space.
        features: names of intermediate features to return with the logits (one teacher only; see
            :mod:`distill.outputs`).
    """

    def __init__(self, models: list[nn.Module], features: tuple[str, ...] = ()) -> None:
        if not models:
            raise ValueError("an online teacher needs at least one model")
        if features and len(models) != 1:
            raise ValueError("teacher features come from one teacher, not an ensemble")
        self.models = [m.eval().requires_grad_(False) for m in models]
        self.taps = [FeatureTap(m, features) for m in self.models]

    def to(self, device: torch.device) -> OnlineTeacher:
        self.models = [m.to(device) for m in self.models]
        return self

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> ModelOutput:
        outs = []
        for m, tap in zip(self.models, self.taps, strict=True):
            if m.training:  # someone called .train() on it: a teacher must never update BN statistics
                m.eval()
            outs.append(tap(x))
        if len(outs) == 1:
            return ModelOutput(outs[0].logits.float(), outs[0].features)
        return ModelOutput(ensemble_logits([o.logits.float() for o in outs]))
