"""Read a soft-label cache: verify it, memory-map it, look scores (and embeddings) up by (view epoch, dataset index)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.cache.formats import CacheFormat, FullFormat, build_format
from distill.cache.manifest import ARRAY_NAME, EMBEDDINGS_NAME, CacheError, CacheLayout, Manifest
from distill.io import sha256_file


class SoftLabelCache:
    """A verified, memory-mapped array of teacher scores: ``(N, ...)`` rows (clean) or ``(E, N, ...)`` (replay).

    Opening checks, in order: a complete manifest exists; the array's size and sha256 match it; the manifest matches
    the current dataset fingerprint, teacher checkpoint and (when given) the expected :class:`CacheLayout`; the
    array's shape and dtype match the manifest's format; with ``embeddings``, the same for ``embeddings.npy``. Any
    difference raises :class:`CacheError`.

    Reads are vectorised gathers: :meth:`lookup` indexes the memory map with the whole batch of indices at once (or,
    after :meth:`to_device`, indexes tensors held on the device) and decodes the rows with the storage format.

    Args:
        directory: the cache directory (``RUN/cache/gen-k``).
        dataset: the current data module's :meth:`fingerprint`.
        teacher_sha256: sha256 of the teacher checkpoint as it is on disk now (None skips that check).
        layout: the layout the reader needs (None accepts whatever layout the cache has).
    """

    def __init__(self, directory: str | Path, dataset: dict[str, Any], teacher_sha256: str | None,
                 layout: CacheLayout | None = None) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.read(self.directory)
        path = self.directory / ARRAY_NAME
        if not path.is_file() or path.stat().st_size != self.manifest.array_bytes:
            raise CacheError(f"cache array {path} is missing or has the wrong size")
        if sha256_file(path) != self.manifest.array_sha256:
            raise CacheError(f"cache array {path} does not match its manifest checksum (corrupted?)")
        self.manifest.check(dataset, teacher_sha256, str(self.directory), layout)
        self.layout = self.manifest.layout
        self.num_classes = int(self.manifest.dataset.get("num_classes", self.manifest.shape[-1]))
        self.format: CacheFormat = build_format(self.layout.format, self.num_classes, self.manifest.dtype,
                                                self.layout.topk)
        self.stored = np.load(path, mmap_mode="r", allow_pickle=False)
        rows = [self.layout.view_epochs] if self.layout.replay else []
        expected = rows + [int(self.manifest.dataset.get("length", self.stored.shape[len(rows)]))]
        expected += list(self.format.row_shape)
        if (list(self.stored.shape) != self.manifest.shape or list(self.stored.shape) != expected
                or self.stored.dtype != self.format.numpy_dtype):
            raise CacheError(f"cache array {path} has shape {self.stored.shape} {self.stored.dtype}, manifest says "
                             f"{self.manifest.shape} {self.format.numpy_dtype} ({self.layout.format})")
        self.embeddings = self._open_embeddings() if self.layout.embeddings else None
        self._resident: tuple[torch.Tensor, ...] | None = None
        self._resident_embeddings: torch.Tensor | None = None
        self._sample_logits: np.ndarray | None = None

    def _open_embeddings(self) -> np.ndarray:
        """``embeddings.npy``, verified against the manifest (size, sha256, shape, dtype) and memory-mapped."""
        m, path = self.manifest, self.directory / EMBEDDINGS_NAME
        if not path.is_file() or path.stat().st_size != m.embedding_bytes:
            raise CacheError(f"cache embeddings {path} are missing or have the wrong size")
        if sha256_file(path) != m.embedding_sha256:
            raise CacheError(f"cache embeddings {path} do not match their manifest checksum (corrupted?)")
        stored = np.load(path, mmap_mode="r", allow_pickle=False)
        rows = self.stored.shape[:2 if self.layout.replay else 1]
        if list(stored.shape) != m.embedding_shape or stored.shape[:-1] != rows \
                or stored.dtype.name != m.embedding_dtype:
            raise CacheError(f"cache embeddings {path} have shape {stored.shape} {stored.dtype}, manifest says "
                             f"{m.embedding_shape} {m.embedding_dtype}")
        return stored

    @property
    def views(self) -> int:
        """Number of view epochs ``E`` (1 for a clean cache)."""
        return self.layout.view_epochs or 1

    def __len__(self) -> int:
        return self.stored.shape[1 if self.layout.replay else 0]

    @property
    def nbytes(self) -> int:
        """Bytes of the stored scores (the array without its ``.npy`` header)."""
        return int(self.stored.nbytes) + (int(self.embeddings.nbytes) if self.embeddings is not None else 0)

    def to_device(self, device: torch.device | str) -> SoftLabelCache:
        """Hold the stored rows as tensors on ``device`` (read once); later lookups gather there, with no host trip.

        For a GPU whose batches (and indices) live on the device: the gather stays on it and nothing synchronises.
        """
        self._resident = tuple(t.to(device) for t in self.format.tensors(np.array(self.stored)))
        if self.embeddings is not None:
            self._resident_embeddings = torch.from_numpy(np.array(self.embeddings)).to(device)
        return self

    def lookup(self, index: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        """float32 ``(B, C)`` logits of the samples at dataset indices ``index`` in view epoch ``epoch % E``.

        A clean cache ignores ``epoch``. One vectorised gather per call: from the memory map (result on the CPU) or,
        after :meth:`to_device`, from the device tensors (result on that device).
        """
        view = int(epoch) % self.views
        if self._resident is not None:
            index = index.to(self._resident[0].device)
            parts = (t[view] if self.layout.replay else t for t in self._resident)
            return self.format.decode_tensors(*(p[index] for p in parts))
        rows = self.stored[view] if self.layout.replay else self.stored
        return self.format.decode(rows[index.cpu().numpy()])

    def lookup_embeddings(self, index: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        """float32 ``(B, D)`` teacher embeddings at dataset indices ``index`` in view epoch ``epoch % E`` (like
        :meth:`lookup`: one gather from the memory map, or from the device after :meth:`to_device`).

        Raises:
            CacheError: the cache was built without ``cache.embeddings``.
        """
        if self.embeddings is None:
            raise CacheError(f"cache {self.directory} holds no embeddings (built without cache.embeddings: true)")
        view = int(epoch) % self.views
        if self._resident_embeddings is not None:
            rows = self._resident_embeddings[view] if self.layout.replay else self._resident_embeddings
            return rows[index.to(rows.device)].float()
        rows = self.embeddings[view] if self.layout.replay else self.embeddings
        return torch.from_numpy(rows[index.cpu().numpy()]).float()

    def all(self) -> torch.Tensor:
        """Every stored view's logits as float32: ``(N, C)``, or ``(E, N, C)`` for a replay cache (reads it all)."""
        return self.format.decode(np.array(self.stored))  # from a writable copy of the map, whatever the format

    @property
    def array(self) -> np.ndarray:
        """``(N, C)`` logits per training sample, for readers that want one score vector per sample (inspection).

        A clean ``full`` cache returns the memory map itself. A ``topk`` cache returns the reconstructed logits; a
        replay cache the log of the mean probability over its views, ``log(mean_e softmax(z_e))`` -- the teacher's
        expected prediction over the cached augmentations (computed once, float32).
        """
        if not self.layout.replay and isinstance(self.format, FullFormat):
            return self.stored
        if self._sample_logits is None:
            probs = torch.zeros(len(self), self.num_classes)
            for e in range(self.views):  # one view at a time: memory stays at two (N, C) float32 arrays
                probs += torch.softmax(self.format.decode(np.array(self.stored[e] if self.layout.replay
                                                                   else self.stored)), dim=1)
            self._sample_logits = (probs / self.views).clamp_min(torch.finfo(torch.float32).tiny).log().numpy()
        return self._sample_logits
