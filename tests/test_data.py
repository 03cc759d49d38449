"""Data modules: real Fashion-MNIST, a tiny image folder, per-index deterministic augmentation, both pipelines."""

from __future__ import annotations

import inspect
import io
import tarfile
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from distill.data import (
    DATASETS,
    DataError,
    DistillDataModule,
    augment_batch,
    data_root,
    ensure_cifar10_jpeg,
    view_params,
)
from distill.data.defaults import DEFAULTS, AugmentSpec
from distill.data.memory import EpochBatchSampler, MemoryImageSet

FASHION = data_root() / "fashion-mnist"
needs_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(),
                                   reason=f"Fashion-MNIST idx files not found in {FASHION} (set DISTILL_DATA)")
SPEC = AugmentSpec(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), crop_padding=3, hflip=True)
QUIET = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
             accelerator="cpu", devices=1)


@pytest.fixture(scope="module")
def fashion():
    """Fashion-MNIST on the memory path (setup once: reading the gzip files takes a moment)."""
    dm = DATASETS.get("fashion_mnist")(batch_size=64, eval_batch_size=256, seed=3)
    dm.setup("fit")
    return dm


def make_folder(root: Path, classes=("cat", "dog", "owl"), n_train=5, n_test=2, size=(10, 12), val=False) -> Path:
    """Tiny random image folder (PNG, exact pixels) with ``n_train``/``n_test`` images per class."""
    rng = np.random.default_rng(0)
    for split, n in [("train", n_train), ("test", n_test)] + ([("val", 2)] if val else []):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i:03d}.png")
    (root / "train" / "cat" / "notes.txt").write_text("ignored: not an image")
    return root


def folder_dm(root: Path, **kw):
    return DATASETS.get("imagefolder")(root=str(root), batch_size=4, eval_batch_size=5, **kw)


# -- augmentation: a pure function of (seed, epoch, index) -----------------------------------------------------------
def reference_view(img: torch.Tensor, top: int, left: int, flip: bool, spec: AugmentSpec) -> torch.Tensor:
    p, (_, h, w) = spec.crop_padding, img.shape
    out = torch.nn.functional.pad(img, (p, p, p, p))[:, top:top + h, left:left + w]
    out = out.flip(-1) if flip else out
    mean, std = torch.tensor(spec.mean).view(-1, 1, 1), torch.tensor(spec.std).view(-1, 1, 1)
    return (out.float() / 255 - mean) / std


def test_augment_batch_matches_a_per_sample_reference_and_ignores_batch_composition():
    images = torch.randint(0, 256, (20, 3, 9, 7), dtype=torch.uint8)
    idx = torch.arange(100, 120)
    full = augment_batch(images, idx, epoch=4, seed=11, spec=SPEC)
    top, left, flip = view_params(idx, 4, 11, SPEC)
    assert top.min() >= 0 and top.max() <= 6 and left.max() <= 6 and 0 < flip.sum() < 20
    for j in range(20):
        ref = reference_view(images[j], int(top[j]), int(left[j]), bool(flip[j]), SPEC)
        assert torch.allclose(full[j], ref, atol=1e-6)
    perm = torch.randperm(20)[:7]  # other batch composition and order: same view per sample
    assert torch.equal(augment_batch(images[perm], idx[perm], 4, 11, SPEC), full[perm])
    assert torch.equal(augment_batch(images[3:4], idx[3:4], 4, 11, SPEC), full[3:4])


def test_views_change_with_epoch_and_seed_but_not_with_repetition():
    idx = torch.arange(1000)
    a = torch.stack(view_params(idx, 0, 0, SPEC))
    assert torch.equal(a, torch.stack(view_params(idx, 0, 0, SPEC)))
    for other in (torch.stack(view_params(idx, 1, 0, SPEC)), torch.stack(view_params(idx, 0, 1, SPEC))):
        assert (a != other).any(0).float().mean() > 0.9  # nearly every sample gets another view
    top = a[0]
    assert torch.bincount(top, minlength=7).min() > 100  # offsets spread over [0, 2p]


