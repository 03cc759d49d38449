"""Shared machinery of the image data modules: validation split, pipeline choice, loaders.

Two pipelines produce the same batches ``(x float32 (B, C, H, W) normalised, y int64 (B,), index int64 (B,))``:

* ``memory``: decode the whole split once into a uint8 tensor (optionally on the training ``device``) and augment
  whole batches with tensor ops (:mod:`distill.data.memory`); views are a pure function of ``(seed, epoch, index)``.
  Runs in the main process (``num_workers`` is not used): a batch costs about a millisecond.
* ``torchvision``: decode and transform one sample at a time with torchvision transforms in ``num_workers``
  DataLoader workers; for data too large to hold decoded, or custom per-sample work.

``pipeline: auto`` picks ``memory`` when the decoded training set is under 2 GiB (``AUTO_MEMORY_LIMIT``): that fits
in host memory (and on a GPU) next to a model, decoding once is amortised over all epochs, and for small images the
per-sample Python/transform overhead of the torchvision path dominates the epoch time. Above it, holding the decoded
set costs too much memory and start-up time, so samples are streamed.
"""

from __future__ import annotations

import warnings
from functools import cached_property
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from distill.data.base import DataError, DistillDataModule, ImageFileForm, subset_indices
from distill.data.defaults import AugmentSpec, resolve_spec
from distill.data.memory import EpochBatchSampler, EpochShuffleSampler, MemoryImageSet, passthrough
from distill.data.sources import PerSampleSet, Split, build_transform

PIPELINES = ("auto", "memory", "torchvision")
AUTO_MEMORY_LIMIT = 2 * 1024**3
VAL_SPLIT_SEED = 0  # fixed: the validation split does not move with the run seed


