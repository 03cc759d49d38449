"""Cache manifests: what a soft-label array was computed from, and checks that it still matches.

A cache directory holds ``logits.npy`` (a plain ``.npy`` array, memory-mappable, never pickled), with
``cache.embeddings`` also ``embeddings.npy`` (the teacher's pre-logit embedding of every view, same row order), and
``manifest.json``. The manifest is written last and atomically, so its presence marks a complete cache.

The array's layout is described by a :class:`CacheLayout` (recorded in the manifest): ``(N, ...)`` rows for one clean
view per sample, ``(E, N, ...)`` for ``cache.mode: replay`` (view epoch, sample index), each row in the storage
format of :mod:`distill.cache.formats`. Manifests written before these fields existed read as clean, full caches.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.io import atomic_write_json

MANIFEST_VERSION = 1
ARRAY_NAME = "logits.npy"
EMBEDDINGS_NAME = "embeddings.npy"
MANIFEST_NAME = "manifest.json"


class CacheError(UserError, ValueError):
    """A cache that is missing, incomplete, corrupted or computed from something else."""


class CacheMismatchError(CacheError):
    """An intact cache computed from another dataset, teacher or cache setting: an error, never rebuilt silently."""


@dataclass(frozen=True)
class CacheLayout:
    """Which views a cache holds and how each is stored; a reader that expects another layout rejects the cache.

    Attributes:
        mode: ``"clean"`` (one un-augmented view per sample) or ``"replay"`` (augmented views ``(e, i)``).
        format: storage format name (:data:`distill.cache.formats.FORMATS`).
        topk: ``k`` of the ``topk`` format (None for formats without one).
        view_epochs: number of view epochs ``E`` of a replay cache (None when clean).
        view_seed: augmentation seed of the replayed views (None when clean).
        augmentation: description of the replayed augmentation, e.g. ``random_crop(padding=2), hflip(0.5)``.
        embeddings: whether each view's pre-logit embedding is stored beside its scores (``embeddings.npy``).
    """

    mode: str = "clean"
    format: str = "full"
    topk: int | None = None
    view_epochs: int | None = None
    view_seed: int | None = None
    augmentation: str | None = None
    embeddings: bool = False

    @property
    def replay(self) -> bool:
        """Whether the cache holds ``(view epoch, index)`` views."""
        return self.view_epochs is not None


@dataclass(frozen=True, kw_only=True)
class Manifest(CacheLayout):
    """Everything a reader checks before trusting a cache.

    Attributes:
        generation: generation whose logits these are.
        teacher_checkpoint: checkpoint path the logits were computed with (relative to the run directory).
        teacher_sha256: sha256 of that checkpoint file.
        dataset: the data module's fingerprint (name, length, num_classes, labels_sha256, transform).
        dtype: numpy dtype name of the stored logits.
        shape: ``[num_samples, num_classes]``.
        array_sha256: sha256 of ``logits.npy`` as written.
        array_bytes: size of ``logits.npy`` in bytes.
        version: manifest format version.
        embedding_dtype: numpy dtype name of ``embeddings.npy`` (None without embeddings).
        embedding_shape: its shape, the rows of ``logits.npy`` then ``D`` (None without embeddings).
        embedding_sha256: sha256 of ``embeddings.npy`` as written (None without embeddings).
        embedding_bytes: size of ``embeddings.npy`` in bytes (None without embeddings).
        (inherited) mode, format, topk, view_epochs, view_seed, augmentation, embeddings: the :class:`CacheLayout`.
    """

    generation: int
    teacher_checkpoint: str
    teacher_sha256: str
    dataset: dict[str, Any]
    dtype: str
    shape: list[int]
    array_sha256: str
    array_bytes: int
    version: int = MANIFEST_VERSION
    embedding_dtype: str | None = None
    embedding_shape: list[int] | None = None
    embedding_sha256: str | None = None
    embedding_bytes: int | None = None

    @property
    def layout(self) -> CacheLayout:
        """The layout fields as a :class:`CacheLayout`."""
        return CacheLayout(**{f.name: getattr(self, f.name) for f in fields(CacheLayout)})

    def write(self, directory: str | Path) -> None:
        atomic_write_json(Path(directory) / MANIFEST_NAME, asdict(self))

    @classmethod
    def read(cls, directory: str | Path) -> Manifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise CacheError(f"no complete soft-label cache in {directory} (missing {MANIFEST_NAME})")
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (json.JSONDecodeError, TypeError) as e:
            raise CacheError(f"cache manifest {path} is malformed: {e}") from None

    def check(self, dataset: dict[str, Any], teacher_sha256: str | None, where: str,
              layout: CacheLayout | None = None) -> None:
        """Raise :class:`CacheError` naming the first field that differs from the dataset / teacher / layout expected.

        ``layout=None`` accepts any layout (a reader that only inspects the scores). A cache with embeddings serves a
        layout without them too (the logits are the same).
        """
        if self.version != MANIFEST_VERSION:
            raise CacheMismatchError(f"cache {where} has manifest version {self.version}, expected {MANIFEST_VERSION}")
        for key, value in dataset.items():
            if self.dataset.get(key) != value:
                raise CacheMismatchError(f"cache {where} was built for dataset {key}={self.dataset.get(key)!r}, "
                                         f"but the current dataset has {key}={value!r}")
        if teacher_sha256 is not None and self.teacher_sha256 != teacher_sha256:
            raise CacheMismatchError(f"cache {where} was built from a different teacher checkpoint "
                                     f"(sha256 {self.teacher_sha256[:12]}... vs {teacher_sha256[:12]}...)")
        for key, value in asdict(layout or self.layout).items():
            if key == "embeddings" and not value:  # a reader that needs no embeddings reads a cache that has them
                continue
            if getattr(self, key) != value:
                raise CacheMismatchError(f"cache {where} was built with cache {key}={getattr(self, key)!r}, "
                                         f"but the run expects {key}={value!r}")
