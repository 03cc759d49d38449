"""The soft-label cache between generations: written once by a predict loop, read by index by the next student.

Modules: :mod:`~distill.cache.manifest` (what a cache was computed from, its layout), :mod:`~distill.cache.formats`
(``cache.format``: full logits or top-k), :mod:`~distill.cache.writer` (the predict-loop writer; under DDP with the
per-rank shards of :mod:`~distill.cache.shards`),
:mod:`~distill.cache.store` (verified, memory-mapped reads) and :mod:`~distill.cache.replay` (``cache.mode`` and the
replayable augmented views).
"""

from distill.cache.formats import CACHE_DTYPES, FORMATS, CacheFormat, build_format
from distill.cache.manifest import CacheError, CacheLayout, CacheMismatchError, Manifest
from distill.cache.store import SoftLabelCache
from distill.cache.writer import CacheWriter
from distill.io import sha256_file  # the teacher checksum a cache is keyed by (kept here for callers of the cache)

__all__ = ["CACHE_DTYPES", "FORMATS", "CacheError", "CacheFormat", "CacheLayout", "CacheMismatchError", "CacheWriter",
           "Manifest", "SoftLabelCache", "build_format", "sha256_file"]
