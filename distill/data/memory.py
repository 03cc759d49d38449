"""The in-memory fast path: a decoded uint8 ``(N, C, H, W)`` tensor, augmented a whole batch at a time.

Determinism by index: the crop offsets and flip of sample ``i`` in epoch ``e`` are a pure function of
``(seed, epoch, i)`` (a counter-based hash, :func:`view_params`), never of the batch the sample lands in, the device or
a random generator's state. :func:`augment_batch` is therefore enough to regenerate any training view later.

How the epoch reaches the augmentation: the training loader is ``DataLoader(dataset, batch_size=None,
sampler=EpochBatchSampler(...))``. The sampler yields one :class:`BatchKey` ``(epoch, indices)`` per batch and the
dataset turns a key into a batch. Lightning calls ``set_epoch`` on ``dataloader.sampler`` before every training
epoch (``_set_sampler_epoch`` in the fit loop; tested), and because the epoch travels inside the key it is also right
in DataLoader worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from distill.data.defaults import AugmentSpec

_M32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x, c: int):
    """``(x * c) mod 2**32`` for 32-bit ``x`` (int or int64 tensor) without overflowing int64."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _fmix32(h):
    """MurmurHash3's 32-bit finaliser: a bijection on 32-bit values with good avalanche (int or int64 tensor)."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _epoch_key(seed: int, epoch: int, stream: int = 0) -> int:
    """32-bit key of ``(seed, epoch, stream)``."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    k = _fmix32(_fmix32((seed >> 32) ^ _GOLDEN) ^ (seed & _M32))
    k = _fmix32(k ^ (int(epoch) & _M32))
    return _fmix32(k ^ _mul32(stream + 1, _GOLDEN))


def sample_hash(indices: torch.Tensor, epoch: int, seed: int, stream: int) -> torch.Tensor:
    """Uniform 32-bit hashes (int64 tensor) of ``(seed, epoch, index, stream)``, computed on ``indices.device``."""
    return _fmix32((indices.long() & _M32) ^ _epoch_key(seed, epoch, stream))


