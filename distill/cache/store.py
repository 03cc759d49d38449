"""Read a soft-label cache: verify it, memory-map it, look scores up by dataset index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.cache.manifest import ARRAY_NAME, CacheError, Manifest, sha256_file


class SoftLabelCache:
    """A verified, memory-mapped ``(num_samples, num_classes)`` array of teacher logits.

    Opening checks, in order: a complete manifest exists; the array's size and sha256 match it; the manifest matches
    the current dataset fingerprint and teacher checkpoint. Any difference raises :class:`CacheError`.

    Args:
        directory: the cache directory (``RUN/cache/gen-k``).
        dataset: the current data module's :meth:`fingerprint`.
        teacher_sha256: sha256 of the teacher checkpoint as it is on disk now (None skips that check).
    """

    def __init__(self, directory: str | Path, dataset: dict[str, Any], teacher_sha256: str | None) -> None:
        self.directory = Path(directory)
        self.manifest = Manifest.read(self.directory)
        path = self.directory / ARRAY_NAME
        if not path.is_file() or path.stat().st_size != self.manifest.array_bytes:
            raise CacheError(f"cache array {path} is missing or has the wrong size")
        if sha256_file(path) != self.manifest.array_sha256:
            raise CacheError(f"cache array {path} does not match its manifest checksum (corrupted?)")
        self.manifest.check(dataset, teacher_sha256, str(self.directory))
        self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        if list(self.array.shape) != self.manifest.shape or self.array.dtype.name != self.manifest.dtype:
            raise CacheError(f"cache array {path} has shape {self.array.shape} {self.array.dtype}, "
                             f"manifest says {self.manifest.shape} {self.manifest.dtype}")

    def __len__(self) -> int:
        return self.array.shape[0]

    def lookup(self, index: torch.Tensor) -> torch.Tensor:
        """Float32 logits of the samples at dataset indices ``index`` (one vectorised memory-map gather)."""
        return torch.from_numpy(np.asarray(self.array[index.cpu().numpy()], dtype=np.float32))

    def all(self) -> torch.Tensor:
        """Every sample's logits as float32 (reads the whole array)."""
        return torch.from_numpy(np.array(self.array, dtype=np.float32))  # a writable copy
