"""The soft-label cache between generations: written once by a predict loop, read by index by the next student.

Modules: :mod:`~distill.cache.manifest` (what a cache was computed from, its layout), :mod:`~distill.cache.formats`
(``cache.format``: full logits or top-k), :mod:`~distill.cache.writer` (the predict-loop writer; under DDP with the
per-rank shards of :mod:`~distill.cache.shards`),
:mod:`~distill.cache.store` (verified, memory-mapped reads) and :mod:`~distill.cache.replay` (``cache.mode`` and the
replayable augmented views).
"""

from distill.cache.formats import CACHE_DTYPES, FORMATS, CacheFormat, build_format
from distill.cache.manifest import (
    CacheError,
    CacheLayout,
    CacheMismatchError,
    Manifest,
    atomic_write_json,
    atomic_write_text,
    sha256_file,
)
from distill.cache.store import SoftLabelCache
from distill.cache.writer import CacheWriter

__all__ = ["CACHE_DTYPES", "FORMATS", "CacheError", "CacheFormat", "CacheLayout", "CacheMismatchError", "CacheWriter",
           "Manifest", "SoftLabelCache", "atomic_write_json", "atomic_write_text", "build_format", "sha256_file"]