def test_epoch_batch_sampler_order_is_seeded_per_epoch():
    s = EpochBatchSampler(10, 4, seed=5)
    e0 = [k.indices for k in s]
    assert [len(i) for i in e0] == [4, 4, 2] and len(s) == 3 and sorted(torch.cat(e0).tolist()) == list(range(10))
    assert torch.equal(torch.cat(e0), torch.cat([k.indices for k in s]))
    s.set_epoch(1)
    keys = list(s)
    assert all(k.epoch == 1 for k in keys) and not torch.equal(torch.cat(e0), torch.cat([k.indices for k in keys]))


class CheckViews(L.LightningModule):
    """Asserts each training batch is exactly augment_batch(images[idx], idx, current_epoch, seed, spec)."""

    def __init__(self, store: MemoryImageSet) -> None:
        super().__init__()
        self.store, self.lin = store, torch.nn.Linear(1, 1)
        self.orders: dict[int, list[int]] = {}

    def training_step(self, batch, _):
        x, y, idx = batch
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and idx.dtype == torch.int64
        expected = augment_batch(self.store.images[idx], idx, self.current_epoch, self.store.seed, self.store.spec)
        assert torch.equal(x, expected) and torch.equal(y, self.store.labels[idx])
        self.orders.setdefault(self.current_epoch, []).extend(idx.tolist())
        return self.lin(x.mean((1, 2, 3))[:, None]).sum()

    def validation_step(self, batch, _):
        self.log("val_seen", float(len(batch[0])))

    def predict_step(self, batch, _):
        return batch[2]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_drives_the_epoch_and_predict_and_validation_work(tmp_path):
    dm = folder_dm(make_folder(tmp_path), pipeline="memory", seed=7, val_fraction=0.2)
    dm.setup("fit")
    model = CheckViews(dm.train_set)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(max_epochs=3, **QUIET).fit(model, datamodule=dm)
        preds = L.Trainer(**QUIET).predict(model, dm.cache_dataloader())
    assert sorted(model.orders) == [0, 1, 2] and model.orders[0] != model.orders[1]
    assert all(sorted(o) == list(range(len(dm.train_set))) for o in model.orders.values())
    assert torch.cat(preds).tolist() == list(range(len(dm.cache_set)))
    assert dm.has_val and len(dm.val_set) == 3 and dm.train_seed == 7


def test_no_val_split_means_an_empty_list_that_lightning_skips(tmp_path):
    dm = folder_dm(make_folder(tmp_path), pipeline="memory")
    assert dm.val_dataloader() == [] and not dm.has_val and len(dm.val_labels()) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        L.Trainer(max_epochs=1, limit_train_batches=1, **QUIET).fit(CheckViews(dm.train_set), datamodule=dm)
    assert DATASETS.get("digits")().val_dataloader() == []


# -- image folder ----------------------------------------------------------------------------------------------------
def test_imagefolder_layout_classes_and_both_pipelines_agree(tmp_path):
    root = make_folder(tmp_path)
    mem, tv = folder_dm(root, pipeline="memory"), folder_dm(root, pipeline="torchvision")
    assert mem.class_names == ["cat", "dog", "owl"] and mem.num_classes == 3 and mem.in_chans == 3
    assert mem.spec.crop_padding == 1 and mem.spec.hflip  # size // 8 with a 10x12 image (min side 10)
    assert mem.fingerprint() == tv.fingerprint() and len(mem.cache_set) == 15
    assert mem.train_labels().tolist() == [0] * 5 + [1] * 5 + [2] * 5 and mem.test_labels().tolist()[-1] == 2
    for a, b in zip(mem.cache_dataloader(), tv.cache_dataloader(), strict=True):
        assert a[0].shape == b[0].shape == (5, 3, 12, 10) and a[0].dtype == b[0].dtype == torch.float32
        assert (a[0] - b[0]).abs().max() < 1e-6 and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    a, b = next(iter(mem.train_dataloader())), next(iter(tv.train_dataloader()))
    assert [(t.shape, t.dtype) for t in a] == [(t.shape, t.dtype) for t in b]
    img = Image.open(root / "test" / "dog" / "001.png")
    x = mem.test_set[3][0]
    expect = (torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255 - torch.tensor(mem.spec.mean)[:, None,
              None]) / torch.tensor(mem.spec.std)[:, None, None]
    assert torch.allclose(x, expect, atol=1e-5)


