"""Teacher embeddings in the soft-label cache (``cache.embeddings``): what is stored (the teacher's pre-logit
embedding, checked against the network here), how it is verified and served (cached and online alike, through
``ModelOutput.features["embedding"]``), the one-line refusals, the embedding losses training from it on digits and
Fashion-MNIST, replayed views, and CRD killed mid-student and resumed."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_data import needs_fashion

from distill.cache import CacheError, CacheLayout, CacheMismatchError, SoftLabelCache, sha256_file
from distill.generations import build_datamodule
from distill.outputs import EMBEDDING, EMBEDDING_BANK
from distill.tasks.born_again import load_student
from distill.teachers import CachedTeacher, OnlineTeacher

RECIPE = "recipes/digits-ban.yaml"
FASHION = "recipes/fashion-mnist-ban.yaml"
TINY = ["--generations", "1", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.log_every_n_steps", "1"]
DIGITS = ["--data.train_subset", "300", *TINY, "--trainer.max_epochs", "6"]  # 30 steps: enough to beat chance
EXPECTED_TERMS = {"rkd": ["distance", "angle"], "pkt": ["pkt"], "sp": ["sp"], "crd": ["student_anchor",
                                                                                   "teacher_anchor"]}
CRD_SMALL = ["--kd.init_args.negatives", "256"]


def _variant_args(variant: str) -> list[str]:
    return ["--kd.variant", variant, "--cache.embeddings", "true", *(CRD_SMALL if variant == "crd" else [])]


@pytest.fixture(scope="module")
def rkd_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("emb") / "rkd"
    assert run_cli("run", RECIPE, "--out", str(out), *DIGITS, *_variant_args("rkd")) == 0
    return out


def _embeddings_of(run, k: int = 0) -> tuple[np.ndarray, object]:
    """The pre-logit embedding of generation k's network over the un-augmented training set, computed here with
    timm's ``forward_features`` + ``forward_head(pre_logits=True)`` (not the engine's hook)."""
    config = json.loads((run / "summary.json").read_text())
    assert config["generations"][k]["backbone"] == "small_cnn"
    dm = build_datamodule({"name": "digits", "train_subset": 300})
    net = load_student(run / f"gen-{k}" / "model.ckpt", "small_cnn", dm.num_classes, dm.in_chans)
    x = torch.stack([dm.cache_set[i][0] for i in range(len(dm.cache_set))])
    with torch.no_grad():
        return net.forward_head(net.forward_features(x), pre_logits=True).numpy(), (dm, net, x)


def test_the_cache_stores_the_teachers_pre_logit_embedding(rkd_run):
    cache = rkd_run / "cache" / "gen-0"
    manifest = json.loads((cache / "manifest.json").read_text())
    stored = np.load(cache / "embeddings.npy", allow_pickle=False)
    want, _ = _embeddings_of(rkd_run)
    assert manifest["embeddings"] is True and manifest["embedding_dtype"] == "float16"
    assert manifest["embedding_shape"] == [300, want.shape[1]] == list(stored.shape) and stored.dtype == np.float16
    assert manifest["embedding_sha256"] == sha256_file(cache / "embeddings.npy")
    np.testing.assert_allclose(stored.astype(np.float32), want, rtol=2e-3, atol=2e-3)  # float16 rounding
    assert np.abs(want).max() > 0.1  # not a vector of zeros


def test_cached_and_online_teachers_serve_the_same_embedding(rkd_run):
    """Digits has no augmentation, so the teacher run online on a batch gives what the cache holds for it."""
    want, (dm, net, x) = _embeddings_of(rkd_run)
    cache = SoftLabelCache(rkd_run / "cache" / "gen-0", dm.fingerprint(), None)
    assert isinstance(cache.embeddings, np.memmap)  # memory-mapped, not read into memory
    index = torch.tensor([5, 0, 299, 17])
    cached = CachedTeacher([cache], features=(EMBEDDING,))(x[index], index)
    online = OnlineTeacher([net], features=(EMBEDDING,))(x[index], index)
    assert cached.features[EMBEDDING].dtype == torch.float32
    torch.testing.assert_close(cached.features[EMBEDDING], online.features[EMBEDDING], rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(online.features[EMBEDDING], torch.from_numpy(want[index.numpy()]))
    banked = CachedTeacher([cache], features=(EMBEDDING, EMBEDDING_BANK))(x[index], index)
    assert len(banked.bank) == 300 and torch.equal(banked.index, index)
    torch.testing.assert_close(banked.bank(torch.tensor([299])), cached.features[EMBEDDING][2:3])


def test_a_damaged_or_missing_embeddings_file_is_refused(rkd_run, tmp_path):
    import shutil
    dm = build_datamodule({"name": "digits", "train_subset": 300})
    copy = tmp_path / "gen-0"
    shutil.copytree(rkd_run / "cache" / "gen-0", copy)
    data = bytearray((copy / "embeddings.npy").read_bytes())
    data[-1] ^= 0xFF
    (copy / "embeddings.npy").write_bytes(bytes(data))
    with pytest.raises(CacheError, match="embeddings .* checksum"):
        SoftLabelCache(copy, dm.fingerprint(), None)
    (copy / "embeddings.npy").unlink()
    with pytest.raises(CacheError, match="embeddings .* missing"):
        SoftLabelCache(copy, dm.fingerprint(), None)


def test_a_cache_with_embeddings_serves_a_reader_without_them_but_not_the_reverse(rkd_run, tiny_run):
    dm = build_datamodule({"name": "digits", "train_subset": 300})
    with_embeddings = SoftLabelCache(rkd_run / "cache" / "gen-0", dm.fingerprint(), None, CacheLayout())
    assert with_embeddings.embeddings is not None
    plain = tiny_run / "cache" / "gen-0"
    with pytest.raises(CacheMismatchError, match="embeddings=False"):
        SoftLabelCache(plain, dm.fingerprint(), None, CacheLayout(embeddings=True))


def _term_means(run, terms: list[str]) -> dict[str, list[float]]:
    """Per-epoch means of each logged loss term of generation 1 (every step is logged)."""
    with open(run / "gen-1" / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for name in ["loss", *terms]:
        by_epoch: dict[int, list[float]] = {}
        for r in rows:
            if r.get(f"train/{name}"):
                by_epoch.setdefault(int(r["epoch"]), []).append(float(r[f"train/{name}"]))
        out[name] = [sum(v) / len(v) for _, v in sorted(by_epoch.items())]
    return out


@pytest.mark.parametrize("variant", ["rkd", "pkt", "sp", "crd"])
def test_embedding_losses_train_from_the_cache_on_digits(variant, tmp_path, rkd_run):
    """Each loss trains a student from the cached embeddings (no teacher forward pass); its terms are logged and
    finite, the total falls from the first epoch to the last, and the student is far above chance (10%)."""
    out = rkd_run if variant == "rkd" else tmp_path / variant
    if variant != "rkd":
        assert run_cli("run", RECIPE, "--out", str(out), *DIGITS, *_variant_args(variant)) == 0
    means = _term_means(out, EXPECTED_TERMS[variant])
    assert all(math.isfinite(v) for values in means.values() for v in values), means
    assert means["loss"][-1] < means["loss"][0], means
    summary = json.loads((out / "summary.json").read_text())
    assert summary["generations"][1]["test"]["acc"] > 0.5


@needs_fashion
@pytest.mark.parametrize("variant", ["rkd", "pkt", "sp", "crd"])
def test_embedding_losses_train_from_the_cache_on_fashion_mnist(variant, tmp_path):
    out = tmp_path / variant
    assert run_cli("run", FASHION, "--out", str(out), "--data.train_subset", "400", *TINY,
                   "--trainer.max_epochs", "6", *_variant_args(variant)) == 0
    means = _term_means(out, EXPECTED_TERMS[variant])
    assert all(math.isfinite(v) for values in means.values() for v in values), means
    assert means["loss"][-1] < means["loss"][0], means
    assert json.loads((out / "summary.json").read_text())["generations"][1]["test"]["acc"] > 0.3  # chance: 0.1


@needs_fashion
def test_replayed_views_each_get_their_embedding(tmp_path):
    """cache.mode replay: one embedding per (view epoch, sample); two views of a sample differ (augmented), and the
    student trains on them with CRD (negatives read from the same view epoch)."""
    out = tmp_path / "replay"
    assert run_cli("run", FASHION, "--out", str(out), "--data.train_subset", "200", *TINY,
                   "--data.crop_padding", "2", "--cache.mode", "replay", "--cache.epochs", "2",
                   *_variant_args("crd")) == 0
    manifest = json.loads((out / "cache" / "gen-0" / "manifest.json").read_text())
    stored = np.load(out / "cache" / "gen-0" / "embeddings.npy", allow_pickle=False)
    assert manifest["view_epochs"] == 2 and manifest["embedding_shape"] == list(stored.shape)
    assert stored.shape[:2] == (2, 200)
    assert not np.array_equal(stored[0], stored[1])


@pytest.mark.parametrize("args, needle", [
    (["--kd.variant", "rkd"], "--cache.embeddings true"),
    (["--kd.variant", "crd", "--cache.mode", "online"], "memory bank"),
    (["--kd.variant", "sp", "--cache.embeddings", "true", "--kd.teacher", "ensemble"], "ensemble"),
    (["--kd.variant", "rkd", "--cache.embeddings", "true", "--trainer.devices", "2", "--trainer.strategy", "ddp"],
     "one process"),
])
def test_a_cache_that_cannot_serve_the_embeddings_is_one_line_before_the_run(args, needle, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *DIGITS, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and needle in err, err
    assert not out.exists()


def test_crd_student_killed_mid_training_resumes_exactly(tmp_path):
    """Killed after epoch 0 of the student: the epoch checkpoint carries CRD's heads, student memory and Z, and the
    resumed run ends exactly like an uninterrupted one (same student, same memory)."""
    args = [*DIGITS, "--data.train_subset", "200", "--trainer.max_epochs", "2", *_variant_args("crd")]
    ref = tmp_path / "ref"
    assert run_cli("run", RECIPE, "--out", str(ref), *args) == 0
    out = tmp_path / "run"
    env = {**os.environ, "DISTILL_FAULT": "fit:1:epoch:0"}
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", RECIPE, "--out", str(out), *args], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    last = torch.load(out / "gen-1" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert {"loss.memory", "loss.log_z", "loss.embed_s.weight", "loss.embed_t.weight"} <= set(last)
    assert torch.isfinite(last["loss.log_z"]).all()
    assert run_cli("run", "--out", str(out), "--resume") == 0
    a = torch.load(ref / "gen-1" / "model.ckpt", weights_only=True)["state_dict"]
    b = torch.load(out / "gen-1" / "model.ckpt", weights_only=True)["state_dict"]
    assert "loss.memory" in a and set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
