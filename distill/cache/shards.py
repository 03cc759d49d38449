"""Per-rank shard files of a cache build under a multi-process strategy (DDP), merged by global rank 0.

Each rank appends the encoded rows it scores to ``.shard-<rank>.rows`` and their flat positions (``e * N + i`` for
view ``(e, i)``, ``i`` for a clean cache) to ``.shard-<rank>.index.npy`` in the cache directory; after a barrier,
rank 0 copies every shard into the array and counts how often each position was written.

Why shards rather than every rank writing into one shared memory map: Lightning's predict sampler deals samples out
round-robin (rank ``r`` gets ``r, r + W, r + 2W, ...``), so every page of the array holds rows of every rank. On one
machine the ranks' writes meet in the page cache, but on a network file system shared by several nodes each node
writes back whole pages and the last one wins. With shards, each file has exactly one writer and the array is written
by rank 0 alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np

from distill.cache.manifest import CacheError

SHARD_PREFIX = ".shard-"
MERGE_CHUNK = 1 << 16  # rows copied at a time: bounds rank 0's memory whatever the shard size


def shard_paths(directory: Path, rank: int) -> tuple[Path, Path]:
    """``(rows, index)`` files of ``rank`` in a cache directory."""
    return directory / f"{SHARD_PREFIX}{rank}.rows", directory / f"{SHARD_PREFIX}{rank}.index.npy"


def remove_shards(directory: Path) -> None:
    """Delete every shard file in ``directory`` (left by an interrupted build, or merged)."""
    for path in directory.glob(SHARD_PREFIX + "*"):
        path.unlink(missing_ok=True)


class RankShard:
    """This rank's part of a distributed cache build: an append-only rows file and the positions of its rows.

    Args:
        directory: the cache directory (rank 0 has created it).
        rank: this process's global rank.
    """

    def __init__(self, directory: Path, rank: int) -> None:
        self.directory, self.rank = directory, rank
        self.rows_path, self.index_path = shard_paths(directory, rank)
        self._file = open(self.rows_path, "wb")  # closed in close(), at the end of the predict loop
        self._index: list[np.ndarray] = []

    @classmethod
    def start(cls, directory: Path, trainer: L.Trainer, stale: tuple[Path, ...]) -> RankShard:
        """Open this rank's shard once rank 0 has prepared the directory.

        Rank 0 creates the directory and removes the ``stale`` files and any old shards; after a barrier every rank
        opens its own shard. A collective: every rank calls it at the start of the predict loop.
        """
        if trainer.is_global_zero:
            directory.mkdir(parents=True, exist_ok=True)
            for path in stale:
                path.unlink(missing_ok=True)
            remove_shards(directory)
        trainer.strategy.barrier("cache-shards-start")
        return cls(directory, trainer.global_rank)

    def append(self, positions: np.ndarray, rows: np.ndarray) -> None:
        """Append one batch: ``rows[j]`` is the encoded row of flat position ``positions[j]``."""
        self._file.write(np.ascontiguousarray(rows).tobytes())
        self._index.append(np.asarray(positions, dtype=np.int64).ravel())

    def close(self) -> None:
        """Flush and fsync the rows, write the positions."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        index = np.concatenate(self._index) if self._index else np.zeros(0, dtype=np.int64)
        with open(self.index_path, "wb") as f:
            np.save(f, index, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())

    def finish(self, trainer: L.Trainer, merge: Callable[[list[tuple[Path, Path]]], None]) -> None:
        """Close this shard and let rank 0 merge every rank's shard; every rank learns the outcome.

        After a barrier rank 0 runs ``merge(shard paths of every rank)`` and removes the shards. A failure there is
        re-raised on rank 0 and raised as :class:`CacheError` on the other ranks. A collective: every rank calls it
        at the end of the predict loop. The final broadcast also keeps every rank from reading the cache before rank 0
        has written its manifest.
        """
        self.close()
        trainer.strategy.barrier("cache-shards-written")
        error: str | None = None
        failure: Exception | None = None
        if trainer.is_global_zero:
            try:
                merge([shard_paths(self.directory, r) for r in range(trainer.world_size)])
            except Exception as e:  # re-raised below, after the other ranks have been told
                failure, error = e, f"rank 0 could not finish the cache in {self.directory}: {e}"
            finally:
                remove_shards(self.directory)
        error = trainer.strategy.broadcast(error, src=0)
        if failure is not None:
            raise failure
        if error is not None:
            raise CacheError(error)


def merge_shards(shards: list[tuple[Path, Path]], target: np.ndarray, row_dtype: np.dtype,
                 row_shape: tuple[int, ...]) -> np.ndarray:
    """Copy every shard's rows into ``target`` and count how many times each position was written.

    Args:
        shards: ``(rows, index)`` file pairs of every rank.
        target: the array viewed as ``(positions, *row_shape)`` (a writable memory map).
        row_dtype: dtype of one stored row.
        row_shape: trailing shape of one row.

    Returns:
        int64 ``(positions,)`` write counts.
    """
    written = np.zeros(len(target), dtype=np.int64)
    row_bytes = row_dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))
    for rows_path, index_path in shards:
        index = np.load(index_path, allow_pickle=False)
        if rows_path.stat().st_size != len(index) * row_bytes:
            raise CacheError(f"cache shard {rows_path} has {rows_path.stat().st_size} bytes, expected "
                             f"{len(index)} rows of {row_bytes}")
        if len(index) == 0:
            continue
        if index.min() < 0 or index.max() >= len(target):
            raise CacheError(f"cache shard {index_path} holds positions outside [0, {len(target)})")
        rows = np.memmap(rows_path, dtype=row_dtype, mode="r", shape=(len(index), *row_shape))
        for start in range(0, len(index), MERGE_CHUNK):
            target[index[start:start + MERGE_CHUNK]] = rows[start:start + MERGE_CHUNK]
        written += np.bincount(index, minlength=len(target))
        del rows
    return written
