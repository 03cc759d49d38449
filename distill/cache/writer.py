"""Build a soft-label cache through Lightning's predict loop (a :class:`BasePredictionWriter`)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from distill.cache.formats import CACHE_DTYPES, build_format
from distill.cache.manifest import ARRAY_NAME, EMBEDDINGS_NAME, MANIFEST_NAME, CacheError, CacheLayout, Manifest
from distill.cache.shards import RankShard, merge_shards
from distill.faults import fault_point
from distill.io import commit, sha256_file
from distill.outputs import EMBEDDING, FeatureTap

__all__ = ["CACHE_DTYPES", "CacheWriter"]


class CacheWriter(BasePredictionWriter):
    """Writes each predicted batch of logits into a memory-mapped ``.npy`` at the batch's dataset indices.

    Batches are ``(x, y, index)`` for a clean cache and ``(x, y, index, view_epoch)`` for a replay cache, whose array
    is ``(E, N, ...)``: the row of view ``(e, i)`` is ``array[e, i]``. Each prediction is encoded by the layout's
    storage format (:mod:`distill.cache.formats`). With ``layout.embeddings`` the writer also taps the network's
    pre-logit embedding (:data:`~distill.outputs.EMBEDDING`, the input of ``student.get_classifier()``) during the same
    forward pass and stores it, in ``dtype``, at the same rows of ``embeddings.npy`` (``(N, D)`` or ``(E, N, D)``).

    The array is written under a temporary name and renamed when every row has been written exactly once; the
    manifest (with the array's sha256 and the layout) is written last. An interrupted build leaves no file a reader
    accepts.

    Under a multi-process strategy (DDP, ``trainer.world_size > 1``) Lightning's predict sampler gives each rank every
    ``W``-th sample, none twice and none padded. The build then shards by rank (:mod:`distill.cache.shards`): global
    rank 0 creates the directory and removes the old cache (barrier); each rank appends its encoded rows and their
    positions to its own shard files; at the end every rank fsyncs its shard (barrier), rank 0 alone merges the shards
    into the temporary array, checks that every position was written exactly once across all ranks, renames the
    array, writes the manifest and deletes the shards; a broadcast of rank 0's outcome ends the build on every rank
    together (a failure on rank 0 fails every rank). Only rank 0 ever writes the array and the manifest.

    Args:
        directory: cache directory (created).
        num_samples: length of the dataset being scored.
        num_classes: logits per sample.
        dtype: ``"float16"`` (default: half the disk and page cache; logits need ~3 significant digits) or
            ``"float32"``; the value dtype of the ``full`` format.
        manifest_fields: every :class:`Manifest` field except the array checksum, size, dtype, shape and layout.
        layout: views and storage format (default: clean, full).
    """

    def __init__(self, directory: str | Path, num_samples: int, num_classes: int, dtype: str,
                 manifest_fields: dict[str, Any], layout: CacheLayout | None = None) -> None:
        super().__init__(write_interval="batch")
        if dtype not in CACHE_DTYPES:
            raise CacheError(f"cache.dtype must be one of {sorted(CACHE_DTYPES)}, got {dtype!r}")
        self.directory = Path(directory)
        self.layout = layout or CacheLayout()
        self.format = build_format(self.layout.format, num_classes, dtype, self.layout.topk)
        self.rows = (self.layout.view_epochs, num_samples) if self.layout.replay else (num_samples,)
        self.shape = self.rows + self.format.row_shape
        self.manifest_fields = manifest_fields
        self._array: np.memmap | None = None
        self._written: np.ndarray | None = None
        self._shard: RankShard | None = None
        self._pending: tuple | None = None
        self.embedding_dtype = np.dtype(CACHE_DTYPES[dtype])
        self._tap: FeatureTap | None = None
        self._embeddings: np.memmap | None = None
        self.seconds: dict[str, float] = {}  # finishing costs of the last build: fsync, sha256

    @property
    def _partial(self) -> Path:
        return self.directory / (ARRAY_NAME + ".partial")

    @property
    def _embeddings_partial(self) -> Path:
        return self.directory / (EMBEDDINGS_NAME + ".partial")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.layout.embeddings:
            if trainer.world_size > 1:
                raise CacheError("cache.embeddings is built by one process for now: build this cache without DDP "
                                 "(trainer.devices 1)")
            self._tap = FeatureTap(pl_module.student, (EMBEDDING,))
        if trainer.world_size > 1:
            self._shard = RankShard.start(self.directory, trainer, (self.directory / MANIFEST_NAME,
                                                                    self.directory / ARRAY_NAME, self._partial))
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in (self.directory / MANIFEST_NAME, self.directory / ARRAY_NAME, self.directory / EMBEDDINGS_NAME):
            stale.unlink(missing_ok=True)
        self._array = np.lib.format.open_memmap(self._partial, mode="w+", dtype=self.format.numpy_dtype,
                                                shape=self.shape)
        self._written = np.zeros(self.rows, dtype=np.int32)

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: torch.Tensor,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Queue this batch's rows and store the previous batch's.

        The copy of the predictions and indices to the host is started here without waiting (on a GPU: into pinned
        memory, behind an event), and the rows are encoded and scattered one batch later, while the device already
        works on the next batch: the build never waits for the device on every batch. On the CPU the copy is
        immediate and the lag changes nothing but the order of work.
        """
        if self.layout.replay and len(batch) < 4:
            raise CacheError("a replay cache build needs batches (x, y, index, view_epoch)")
        parts = (prediction.detach(), batch[2], *((batch[3],) if self.layout.replay else ()),
                 *((self._tap.take()[EMBEDDING].detach(),) if self._tap is not None else ()))
        event = None
        if any(t.device.type == "cuda" for t in parts):
            parts = tuple(t.to("cpu", non_blocking=True) for t in parts)
            event = torch.cuda.Event()
            event.record()
        self._store_pending()
        self._pending = (parts, event, batch_idx)

    def _store_pending(self) -> None:
        """Encode and scatter the queued batch (if any) into the array or this rank's shard."""
        if self._pending is None:
            return
        parts, event, batch_idx = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        prediction, index = parts[0], parts[1].numpy()
        rows = self.format.encode(prediction)
        if self.layout.replay:
            index = (parts[2].numpy(), index)
        if self._shard is not None:
            positions = np.ravel_multi_index(index, self.rows) if self.layout.replay else index
            self._shard.append(positions, rows)
            return
        in_order = not self.layout.replay and len(index) and index[-1] - index[0] == len(index) - 1 \
            and (np.diff(index) == 1).all()  # an in-order clean build: a slice, not a fancy-index scatter
        where = slice(index[0], index[-1] + 1) if in_order else index
        self._array[where] = rows
        if in_order:
            self._written[where] += 1
        else:
            np.add.at(self._written, index, 1)
        if self._tap is not None:
            embedding = parts[-1].float().numpy().astype(self.embedding_dtype)
            if self._embeddings is None:  # D is known from the first batch
                self._embeddings = np.lib.format.open_memmap(self._embeddings_partial, mode="w+",
                                                             dtype=self.embedding_dtype,
                                                             shape=self.rows + embedding.shape[1:])
            self._embeddings[where] = embedding
        fault_point(f"cache:{self.manifest_fields['generation']}:batch:{batch_idx}")

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._store_pending()
        if self._shard is not None:
            shard, self._shard = self._shard, None
            shard.finish(trainer, self._merge)
            return
        self._array.flush()
        del self._array
        self._array = None
        if self._tap is not None:
            self._tap.remove()
            self._tap = None
            self._embeddings.flush()
            self._embeddings = None
        self._finish()

    def _merge(self, shards: list[tuple[Path, Path]]) -> None:
        """Rank 0 of a distributed build: copy every rank's shard into the temporary array, then :meth:`_finish`."""
        array = np.lib.format.open_memmap(self._partial, mode="w+", dtype=self.format.numpy_dtype, shape=self.shape)
        flat = array.reshape((-1, *self.format.row_shape))
        self._written = merge_shards(shards, flat, self.format.numpy_dtype, self.format.row_shape).reshape(self.rows)
        array.flush()
        del flat, array
        self._finish()

    def _finish(self) -> None:
        """Check that every row was written exactly once, fsync and rename the array, write the manifest."""
        counts = np.bincount(self._written.ravel(), minlength=3)
        if self._written.min() != 1 or self._written.max() != 1:
            raise CacheError(f"cache build wrote {counts[0]} rows zero times and {counts[2:].sum()} more than "
                             "once; the cache loader must visit every (view, sample) exactly once")
        start = time.perf_counter()
        final = self.directory / ARRAY_NAME
        commit(self._partial, final)
        self.seconds["fsync"] = time.perf_counter() - start
        start = time.perf_counter()
        checksum = sha256_file(final)
        self.seconds["sha256"] = time.perf_counter() - start
        embedding = {}
        if self.layout.embeddings:
            path = self.directory / EMBEDDINGS_NAME
            commit(self._embeddings_partial, path)
            stored = np.load(path, mmap_mode="r", allow_pickle=False)
            embedding = {"embedding_dtype": self.embedding_dtype.name, "embedding_shape": list(stored.shape),
                         "embedding_sha256": sha256_file(path), "embedding_bytes": path.stat().st_size}
            del stored
        Manifest(**self.manifest_fields, **asdict(self.layout), dtype=self.format.value_dtype, shape=list(self.shape),
                 array_sha256=checksum, array_bytes=final.stat().st_size, **embedding).write(self.directory)