def test_imagefolder_grey_resize_and_own_val_split(tmp_path):
    dm = folder_dm(make_folder(tmp_path, val=True), channels=1, image_size=8, mean=0.5, std=[0.25], crop_padding=0,
                   hflip=False)
    dm.setup("fit")
    x, y, i = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 8, 8) and dm.has_val and len(dm.val_set) == 6
    raw = dm.cache_set.images[i].float() / 255  # no augmentation: the training view is the plain image
    assert torch.allclose(x, (raw - 0.5) / 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="own validation split"):
        folder_dm(tmp_path, val_fraction=0.5).setup("fit")


@pytest.mark.parametrize("pipeline,workers", [("memory", 0), ("torchvision", 0), ("torchvision", 1)])
def test_corrupt_image_is_named_in_one_line(tmp_path, pipeline, workers):
    root = make_folder(tmp_path)
    bad = root / "train" / "dog" / "002.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    dm = folder_dm(root, pipeline=pipeline, num_workers=workers)
    with pytest.raises(DataError, match="002.png") as info:
        dm.setup("fit")
        for _ in dm.cache_dataloader():
            pass
    assert str(info.value).startswith("cannot read image") and "\n" not in str(info.value)


def test_bad_layouts_raise_one_clear_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        folder_dm(tmp_path / "missing")
    (tmp_path / "test").mkdir()
    with pytest.raises(ValueError, match="no train/"):
        folder_dm(tmp_path)
    with pytest.raises(ValueError, match="needs data.root"):
        DATASETS.get("imagefolder")()
    root = make_folder(tmp_path / "sizes")
    Image.new("RGB", (5, 5)).save(root / "train" / "owl" / "odd.png")
    with pytest.raises(ValueError, match="odd.png is 5x5"):
        folder_dm(root).setup("fit")
    for bad in ({"pipeline": "fast"}, {"val_fraction": 1.0}, {"std": [0.0]}, {"channels": 2}):
        with pytest.raises(ValueError):
            folder_dm(root, **bad)
    with pytest.raises(TypeError):
        folder_dm(root, not_an_option=1)
    with pytest.raises(ValueError, match="device"):
        folder_dm(root, pipeline="torchvision", device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            folder_dm(root, pipeline="memory", device="cuda").setup("fit")


def test_every_option_is_an_explicit_keyword():
    for name in DATASETS.names():
        for klass in DATASETS.get(name).__mro__:
            if "__init__" in vars(klass) and klass.__module__.startswith("distill."):
                params = inspect.signature(klass.__init__).parameters.values()
                assert all(p.kind != p.VAR_KEYWORD or p.name == "kwargs" for p in params), klass
    # the normalisation table covers every dataset of images (those that read as image files); text has none
    images = {n for n in DATASETS.names() if DATASETS.get(n).image_file_form is not DistillDataModule.image_file_form}
    assert set(DEFAULTS) >= images and set(DATASETS.names()) - images == {"text"}


# -- Fashion-MNIST (real files) --------------------------------------------------------------------------------------
@needs_fashion
def test_fashion_mnist_from_gzip_idx(fashion):
    assert fashion.pipeline_used == "memory" and fashion.class_names[0] == "T-shirt/top"
    assert len(fashion.cache_set) == 60000 and len(fashion.test_set) == 10000
    assert np.bincount(fashion.train_labels()).tolist() == [6000] * 10
    x, y, i = next(iter(fashion.train_dataloader()))
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == i.dtype == torch.int64
    plain = torch.cat([b[0] for _, b in zip(range(40), fashion.cache_dataloader(), strict=False)])
    assert abs(plain.mean().item()) < 0.02 and abs(plain.std().item() - 1) < 0.02  # table stats fit the data
    fp = fashion.fingerprint()
    assert fp["length"] == 60000 and fp["transform"].endswith("normalize(mean=(0.286,), std=(0.353,))")


@needs_fashion
def test_fashion_pipelines_agree_and_val_split_is_fixed_and_disjoint(fashion):
    tv = DATASETS.get("fashion_mnist")(pipeline="torchvision", eval_batch_size=256, val_fraction=0.1)
    mem = DATASETS.get("fashion_mnist")(pipeline="memory", eval_batch_size=256, val_fraction=0.1)
    tv.setup("fit")
    mem.setup("fit")
    assert len(tv.cache_set) == 54000 and len(tv.val_set) == 6000 and tv.fingerprint() == mem.fingerprint()
    a, b = next(iter(mem.cache_dataloader())), next(iter(tv.cache_dataloader()))
    assert (a[0] - b[0]).abs().max() < 1e-6 and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    a, b = next(iter(mem.val_dataloader())), next(iter(tv.val_dataloader()))
    assert (a[0] - b[0]).abs().max() < 1e-6
    # disjoint and complete: every full-set image is in exactly one split
    full = {bytes(img.numpy()) for img in fashion.cache_set.images}
    tr = {bytes(img.numpy()) for img in mem.cache_set.images}
    va = {bytes(img.numpy()) for img in mem.val_set.images}
    assert not tr & va and len(tr | va) == len(full)
    aug = next(iter(tv.train_dataloader()))
    assert aug[0].shape == (64, 1, 28, 28) and aug[0].dtype == torch.float32 and aug[2].dtype == torch.int64


@pytest.mark.slow
@pytest.mark.skipif(not (data_root() / "cifar10-jpeg.tar.gz").is_file(), reason="no cifar10-jpeg.tar.gz in data_root()")
def test_cifar10_jpeg_extracts_and_decodes_the_real_copy():
    dm = DATASETS.get("cifar10_jpeg")(train_subset=2000, eval_batch_size=1000)  # extracts once into ~/.cache/distill
    dm.setup("fit")
    assert dm.pipeline_used == "memory" and len(dm.cache_set) == 2000 and len(dm.test_set) == 10000
    assert dm.class_names[0] == "airplane" and np.bincount(dm.test_labels()).tolist() == [1000] * 10
    x = torch.cat([b[0] for b in dm.test_dataloader()])
    assert x.shape == (10000, 3, 32, 32) and abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1


# -- locations -------------------------------------------------------------------------------------------------------
def test_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILL_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.delenv("DISTILL_DATA")
    assert data_root().parts[-2:] == ("shared", "data")
    with pytest.raises(FileNotFoundError, match="idx file not found"):
        monkeypatch.setenv("DISTILL_DATA", str(tmp_path))
        DATASETS.get("fashion_mnist")().setup("fit")


def test_ensure_cifar10_jpeg_extracts_once(tmp_path):
    tarball = tmp_path / "tiny.tar.gz"
    with tarfile.open(tarball, "w:gz") as tf:
        for name in ("cifar10/train/cat/0001.jpg", "cifar10/test/cat/0001.jpg"):
            buf = io.BytesIO()
            Image.new("RGB", (32, 32)).save(buf, "JPEG")
            info = tarfile.TarInfo(name)
            info.size = len(buf.getvalue())
            tf.addfile(info, io.BytesIO(buf.getvalue()))
    root = ensure_cifar10_jpeg(tmp_path / "cache", tarball)
    assert (root / "train" / "cat" / "0001.jpg").is_file() and [p.name for p in tmp_path.iterdir()].count("cache") == 1
    tarball.unlink()
    assert ensure_cifar10_jpeg(tmp_path / "cache", tarball) == root  # no second extraction
    with pytest.raises(FileNotFoundError):
        ensure_cifar10_jpeg(tmp_path / "other", tarball)
    (tmp_path / "bad.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="cannot extract"):
        ensure_cifar10_jpeg(tmp_path / "third", tmp_path / "bad.tar.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar.gz", "cache"]  # no temp dirs left behind
