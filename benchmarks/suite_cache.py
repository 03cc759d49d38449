"""Bytes per cached view of each storage format, and the wall time of a whole born-again recipe."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.suite_common import Profile, datamodule, recipe
from benchmarks.suite_timing import as_terminal
from distill.cache import CacheLayout, CacheWriter, SoftLabelCache
from distill.data import TensorIndexedDataset
from distill.generations import BornAgainRun
from distill.resolve import resolve_run


class _TableScores(L.LightningModule):
    """predict_step returns fixed logits rows for the batch's indices (bytes do not depend on who computed them)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table, self.unused = table, nn.Linear(1, 1)

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self.table[batch[2]]


def bytes_per_view(profile: Profile, work: Path, num_classes: int = 100) -> dict[str, float]:
    """Stored bytes per (view, sample) of each format at ``num_classes`` classes, from caches written to disk.

    A predict loop with the :class:`CacheWriter` writes ``bytes_views`` random logit rows per format; the figure is
    the ``.npy`` payload (file size minus its fixed header of about 128 bytes) divided by the number of views.
    """
    n = profile.bytes_views
    table = torch.randn(n, num_classes, generator=torch.Generator().manual_seed(0)) * 3
    loader = DataLoader(TensorIndexedDataset(torch.zeros(n, 1), torch.zeros(n)), batch_size=4096)
    formats = {"full_float32": ("full", "float32", None), "full_float16": ("full", "float16", None),
               "topk10": ("topk", "float16", 10)}
    dataset = {"length": n, "num_classes": num_classes}
    out: dict[str, float] = {}
    for label, (fmt, dtype, k) in formats.items():
        layout = CacheLayout(format=fmt, topk=k)
        writer = CacheWriter(work / f"bytes-{label}", n, num_classes, dtype, {
            "generation": 0, "teacher_checkpoint": "-", "teacher_sha256": "-", "dataset": dataset}, layout)
        L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                  callbacks=[writer]).predict(_TableScores(table), loader, return_predictions=False)
        out[label] = SoftLabelCache(work / f"bytes-{label}", dataset, None, layout).nbytes / n
    out["classes"] = num_classes
    return out


def ban_recipe(profile: Profile, work: Path) -> dict[str, Any]:
    """Wall time of :meth:`BornAgainRun.run` for a teacher and three students (``ban_epochs`` epochs each).

    The whole engine path a user runs: preflight, every generation's fit, test evaluation, cache build and summary,
    with the profile's settings and the default progress bar (drawn as on a terminal). The data module is built
    beforehand (its decoding is reported separately).
    """
    start = time.perf_counter()
    dm, what = datamodule(profile, profile.ban_train, True)
    setup = time.perf_counter() - start
    cfg = recipe(profile, profile.ban_train, profile.ban_epochs, generations=3, progress_bar=True)
    run = BornAgainRun(resolve_run(cfg), work / "ban", "benchmark", dm=dm)
    start = time.perf_counter()
    with as_terminal():
        summary = run.run()
    wall = time.perf_counter() - start
    gens = summary["generations"]
    return {"data": f"{what}, {len(dm.train_set)} training images", "backbone": profile.backbone,
            "batch_size": profile.batch_size, "epochs": profile.ban_epochs, "generations": len(gens),
            "data_setup_seconds": setup, "wall_seconds": wall,
            "train_seconds": [g["train_seconds"] for g in gens],
            "test_acc": [g["test"]["acc"] for g in gens],
            "ensemble_acc": [e["test"]["acc"] for e in summary["ensembles"]]}
