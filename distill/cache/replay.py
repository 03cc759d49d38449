"""Cache modes (recipe key ``cache.mode``) and the replayable views of ``cache.mode: replay``.

In replay mode, augmentation is a pure function of ``(view seed, view epoch, sample index)``
(:func:`distill.data.memory.augment_batch`). Building the cache of generation k scores every view ``(e, i)`` with
``e < E = cache.epochs`` (:class:`ViewSet`, in view-epoch-major order) into an ``(E, N, ...)`` array; generation k+1
trains on the same views -- its epoch ``t`` regenerates view epoch ``t % E`` with the same seed
(:meth:`distill.data.image.ImageDataModule.set_views`) and looks its teacher's scores up at ``(t % E, index)``. The
view seed is one per run, shared by every generation (see :func:`distill.generations.replay_seed`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from distill.cache.formats import FORMATS
from distill.cache.manifest import CacheLayout
from distill.data.base import DistillDataModule
from distill.data.memory import MemoryImageSet, passthrough
from distill.registry import Registry


@dataclass(frozen=True)
class CacheMode:
    """What one ``cache.mode`` means to the engine.

    Attributes:
        online: students run their teacher model(s) on every batch instead of reading a cache.
        replay: the cache holds ``cache.epochs`` augmented views per sample and students train on exactly those.
        description: one line for the docs and ``--help``.
    """

    online: bool = False
    replay: bool = False
    description: str = ""


CACHE_MODES: Registry[CacheMode] = Registry("cache.mode")
CACHE_MODES.register("clean")(CacheMode(description="one un-augmented view per sample, read by index"))
CACHE_MODES.register("replay")(CacheMode(replay=True, description="the teacher's scores of the student's own "
                                                                  "augmented views (e % cache.epochs, index)"))
CACHE_MODES.register("online")(CacheMode(online=True, description="the teacher runs on every student batch"))


def cache_layout(mode: str, fmt: str, topk: int | None, epochs: int, view_seed: int | None,
                 augmentation: str | None, embeddings: bool = False) -> CacheLayout:
    """The :class:`CacheLayout` a run with these ``cache`` settings builds and reads.

    ``online`` runs build a clean cache (for inspection); ``topk`` is recorded only for formats that take a ``k``;
    the view fields only for replay.
    """
    k = int(topk) if FORMATS.get(fmt).takes_k and topk is not None else None
    if not CACHE_MODES.get(mode).replay:
        return CacheLayout(format=fmt, topk=k, embeddings=bool(embeddings))
    return CacheLayout(mode=mode, format=fmt, topk=k, view_epochs=int(epochs), view_seed=int(view_seed),
                       augmentation=augmentation, embeddings=bool(embeddings))


def require_replay(dm: DistillDataModule) -> None:
    """Raise :class:`DataError` unless ``dm`` can regenerate augmented views by ``(seed, epoch, index)``.

    That is an :class:`~distill.data.image.ImageDataModule` on the ``memory`` pipeline with an augmentation (its
    ``check_views`` checks the last two); the base data module's ``check_views`` refuses (digits have one view per
    sample: use ``clean``).
    """
    dm.check_views()


class ViewSet(Dataset):
    """Every training view ``(e, i)``, ``e < epochs``, of an augmenting :class:`MemoryImageSet`, flattened e-major.

    Item ``j`` is view epoch ``j // N`` of sample ``j % N``: ``(x, y, index, view_epoch)``. A batch of items is built
    at once (``__getitems__``, one :func:`~distill.data.memory.augment_batch` call per view epoch it spans), so use it
    with ``collate_fn=passthrough``.

    Args:
        source: the augmenting training set (``dm.train_set`` of the memory pipeline).
        epochs: number of view epochs ``E``.
        seed: the view seed.
    """

    def __init__(self, source: MemoryImageSet, epochs: int, seed: int) -> None:
        self.source, self.epochs, self.seed = source, int(epochs), int(seed)

    def __len__(self) -> int:
        return self.epochs * len(self.source)

    def __getitems__(self, items: list[int]) -> tuple[torch.Tensor, ...]:
        flat = torch.as_tensor(items, dtype=torch.long)
        epoch, index = flat // len(self.source), flat % len(self.source)
        parts = []
        for e in torch.unique(epoch).tolist():  # a batch spans one or two view epochs
            x, y, i = self.source.batch(index[epoch == e], e, self.seed)
            parts.append((x, y, i, torch.full_like(i, e)))
        return parts[0] if len(parts) == 1 else tuple(torch.cat(p) for p in zip(*parts, strict=True))

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[0] for t in self.__getitems__([int(item)]))


class WholeBatches(Dataset):
    """A :class:`MemoryImageSet` whose batches are built at once and handed over as ``(x, y, index)`` tensors.

    The memory set's own ``__getitems__`` returns per-sample tuples for the default collate, which then re-stacks
    them one sample at a time; for a cache build that is pure overhead next to a fast (GPU) forward pass.
    """

    def __init__(self, source: MemoryImageSet) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitems__(self, items: list[int]) -> tuple[torch.Tensor, ...]:
        return self.source.batch(items)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, ...]:
        return self.source[int(item)]


def view_loader(dm: DistillDataModule, layout: CacheLayout) -> DataLoader:
    """Loader of every view of a replay ``layout`` in ``(e, i)`` order, ``dm.eval_batch_size`` views a batch."""
    require_replay(dm)
    views = ViewSet(dm.train_set, layout.view_epochs, layout.view_seed)
    return DataLoader(views, batch_size=dm.eval_batch_size, shuffle=False, collate_fn=passthrough)


def build_loader(dm: DistillDataModule, layout: CacheLayout) -> DataLoader:
    """The loader a cache build of ``layout`` scores: every replay view, or the clean training set in index order.

    A clean in-memory set is read in whole batches (:class:`WholeBatches`); other sets through
    ``dm.cache_dataloader()``.
    """
    if layout.replay:
        return view_loader(dm, layout)
    if isinstance(dm.cache_set, MemoryImageSet):
        return DataLoader(WholeBatches(dm.cache_set), batch_size=dm.eval_batch_size, shuffle=False,
                          collate_fn=passthrough)
    return dm.cache_dataloader()