def view_params(indices: torch.Tensor, epoch: int, seed: int,
                spec: AugmentSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop offsets and flips of the given samples in ``epoch``: a pure function of ``(seed, epoch, index)``.

    Args:
        indices: ``(B,)`` sample indices (positions in the un-shuffled training set).
        epoch: training epoch.
        seed: augmentation seed.
        spec: the augmentation (its ``crop_padding`` and ``hflip``).

    Returns:
        ``(top, left, flip)``: int64 offsets in ``[0, 2 * crop_padding]`` into the zero-padded image, and a bool flip.
    """
    span = 2 * spec.crop_padding + 1
    top = sample_hash(indices, epoch, seed, 0) % span
    left = sample_hash(indices, epoch, seed, 1) % span
    flip = (sample_hash(indices, epoch, seed, 2) & 1).bool() if spec.hflip else torch.zeros_like(top, dtype=torch.bool)
    return top, left, flip


def normalize_batch(images: torch.Tensor, spec: AugmentSpec) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` -> float32 ``(x / 255 - mean) / std``, with torchvision's ToDtype+Normalize arithmetic."""
    x = images.to(torch.float32).mul_(1.0 / 255)
    mean = torch.as_tensor(spec.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(spec.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


def augment_batch(images: torch.Tensor, indices: torch.Tensor, epoch: int, seed: int,
                  spec: AugmentSpec) -> torch.Tensor:
    """Random crop (zero padding) + horizontal flip + normalisation of a batch, deterministic per sample.

    Sample ``j`` of the batch gets the view :func:`view_params` gives ``indices[j]``: the same image, index, epoch and
    seed always give the same output, whatever else is in the batch and on whichever device.

    Args:
        images: uint8 ``(B, C, H, W)`` un-augmented images.
        indices: ``(B,)`` their indices in the un-shuffled training set.
        epoch: training epoch.
        seed: augmentation seed.
        spec: augmentation and normalisation.

    Returns:
        float32 ``(B, C, H, W)`` normalised training views on ``images.device``.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 (B, C, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
    if not spec.augments:
        return normalize_batch(images, spec)
    b, c, h, w = images.shape
    p = spec.crop_padding
    top, left, flip = view_params(indices.to(images.device), epoch, seed, spec)
    padded = F.pad(images, (p, p, p, p)) if p > 0 else images
    ar_h = torch.arange(h, device=images.device)
    ar_w = torch.arange(w, device=images.device)
    rows = top[:, None] + ar_h  # (B, H) rows of the padded image
    cols = left[:, None] + torch.where(flip[:, None], w - 1 - ar_w, ar_w)  # (B, W), flip folded into the gather
    out = torch.gather(padded, 2, rows.view(b, 1, h, 1).expand(b, c, h, padded.shape[3]))
    out = torch.gather(out, 3, cols.view(b, 1, 1, w).expand(b, c, h, w))
    return normalize_batch(out, spec)


@dataclass(frozen=True)
class BatchKey:
    """One training batch to build: the epoch, the sample indices (int64 tensor) and the augmentation seed."""

    epoch: int
    indices: torch.Tensor
    seed: int = 0


def shuffle_order(n: int, epoch: int, seed: int) -> torch.Tensor:
    """The sample order of ``epoch``: a permutation of ``range(n)`` determined by ``(seed, epoch)``."""
    g = torch.Generator().manual_seed((_epoch_key(seed, epoch, 100) << 32) | _epoch_key(seed, epoch, 101))
    return torch.randperm(n, generator=g)


class EpochShuffleSampler(Sampler[int]):
    """Per-sample sampler whose order in epoch ``e`` is :func:`shuffle_order` ``(n, e, seed)``.

    Unlike ``DataLoader(shuffle=True)``, whose order depends on the random state left by everything before it, the
    order of an epoch depends only on ``(seed, epoch)``: a run resumed at an epoch boundary sees the same batches as
    an uninterrupted one. Lightning calls :meth:`set_epoch` before each epoch.
    """

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(shuffle_order(self.n, self.epoch, self.seed).tolist())


class EpochBatchSampler(Sampler[BatchKey]):
    """Shuffled batches of ``(epoch, indices)`` keys; Lightning calls :meth:`set_epoch` before each epoch.

    Use it as the ``sampler`` of a ``DataLoader(..., batch_size=None)`` over a :class:`MemoryImageSet`.

    Args:
        n: number of samples.
        batch_size: samples per batch.
        seed: shuffling and augmentation seed (the order of epoch ``e`` is :func:`shuffle_order` ``(n, e, seed)``).
        shuffle: shuffle each epoch (else index order).
        drop_last: drop the last incomplete batch.
        view_seed: augmentation seed of replayed views (``cache.mode: replay``); None: ``seed``.
        view_epochs: replay cycle ``E``: epoch ``t`` yields the views of epoch ``t % E`` (its keys carry ``t % E``);
            the order still follows ``t``. None: every epoch has its own views.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last: bool = False,
                 view_seed: int | None = None, view_epochs: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if view_epochs is not None and view_epochs < 1:
            raise ValueError(f"view_epochs must be >= 1, got {view_epochs}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.view_seed, self.view_epochs = view_seed, view_epochs
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration produces."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[BatchKey]:
        order = shuffle_order(self.n, self.epoch, self.seed) if self.shuffle else torch.arange(self.n)
        view_epoch = self.epoch if self.view_epochs is None else self.epoch % self.view_epochs
        view_seed = self.seed if self.view_seed is None else self.view_seed
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield BatchKey(view_epoch, order[start:start + self.batch_size], view_seed)


class MemoryImageSet(Dataset):
    """Decoded images held as one uint8 tensor; yields normalised ``(x, y, index)``, augmented when asked.

    Access modes: ``ds[BatchKey]`` builds a whole batch ``(x (B,C,H,W) float32, y (B,) int64, index (B,) int64)``
    (the training loader); ``__getitems__`` (a DataLoader with ``batch_size``) builds the batch at once and hands the
    default collate per-sample tuples; ``ds[i]`` one sample. Outside a :class:`BatchKey` the epoch and seed are the
    attributes :attr:`epoch` (0 unless set) and :attr:`seed`.

    Args:
        images: uint8 ``(N, C, H, W)``, on any device (batches come out on that device).
        labels: ``(N,)`` class labels.
        spec: augmentation and normalisation.
        augment: produce training views (else the un-augmented, normalised images).
        seed: augmentation seed.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, spec: AugmentSpec, augment: bool = False,
                 seed: int = 0) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"expected uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.to(device=images.device, dtype=torch.long)
        self.spec, self.augment, self.seed = spec, augment, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices: torch.Tensor | Sequence[int], epoch: int | None = None,
              seed: int | None = None) -> tuple[torch.Tensor, ...]:
        """``(x, y, index)`` of the given samples, augmented (if augmenting) for ``epoch`` and ``seed``.

        ``epoch`` and ``seed`` default to the attributes :attr:`epoch` and :attr:`seed`.
        """
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.images.device)
        raw = self.images[idx]
        if not self.augment:
            return normalize_batch(raw, self.spec), self.labels[idx], idx
        epoch, seed = self.epoch if epoch is None else epoch, self.seed if seed is None else seed
        return augment_batch(raw, idx, epoch, seed, self.spec), self.labels[idx], idx

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return list(zip(*self.batch(indices), strict=True))

    def __getitem__(self, key: int | BatchKey) -> tuple:
        if isinstance(key, BatchKey):
            return self.batch(key.indices, key.epoch, key.seed)
        x, y, i = self.batch([int(key)])
        return x[0], y[0], int(i[0])


def passthrough(batch: tuple) -> tuple:
    """Collate function for loaders whose dataset already returns whole batches."""
    return batch
