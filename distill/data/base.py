"""The data contract of the engine: datasets yield ``(image, label, index)`` and data modules describe themselves.

The sample index is what lets a student read its teacher's scores from the soft-label cache instead of running the
teacher, so every training dataset must return it and it must be stable (the position in the un-shuffled train set).
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, NamedTuple, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from distill.data.errors import DataError, DataNotFoundError
from distill.data.memory import EpochShuffleSampler
from distill.registry import Registry
from distill.spec import GenerationSpec

DATASETS: Registry[type[DistillDataModule]] = Registry("dataset")

__all__ = ["DATASETS", "DataError", "DataNotFoundError", "DistillDataModule", "TensorIndexedDataset", "dataset_labels",
           "subset_indices"]


def dataset_labels(ds: Dataset) -> np.ndarray:
    """Labels of ``ds`` in index order: its ``labels`` tensor/array when it has one, else one sample at a time."""
    labels = getattr(ds, "labels", None)
    if labels is not None:
        if isinstance(labels, torch.Tensor):
            labels = labels.cpu().numpy()
        return np.asarray(labels, dtype=np.int64)
    return np.asarray([int(ds[i][1]) for i in range(len(ds))], dtype=np.int64)


class TensorIndexedDataset(Dataset):
    """Samples held in memory as one tensor; yields ``(x, y, index)``.

    Args:
        images: ``(N, C, H, W)`` tensor (already normalised floats, or uint8 for a transform to convert).
        labels: ``(N,)`` integer class labels.
        transform: optional per-sample callable applied to ``images[i]``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels.long(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i], i


class ImageFileForm(NamedTuple):
    """How one sample reads as an image file: what ``distill predict`` and an export's ``pretrained_cfg`` need.

    Attributes:
        channels: 1 (grey) or 3 (RGB): what an image file is converted to.
        size: ``(height, width)`` the network takes.
        mean: per-channel mean the ``[0, 1]`` pixels are normalised with.
        std: per-channel standard deviation.
    """

    channels: int
    size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


