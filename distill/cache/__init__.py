"""The soft-label cache between generations: written once by a predict loop, read by index by the next student."""

from distill.cache.manifest import CacheError, Manifest, atomic_write_json, atomic_write_text, sha256_file
from distill.cache.store import SoftLabelCache
from distill.cache.writer import CACHE_DTYPES, CacheWriter

__all__ = ["CACHE_DTYPES", "CacheError", "CacheWriter", "Manifest", "SoftLabelCache", "atomic_write_json",
           "atomic_write_text", "sha256_file"]
