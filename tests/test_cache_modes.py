"""Cache modes and formats: replay view identity and cycling, top-k round trips, layout mismatches, tiny full runs.

The image data here is a synthetic in-memory augmenting dataset (``tiny_aug``: 64 + 32 random 3x8x8 images, crop
padding 1 + flip) registered for the duration of a test, so nothing depends on downloaded data.
"""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli

from distill.cache import FORMATS, CacheError, CacheLayout, CacheMismatchError, CacheWriter, SoftLabelCache
from distill.cache.formats import TopKFormat, build_format
from distill.cache.replay import ViewSet, build_loader
from distill.data import DATASETS, DEFAULTS, DataError, ImageDataModule
from distill.data.defaults import DataDefaults
from distill.data.memory import EpochBatchSampler
from distill.data.sources import Split
from distill.generations import replay_seed
from distill.speed import SpeedConfig, apply_speed
from distill.tasks.born_again import GenerationModule

QUIET = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
TINY_NET = '{"name": "small_cnn", "init_args": {"width": 4}}'


class TinyAug(ImageDataModule):
    """64 training and 32 test random 3x8x8 images of 4 classes (channel 0 brighter with the class)."""

    name, num_classes, in_chans, image_hw = "tiny_aug", 4, 3, (8, 8)
    class_names = ["a", "b", "c", "d"]

    def _load_splits(self) -> tuple[Split, None, Split]:
        g = torch.Generator().manual_seed(0)

        def split(n: int) -> Split:
            labels = torch.arange(n) % 4
            images = torch.randint(0, 190, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
            images[:, 0] += (labels * 20).to(torch.uint8)[:, None, None]
            return Split(labels=labels, images=images)

        return split(64), None, split(32)


@pytest.fixture
def tiny_aug(monkeypatch: pytest.MonkeyPatch) -> type[TinyAug]:
    monkeypatch.setitem(DATASETS._items, "tiny_aug", TinyAug)
    monkeypatch.setitem(DEFAULTS, "tiny_aug", DataDefaults((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 1, True))
    return TinyAug


def tiny_run(out, *extra: str) -> int:
    return run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--generations", "1",
                   "--data", '{"name": "tiny_aug", "batch_size": 16, "eval_batch_size": 24}', "--backbone", TINY_NET,
                   "--trainer.enable_progress_bar", "false", *extra)


# -- replay: the student trains on exactly the views its teacher scored --------------------------------------------
def test_replay_student_batches_are_the_views_the_teacher_scored(tiny_aug, tmp_path, monkeypatch):
    scored: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # (view epoch, index) -> (view, logits)
    seen: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (epoch, index, x, teacher logits)
    predict, train = GenerationModule.predict_step, GenerationModule.training_step

    def recording_predict(self, batch, batch_idx, dataloader_idx=0):
        out = predict(self, batch, batch_idx, dataloader_idx)
        if len(batch) == 4 and self.hparams.generation == 0:  # gen-0's replay cache build: (x, y, index, view)
            for x, i, e, z in zip(batch[0], batch[2].tolist(), batch[3].tolist(), out, strict=True):
                scored[(e, i)] = (x.clone(), z.clone())
        return out

    def recording_train(self, batch, batch_idx):
        if self.hparams.generation == 1:
            x, _, index = batch
            seen.append((self.current_epoch, index.clone(), x.clone(), self.teacher(x, index).logits.clone()))
        return train(self, batch, batch_idx)

    monkeypatch.setattr(GenerationModule, "predict_step", recording_predict)
    monkeypatch.setattr(GenerationModule, "training_step", recording_train)
    assert tiny_run(tmp_path / "run", "--trainer.max_epochs", "3", "--cache.mode", "replay", "--cache.epochs", "2",
                    "--cache.dtype", "float32") == 0

    assert sorted(scored) == [(e, i) for e in range(2) for i in range(64)]  # every view scored once
    differ = [not torch.equal(scored[(0, i)][0], scored[(1, i)][0]) for i in range(64)]
    assert sum(differ) > 48  # the two view epochs really are different augmentations
    assert sorted({epoch for epoch, *_ in seen}) == [0, 1, 2]  # epoch 2 cycles back to view epoch 0
    for epoch, index, x, teacher in seen:
        for j, i in enumerate(index.tolist()):
            view, logits = scored[(epoch % 2, i)]
            assert torch.equal(x[j], view), (epoch, i)  # bit-identical augmented view
            assert torch.equal(teacher[j], logits), (epoch, i)  # the score of that view (float32 cache: exact)
    manifest = json.loads((tmp_path / "run" / "cache" / "gen-0" / "manifest.json").read_text())
    assert manifest["mode"] == "replay" and manifest["view_epochs"] == 2 and manifest["shape"] == [2, 64, 4]
    assert manifest["view_seed"] == replay_seed(0) and manifest["augmentation"] == "random_crop(padding=1), hflip(0.5)"


def test_replay_views_cycle_while_the_order_moves_on():
    s = EpochBatchSampler(20, 8, seed=3, view_seed=99, view_epochs=3)
    orders, views = [], []
    for t in range(7):
        s.set_epoch(t)
        keys = list(s)
        orders.append(torch.cat([k.indices for k in keys]))
        views.append({(k.epoch, k.seed) for k in keys})
    assert views == [{(t % 3, 99)} for t in range(7)]
    assert not torch.equal(orders[0], orders[3])  # same views as epoch 0, a new order
    plain = EpochBatchSampler(20, 8, seed=3)
    plain.set_epoch(5)
    assert {(k.epoch, k.seed) for k in plain} == {(5, 3)}  # without replay: every epoch its own views


def test_set_views_drives_the_training_loader_and_view_set_matches_it(tiny_aug):
    dm = TinyAug(batch_size=16, eval_batch_size=24, seed=5)
    dm.setup()
    dm.set_views(11, 2)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(3)
    x, _, index = next(iter(loader))
    views = ViewSet(dm.train_set, 2, 11)
    expect = views.__getitems__((64 + index).tolist())  # view epoch 3 % 2 = 1
    assert torch.equal(x, expect[0]) and torch.equal(expect[3], torch.ones_like(index))
    dm.set_views(None)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(3)
    assert {k.epoch for k in loader.sampler} == {3}


def test_replay_needs_an_augmenting_in_memory_dataset(tiny_aug, tmp_path):
    with pytest.raises(DataError, match="crop_padding 0, no hflip"):
        TinyAug(crop_padding=0, hflip=False).check_views()
    code = run_cli("run", "recipes/digits-ban.yaml", "--out", str(tmp_path / "d"), "--cache.mode", "replay")
    assert code == 2 and not (tmp_path / "d" / "gen-0" / "model.ckpt").exists()  # refused before any training


# -- top-k: a proper probability vector, exact for k = C ------------------------------------------------------------
def test_topk_reconstructs_a_probability_vector():
    logits = torch.randn(64, 12, generator=torch.Generator().manual_seed(0)) * 4
    p = F.softmax(logits, dim=1)
    for k in (1, 3, 11):
        fmt = TopKFormat(12, k=k)
        rows = fmt.encode(logits)
        q = F.softmax(fmt.decode(rows), dim=1)
        assert torch.allclose(q.sum(1), torch.ones(64), atol=1e-6)
        top = p.topk(k, dim=1)
        assert torch.allclose(q.gather(1, top.indices), top.values, rtol=2e-3, atol=1e-6)  # top-k kept
        rest = torch.ones_like(p, dtype=torch.bool).scatter(1, top.indices, False)
        spread = ((1 - top.values.sum(1)) / (12 - k))[:, None].expand_as(p)
        assert torch.allclose(q[rest], spread[rest], atol=3e-4)  # spread evenly (from the float16-rounded top-k mass)
        assert torch.equal(q[rest].view(64, 12 - k).amin(1), q[rest].view(64, 12 - k).amax(1))
    full = build_format("topk", 12, "float16", 12)
    assert torch.allclose(F.softmax(full.decode(full.encode(logits)), dim=1), p, rtol=2e-3, atol=1e-6)
    assert torch.isfinite(full.decode(full.encode(logits * 1e4))).all()  # saturated teachers stay finite


def test_bytes_per_view():
    assert FORMATS.get("topk")(100, "float16", 10).bytes_per_view == 40
    assert build_format("full", 100, "float32", None).bytes_per_view == 400
    assert build_format("full", 100, "float16", None).bytes_per_view == 200
    with pytest.raises(CacheError, match="cache.topk must be in"):
        build_format("topk", 10, "float16", 11)


class TableModel(L.LightningModule):
    """predict_step returns a fixed table's logits for (view, index), so a written cache can be checked exactly."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table, self.dummy = table, torch.nn.Linear(1, 1)

    def predict_step(self, batch, batch_idx):
        return self.table[batch[3], batch[2]] if len(batch) == 4 else self.table[0, batch[2]]


def build(tmp_path, dm, layout: CacheLayout, table: torch.Tensor, name: str = "cache") -> None:
    writer = CacheWriter(tmp_path / name, 64, 4, "float16", {"generation": 0, "teacher_checkpoint": "t",
                                                             "teacher_sha256": "abc", "dataset": dm.fingerprint()},
                         layout)
    L.Trainer(**QUIET, callbacks=[writer]).predict(TableModel(table), build_loader(dm, layout),
                                                      return_predictions=False)


def test_topk_replay_cache_round_trip_and_layout_mismatches(tiny_aug, tmp_path):
    dm = TinyAug(eval_batch_size=24)
    dm.setup()
    table = torch.randn(3, 64, 4, generator=torch.Generator().manual_seed(2)) * 3
    layout = CacheLayout(mode="replay", format="topk", topk=4, view_epochs=3, view_seed=7, augmentation="a")
    build(tmp_path, dm, layout, table)
    fp = dm.fingerprint()
    cache = SoftLabelCache(tmp_path / "cache", fp, "abc", layout)
    assert cache.views == 3 and len(cache) == 64 and cache.nbytes == 3 * 64 * 16
    index = torch.tensor([5, 63, 0, 5])
    for epoch in range(5):  # epochs past E read view epoch % E
        got = F.softmax(cache.lookup(index, epoch), dim=1)
        assert torch.allclose(got, F.softmax(table[epoch % 3, index], dim=1), rtol=2e-3, atol=1e-5)
    resident = SoftLabelCache(tmp_path / "cache", fp, "abc", layout).to_device("cpu")
    assert torch.equal(resident.lookup(index, 4), cache.lookup(index, 4))  # same gather, from tensors
    mean_p = F.softmax(table, dim=2).mean(0)
    assert np.allclose(np.exp(cache.array), mean_p.numpy(), rtol=3e-3, atol=1e-5)  # per-sample view for inspection
    for change in ({"view_seed": 8}, {"view_epochs": 2}, {"topk": 3}, {"format": "full", "topk": None},
                   {"mode": "clean", "view_epochs": None, "view_seed": None, "augmentation": None}):
        key = next(iter(change))
        with pytest.raises(CacheMismatchError, match=f"cache {key}="):
            SoftLabelCache(tmp_path / "cache", fp, "abc", CacheLayout(**{**layout.__dict__, **change}))
    SoftLabelCache(tmp_path / "cache", fp, "abc")  # no expectation: any layout reads


def test_clean_topk_cache_sums_to_one_and_matches_full_for_k_equal_c(tiny_aug, tmp_path):
    dm = TinyAug(eval_batch_size=24)
    dm.setup()
    table = torch.randn(1, 64, 4, generator=torch.Generator().manual_seed(3)) * 3
    build(tmp_path, dm, CacheLayout(format="topk", topk=4), table, "topk")
    build(tmp_path, dm, CacheLayout(), table, "full")
    topk = SoftLabelCache(tmp_path / "topk", dm.fingerprint(), "abc", CacheLayout(format="topk", topk=4))
    full = SoftLabelCache(tmp_path / "full", dm.fingerprint(), "abc", CacheLayout())
    p, q = F.softmax(topk.all(), dim=1), F.softmax(full.all(), dim=1)
    assert torch.allclose(p.sum(1), torch.ones(64), atol=1e-6) and torch.allclose(p, q, rtol=3e-3, atol=1e-4)
    assert json.loads((tmp_path / "topk" / "manifest.json").read_text())["format"] == "topk"


# -- end to end --------------------------------------------------------------------------------------------------
def test_topk_run_with_channels_last_end_to_end(tiny_aug, tmp_path):
    out = tmp_path / "topk"
    assert tiny_run(out, "--trainer.max_epochs", "1", "--cache.format", "topk", "--cache.topk", "2",
                    "--speed.channels_last", "true") == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["generations"][1]["teacher"] == "gen-0" and np.isfinite(s["generations"][1]["test"]["nll"])
    manifest = json.loads((out / "cache" / "gen-0" / "manifest.json").read_text())
    assert (manifest["format"], manifest["topk"], manifest["mode"], manifest["shape"]) == ("topk", 2, "clean", [64])
    code = run_cli("run", "--resume", "--force", "--out", str(out), "--cache.format", "full")
    assert code == 2  # an intact cache of another format is a mismatch, never silently replaced


def test_speed_keys_keep_outputs_and_parameter_names():
    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                                   torch.nn.Linear(8 * 36, 5)).eval()

    x = torch.randn(4, 3, 8, 8)
    plain = net()
    fast = apply_speed(net(), SpeedConfig(channels_last=True))
    assert fast[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(fast(x), plain(x), atol=1e-5)
    compiled = apply_speed(net(), SpeedConfig(compile=True))  # compiles lazily, at the first call (not run here)
    assert list(compiled.state_dict()) == list(plain.state_dict())  # checkpoints keep their parameter names


def test_view_set_is_independent_of_batch_composition(tiny_aug):
    dm = TinyAug()
    dm.setup()
    views = ViewSet(dm.train_set, 2, 4)
    whole = views.__getitems__(list(range(128)))
    parts = [views.__getitems__(chunk.tolist()) for chunk in torch.arange(128).split(37)]  # straddling batches
    for j in range(4):
        assert torch.equal(torch.cat([p[j] for p in parts]), whole[j])
    assert torch.equal(whole[3], torch.arange(128) // 64) and torch.equal(whole[2], torch.arange(128) % 64)