class DistillDataModule(L.LightningDataModule):
    """Base class of the project's data modules.

    Subclasses set ``train_set`` (augmented view), ``cache_set`` (the same samples in the same order, un-augmented:
    what the teacher scores for the cache), ``test_set`` and optionally ``val_set`` in :meth:`setup`, and fill the
    class attributes.

    Validation: :meth:`val_dataloader` returns an empty list when there is no validation split. Lightning skips the
    validation loop for an empty list, both with ``trainer.fit(model, datamodule=dm)`` and with an explicit
    ``val_dataloaders=dm.val_dataloader()``; returning ``None`` from a data module hook makes ``fit`` raise a
    TypeError. Check :attr:`has_val` to avoid passing the empty list (and Lightning's "length is zero" warning).

    Args:
        batch_size: training batch size.
        eval_batch_size: batch size for cache building and evaluation (no gradients, so larger is cheaper).
        num_workers: DataLoader workers; 0 keeps in-memory datasets in the main process (fastest for small data).
        train_subset: use only a fixed random subset of ``train_subset`` training samples (seed 0, kept in index
            order; after the fixed splits): for smoke tests and CPU-sized runs.

    Attributes:
        steps_per_call: batches per training call (``speed.steps_per_call``, set by the engine): the training loader
            yields :attr:`train_call_size` samples at a time, K consecutive batches of the epoch's order in one.
    """

    name: str = "base"
    num_classes: int = 0
    in_chans: int = 0
    class_names: list[str] = []

    def __init__(self, batch_size: int = 64, eval_batch_size: int = 512, num_workers: int = 0,
                 train_subset: int | None = None) -> None:
        super().__init__()
        for key, value, least in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1),
                                  ("num_workers", num_workers, 0), ("train_subset", train_subset, 1)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
                raise DataError(f"data.{key} must be an integer >= {least}, got {value!r}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.train_subset = train_subset
        self.steps_per_call = 1
        self.train_set: Dataset | None = None
        self.cache_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @property
    def train_call_size(self) -> int:
        """Samples per training-loader item: ``batch_size`` x :attr:`steps_per_call` (the last one may be short)."""
        return self.batch_size * self.steps_per_call

    @property
    def has_val(self) -> bool:
        """Whether :meth:`val_dataloader` yields batches (call after :meth:`setup`)."""
        self._require_setup()
        return self.val_set is not None and len(self.val_set) > 0

    def transform_description(self) -> str:
        """Human-readable description of the un-augmented transform used for caching (stored in manifests)."""
        return "identity"

    # -- hooks the engine calls on every data module (the defaults suit data without augmentation) ----------------
    def augmentation_description(self) -> str:
        """The training augmentation, e.g. ``random_crop(padding=4), hflip(0.5)`` (stored in replay manifests)."""
        return "none"

    def input_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The per-channel ``(mean, std)`` the tensors were normalised with (on ``[0, 1]`` pixels); None: not said.

        A prompted base re-normalises from them to its own, and ``distill inspect`` un-normalises images to show them.
        """
        return None

    def image_file_form(self) -> ImageFileForm | None:
        """How a sample reads as an image file (``distill predict``, exports); None: the inputs are not images read
        from files, so there is nothing to export or predict with."""
        return None

    def check_views(self) -> None:
        """Raise :class:`DataError` unless training views can be regenerated by ``(seed, epoch, index)``
        (``cache.mode: replay``). Data without augmentation have one view per sample, the clean one."""
        raise DataError(f"cache.mode replay needs an augmenting in-memory image dataset; {self.name!r} has no "
                        "training augmentation, so its only view is the clean one: use cache.mode clean")

    def set_views(self, seed: int | None, epochs: int | None = None) -> None:
        """Train on replayed views (``cache.mode: replay``) when ``seed`` is given; ``None``: the usual views.

        The default has nothing to replay: ``None`` is a no-op and a seed fails as :meth:`check_views` does.
        """
        if seed is not None:
            self.check_views()

    def generation_inputs(self, spec: GenerationSpec) -> str | None:
        """What identifies the inputs generation ``spec``'s network reads (text: its tokenizer's source); None: the
        same inputs for every generation (images). Generations whose inputs differ cannot serve each other online."""
        return None

    def prepare_generation(self, spec: GenerationSpec) -> None:
        """Make the sets yield generation ``spec``'s inputs (text: tokenised with its base's tokenizer); the engine
        calls it before it builds the generation's TaskContext. Images: nothing to do."""

    def train_labels(self) -> np.ndarray:
        """Labels of the training set in index order."""
        self._require_setup()
        return dataset_labels(self.cache_set)

    def test_labels(self) -> np.ndarray:
        """Labels of the test set in loader order."""
        self._require_setup()
        return dataset_labels(self.test_set)

    def val_labels(self) -> np.ndarray:
        """Labels of the validation set in loader order (empty without a validation split)."""
        self._require_setup()
        return dataset_labels(self.val_set) if self.val_set is not None else np.zeros(0, dtype=np.int64)

    def fingerprint(self) -> dict[str, Any]:
        """What a soft-label cache must agree with: dataset name, size, classes, labels hash and transform."""
        labels = np.ascontiguousarray(self.train_labels(), dtype=np.int64)
        return {
            "name": self.name,
            "length": int(len(labels)),
            "num_classes": int(self.num_classes),
            "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
            "transform": self.transform_description(),
        }

    def _require_setup(self) -> None:
        if self.cache_set is None:
            self.setup("fit")

    def _loader(self, ds: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches; the order of epoch e depends only on (seed in effect now, e) -- resumable."""
        self._require_setup()
        sampler = EpochShuffleSampler(len(self.train_set), seed=torch.initial_seed())
        return DataLoader(self.train_set, batch_size=self.train_call_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0, drop_last=False)

    def cache_dataloader(self) -> DataLoader:
        """Un-augmented training samples in index order, for building the soft-label cache."""
        self._require_setup()
        return self._loader(self.cache_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        self._require_setup()
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader | Sequence[DataLoader]:
        """Un-augmented validation samples, or ``[]`` without a validation split (see the class docstring)."""
        self._require_setup()
        if self.val_set is None or len(self.val_set) == 0:
            return []
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)


SUBSET_SEED = 0  # fixed: the same subset in every run and generation, whatever the run seed


def subset_indices(total: int, n: int | None) -> torch.Tensor:
    """Indices of a fixed random subset of ``n`` of ``total`` samples, in increasing order (all when ``n`` is None).

    Random rather than the first ``n``: files of image folders (and many datasets) are sorted by class, and the first
    5,000 CIFAR-10 JPEGs are all airplanes.
    """
    if n is None or n >= total:
        return torch.arange(total)
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(SUBSET_SEED))
    return perm[: int(n)].sort().values