class ImageDataModule(DistillDataModule):
    """Base of the image data modules (subclasses provide the splits through :meth:`_load_splits`).

    Args:
        root: where the data lives (meaning per dataset; ``None``: the dataset's default under ``data_root()``).
        val_fraction: share of the training set held out as validation split (fixed seed 0, disjoint, sorted index
            order); 0 = no validation split unless the dataset has its own.
        pipeline: ``auto``, ``memory`` or ``torchvision`` (see the module docstring).
        device: where the memory pipeline keeps the decoded images and builds batches (``"cpu"``, ``"cuda"``, ...).
        seed: seed of the training order and of the augmentation; ``None`` (default): the global torch seed in
            effect when :meth:`train_dataloader` is called (``torch.initial_seed()``, which ``L.seed_everything``
            sets), so each generation of a run gets its own order and views. :attr:`train_seed` tells which was used.
        mean: per-channel normalisation mean (overrides the table in :mod:`distill.data.defaults`).
        std: per-channel normalisation standard deviation (overrides the table).
        crop_padding: zero padding of the random crop, 0 to disable (overrides the table).
        hflip: random horizontal flip (overrides the table).
        **kwargs: forwarded to :class:`DistillDataModule` (``batch_size``, ``eval_batch_size``, ``num_workers``,
            ``train_subset``).
    """

    image_hw: tuple[int, int] = (0, 0)
    decode_workers: int | None = None

    def __init__(self, root: str | None = None, val_fraction: float = 0.0, pipeline: str = "auto",
                 device: str = "cpu", seed: int | None = None, mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None, crop_padding: int | None = None,
                 hflip: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if pipeline not in PIPELINES:
            raise DataError(f"pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise DataError(f"device {device!r} is not a torch device: {e}") from None
        if pipeline == "torchvision" and self.device.type != "cpu":
            raise DataError(f"device {device!r} applies to pipeline 'memory' only; the torchvision path yields CPU "
                            "batches that Lightning moves")
        self.root, self.val_fraction, self.pipeline = root, float(val_fraction), pipeline
        self.seed = None if seed is None else int(seed)
        self.train_seed: int | None = None  # the seed of the last train_dataloader()
        self._overrides = {"mean": mean, "std": std, "crop_padding": crop_padding, "hflip": hflip}
        self.pipeline_used: str | None = None
        self.views: tuple[int, int] | None = None  # (view seed, view epochs) of cache.mode replay; see set_views

    @cached_property
    def spec(self) -> AugmentSpec:
        """Resolved normalisation and augmentation (table defaults + recipe overrides)."""
        return resolve_spec(self.name, self.in_chans, min(self.image_hw), **self._overrides)

    # -- subclass hooks -------------------------------------------------------------------------------------------
    def _load_splits(self) -> tuple[Split, Split | None, Split]:
        """``(train, val or None, test)`` as the dataset ships them."""
        raise NotImplementedError

    def _decode_description(self) -> str:
        return "uint8 pixels"

    # -- description ----------------------------------------------------------------------------------------------
    def transform_description(self) -> str:
        s = self.spec
        return f"{self._decode_description()}; /255; normalize(mean={s.mean}, std={s.std})"

    def augmentation_description(self) -> str:
        """The training augmentation, e.g. ``random_crop(padding=4), hflip(0.5)``."""
        return self.spec.describe()

    def input_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The resolved normalisation ``(mean, std)`` per channel (:attr:`spec`)."""
        return tuple(float(m) for m in self.spec.mean), tuple(float(s) for s in self.spec.std)

    def image_file_form(self) -> ImageFileForm:
        """Image files are decoded to :attr:`in_chans` channels at the trained size and normalised with :attr:`spec`."""
        mean, std = self.input_stats()
        return ImageFileForm(int(self.in_chans), (int(self.image_hw[0]), int(self.image_hw[1])), mean, std)

    def fingerprint(self) -> dict[str, Any]:
        fp = super().fingerprint()
        fp["split"] = f"val_fraction={self.val_fraction}, split_seed={VAL_SPLIT_SEED}"
        return fp

    # -- setup ----------------------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.cache_set is not None:
            return
        train, val, test = self._load_splits()
        train, val = self._carve_val(train, val)
        if self.train_subset is not None:
            train = train.select(subset_indices(len(train), self.train_subset))
        self.pipeline_used = self._choose_pipeline(train)
        sets = self._memory_sets(train, val, test) if self.pipeline_used == "memory" else \
            self._torchvision_sets(train, val, test)
        self.train_set, self.cache_set, self.val_set, self.test_set = sets

    def _carve_val(self, train: Split, val: Split | None) -> tuple[Split, Split | None]:
        if self.val_fraction == 0:
            return train, val
        if val is not None:
            raise DataError(f"{self.name} has its own validation split; leave val_fraction at 0")
        n_val = int(round(len(train) * self.val_fraction))
        if not 0 < n_val < len(train):
            raise DataError(f"val_fraction={self.val_fraction} of {len(train)} training samples leaves an empty split")
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))
        return train.select(perm[n_val:].sort().values), train.select(perm[:n_val].sort().values)

    def _choose_pipeline(self, train: Split) -> str:
        if self.pipeline != "auto":
            return self.pipeline
        h, w = self.image_hw
        if len(train) * self.in_chans * h * w < AUTO_MEMORY_LIMIT:
            return "memory"
        if self.device.type != "cpu":
            warnings.warn(f"{self.name}: decoded training set over 2 GiB, using the torchvision pipeline; "
                          f"device={self.device} is ignored", stacklevel=2)
        return "torchvision"

    def _memory_sets(self, train: Split, val: Split | None, test: Split) -> tuple[Dataset, ...]:
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise DataError(f"device {self.device} requested but CUDA is not available")

        def decoded(split: Split) -> torch.Tensor:
            return split.decoded(self.decode_workers).to(self.device)

        train_images = decoded(train)
        return (MemoryImageSet(train_images, train.labels, self.spec, augment=True),
                MemoryImageSet(train_images, train.labels, self.spec),
                MemoryImageSet(decoded(val), val.labels, self.spec) if val is not None else None,
                MemoryImageSet(decoded(test), test.labels, self.spec))

    def _torchvision_sets(self, train: Split, val: Split | None, test: Split) -> tuple[Dataset, ...]:
        plain = build_transform(self.spec, self.image_hw, augment=False)
        return (PerSampleSet(train, build_transform(self.spec, self.image_hw, augment=True)),
                PerSampleSet(train, plain),
                PerSampleSet(val, plain) if val is not None else None,
                PerSampleSet(test, plain))

    # -- loaders --------------------------------------------------------------------------------------------------
    def _workers(self) -> int:
        return 0 if self.pipeline_used == "memory" else self.num_workers

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = self._workers()
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          persistent_workers=workers > 0, drop_last=False)

    def check_views(self) -> None:
        """Raise :class:`DataError` unless training views can be replayed (memory pipeline with an augmentation)."""
        self._require_setup()
        if self.pipeline_used != "memory":
            raise DataError(f"cache.mode replay needs data.pipeline memory ({self.name} uses {self.pipeline_used}): "
                            "only the in-memory path makes views a function of (seed, epoch, index)")
        if not self.spec.augments:
            raise DataError(f"cache.mode replay needs a training augmentation, and {self.name} has none here "
                            "(crop_padding 0, no hflip): its only view is the clean one, use cache.mode clean")

    def set_views(self, seed: int | None, epochs: int | None = None) -> None:
        """Replay fixed views (``cache.mode: replay``): epoch ``t`` trains on the views of epoch ``t % epochs``.

        The views are ``augment_batch(images, index, t % epochs, seed)``, exactly what a replay cache built with the
        same ``seed`` and ``epochs`` scored; the sample order still follows the training seed and ``t``. ``seed=None``
        restores the usual views (a new view every epoch, from the training seed). Takes effect at the next
        :meth:`train_dataloader`.
        """
        if seed is None:
            self.views = None
            return
        self.check_views()
        if epochs is None or int(epochs) < 1:
            raise DataError(f"replayed views need a number of view epochs >= 1, got {epochs}")
        self.views = (int(seed), int(epochs))

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches; each epoch's order and views are fixed by ``seed``.

        Memory path: ``DataLoader(train_set, batch_size=None, sampler=EpochBatchSampler)``; Lightning calls
        ``loader.sampler.set_epoch(epoch)`` before each epoch. Outside Lightning call it yourself. After
        :meth:`set_views` the views cycle through the replayed ones.
        """
        self._require_setup()
        self.train_seed = seed = torch.initial_seed() if self.seed is None else self.seed
        if self.pipeline_used == "memory":
            self.train_set.seed = seed  # for per-sample access; the loader's keys carry their own seed
            view_seed, view_epochs = self.views or (None, None)
            sampler = EpochBatchSampler(len(self.train_set), self.train_call_size, seed=seed, shuffle=True,
                                        view_seed=view_seed, view_epochs=view_epochs)
            return DataLoader(self.train_set, batch_size=None, sampler=sampler, collate_fn=passthrough)
        workers = self._workers()
        sampler = EpochShuffleSampler(len(self.train_set), seed)
        return DataLoader(self.train_set, batch_size=self.train_call_size, sampler=sampler, num_workers=workers,
                          persistent_workers=workers > 0, drop_last=False)
