"""Soft-label cache: bit-exact round trip through the predict loop, manifest and checksum checks."""

from __future__ import annotations

import json
import shutil

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn

from distill.cache import CacheError, CacheWriter, SoftLabelCache, sha256_file
from distill.data.base import DistillDataModule, TensorIndexedDataset


class RandomLogits(L.LightningModule):
    """predict_step returns fixed per-sample logits so the written cache can be compared exactly."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table
        self.dummy = nn.Linear(1, 1)

    def predict_step(self, batch, batch_idx):
        return self.table[batch[2]]


class TinyData(DistillDataModule):
    name = "tiny"
    num_classes = 7
    in_chans = 1

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        self.cache_set = self.train_set = TensorIndexedDataset(torch.randn(50, 1, 2, 2, generator=g),
                                                               torch.randint(0, 7, (50,), generator=g))
        self.test_set = self.train_set


def _build(tmp_path, dtype: str, table: torch.Tensor) -> DistillDataModule:
    dm = TinyData(eval_batch_size=16)
    dm.setup()
    ckpt = tmp_path / "teacher.ckpt"
    ckpt.write_bytes(b"weights")
    writer = CacheWriter(tmp_path / "cache", 50, 7, dtype, {"generation": 0, "teacher_checkpoint": "teacher.ckpt",
                                                             "teacher_sha256": sha256_file(ckpt),
                                                             "dataset": dm.fingerprint()})
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    trainer.predict(RandomLogits(table), dm.cache_dataloader(), return_predictions=False)
    return dm


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_bit_exact(tmp_path, dtype):
    table = torch.randn(50, 7, generator=torch.Generator().manual_seed(1)) * 5
    dm = _build(tmp_path, dtype, table)
    cache = SoftLabelCache(tmp_path / "cache", dm.fingerprint(), sha256_file(tmp_path / "teacher.ckpt"))
    expected = table.numpy().astype(np.dtype(dtype)).astype(np.float32)
    index = torch.tensor([49, 0, 17, 17, 3])
    assert np.array_equal(cache.lookup(index).numpy(), expected[index.numpy()])
    assert np.array_equal(cache.all().numpy(), expected)
    manifest = json.loads((tmp_path / "cache" / "manifest.json").read_text())
    assert manifest["shape"] == [50, 7] and manifest["dtype"] == dtype
    assert manifest["dataset"]["length"] == 50 and manifest["dataset"]["num_classes"] == 7
    assert not list((tmp_path / "cache").glob("*.partial"))


def test_mismatches_raise(tmp_path):
    dm = _build(tmp_path, "float16", torch.randn(50, 7))
    fp, sha = dm.fingerprint(), sha256_file(tmp_path / "teacher.ckpt")
    with pytest.raises(CacheError, match="different teacher"):
        SoftLabelCache(tmp_path / "cache", fp, "0" * 64)
    with pytest.raises(CacheError, match="length"):
        SoftLabelCache(tmp_path / "cache", {**fp, "length": 51}, sha)
    with pytest.raises(CacheError, match="labels_sha256"):
        SoftLabelCache(tmp_path / "cache", {**fp, "labels_sha256": "x"}, sha)
    with pytest.raises(CacheError, match="transform"):
        SoftLabelCache(tmp_path / "cache", {**fp, "transform": "other"}, sha)


def test_corrupted_or_incomplete_cache_is_rejected(tmp_path):
    dm = _build(tmp_path, "float32", torch.randn(50, 7))
    fp, sha = dm.fingerprint(), sha256_file(tmp_path / "teacher.ckpt")
    flipped = tmp_path / "flipped"
    shutil.copytree(tmp_path / "cache", flipped)
    data = bytearray((flipped / "logits.npy").read_bytes())
    data[-3] ^= 0xFF
    (flipped / "logits.npy").write_bytes(bytes(data))
    with pytest.raises(CacheError, match="checksum"):
        SoftLabelCache(flipped, fp, sha)
    truncated = tmp_path / "truncated"
    shutil.copytree(tmp_path / "cache", truncated)
    (truncated / "logits.npy").write_bytes((truncated / "logits.npy").read_bytes()[:-10])
    with pytest.raises(CacheError, match="wrong size"):
        SoftLabelCache(truncated, fp, sha)
    (truncated / "manifest.json").unlink()
    with pytest.raises(CacheError, match="missing manifest.json"):
        SoftLabelCache(truncated, fp, sha)


def test_incomplete_build_leaves_nothing_valid(tmp_path):
    class Failing(RandomLogits):
        def predict_step(self, batch, batch_idx):
            if batch_idx == 2:
                raise RuntimeError("killed")
            return super().predict_step(batch, batch_idx)

    dm = TinyData(eval_batch_size=16)
    dm.setup()
    writer = CacheWriter(tmp_path / "c", 50, 7, "float16", {"generation": 0, "teacher_checkpoint": "t",
                                                             "teacher_sha256": "x", "dataset": dm.fingerprint()})
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    with pytest.raises(RuntimeError, match="killed"):
        trainer.predict(Failing(torch.randn(50, 7)), dm.cache_dataloader(), return_predictions=False)
    assert not (tmp_path / "c" / "manifest.json").exists() and not (tmp_path / "c" / "logits.npy").exists()
    with pytest.raises(CacheError):
        SoftLabelCache(tmp_path / "c", dm.fingerprint(), None)


def test_run_caches_are_valid_and_match_the_checkpoint(tiny_run):
    from distill.generations import build_datamodule
    from distill.tasks.born_again import load_student

    dm = build_datamodule({"name": "digits", "train_subset": 300})
    cache = SoftLabelCache(tiny_run / "cache" / "gen-0", dm.fingerprint(), sha256_file(tiny_run / "gen-0/model.ckpt"))
    model = load_student(tiny_run / "gen-0" / "model.ckpt", "small_cnn", 10, 1)
    x = torch.stack([dm.cache_set[i][0] for i in range(8)])
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(cache.lookup(torch.arange(8)), expected, atol=2e-2, rtol=1e-2)  # float16 storage
