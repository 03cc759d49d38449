"""Lightning DDP: a 2-process CPU (gloo) run through the command line trains, and builds the same cache as one process.

The run is a subprocess (``python -m distill.cli run ... --trainer.strategy ddp --trainer.devices 2``): Lightning's
launcher re-runs that command line in a second process, which cannot happen inside pytest. The sharded cache build
is also checked in-process with two simulated ranks (gaps and duplicates across ranks are caught).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from conftest import run_cli

from distill.cache import CacheError, CacheLayout, CacheWriter, Manifest, SoftLabelCache, sha256_file
from distill.config import parse_recipe
from distill.distributed import RANK_VARIABLES
from distill.generations import BornAgainRun, build_datamodule
from distill.resolve import resolve_run
from distill.tasks.born_again import load_student

ROOT = Path(__file__).resolve().parents[1]
SUBSET, BATCH = 300, 64
ARGS = ["--data.train_subset", str(SUBSET), "--data.eval_batch_size", "128", "--generations", "1",
        "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
DDP = ["--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished gen-0 + 1 student digits run trained by 2 DDP processes; returns (run directory, its output)."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    env = {k: v for k, v in os.environ.items() if k not in (*RANK_VARIABLES, "WORLD_SIZE", "DISTILL_FAULT")}
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", "recipes/digits-ban.yaml", "--out", str(out),
                           *ARGS, *DDP], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return out, output


def test_ddp_run_trains_every_generation_on_two_ranks(ddp_run):
    out, output = ddp_run
    assert "MEMBER: 2/2" in output  # the second rank really joined
    summary = json.loads((out / "summary.json").read_text())
    assert [g["generation"] for g in summary["generations"]] == [0, 1]
    assert all(math.isfinite(g["test"]["nll"]) and 0 <= g["test"]["acc"] <= 1 for g in summary["generations"])
    assert summary["generations"][1]["agreement_with_teacher"] is not None
    assert [e["members"] for e in summary["ensembles"]] == [[0, 1]]
    state = json.loads((out / "state.json").read_text())
    assert sorted(state["generations"]) == sorted(state["caches"]) == ["0", "1"]
    # Each rank trained on its half of the 300 samples: ceil(150 / 64) = 3 steps an epoch (one process: 5).
    ckpt = torch.load(out / "gen-0" / "model.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == math.ceil(SUBSET / 2 / BATCH) and ckpt["epoch"] == 1
    for k in (0, 1):  # only the final cache files: no shard, no temporary array
        assert sorted(p.name for p in (out / "cache" / f"gen-{k}").iterdir()) == ["logits.npy", "manifest.json"]


def test_ddp_cache_and_test_logits_equal_a_single_process_build(ddp_run, tmp_path):
    out, _ = ddp_run
    cfg = parse_recipe(str(out / "config.yaml"), [])
    dm = build_datamodule(cfg.data)
    ckpt = out / "gen-0" / "model.ckpt"
    ddp_cache = SoftLabelCache(out / "cache" / "gen-0", dm.fingerprint(), sha256_file(ckpt), CacheLayout())

    # The same checkpoint scored by one process through the same writer.
    run = BornAgainRun(resolve_run(cfg), out, "digits-ban", dm=dm)
    module = run.restore(run.specs[0])
    fields = {k: getattr(ddp_cache.manifest, k) for k in ("generation", "teacher_checkpoint", "teacher_sha256",
                                                          "dataset")}
    writer = CacheWriter(tmp_path / "single", len(dm.cache_set), dm.num_classes, "float16", fields)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[writer])
    trainer.predict(module, dm.cache_dataloader(), return_predictions=False)
    single = SoftLabelCache(tmp_path / "single", dm.fingerprint(), sha256_file(ckpt), CacheLayout())

    assert ddp_cache.stored.shape == single.stored.shape == (SUBSET, 10)
    assert ddp_cache.stored.dtype == single.stored.dtype == np.float16
    np.testing.assert_allclose(ddp_cache.all().numpy(), single.all().numpy(), atol=1e-3, rtol=0)

    # A direct forward pass in dataset order agrees too, and so do the gathered test-set logits.
    model = load_student(ckpt, "small_cnn", dm.num_classes, dm.in_chans)
    with torch.no_grad():
        direct = model(dm.cache_set.images)
        test = model(dm.test_set.images)
    np.testing.assert_allclose(ddp_cache.all().numpy(), direct.numpy(), atol=1e-2, rtol=1e-3)  # float16 storage
    np.testing.assert_allclose(np.load(out / "gen-0" / "test_logits.npy"), test.numpy(), atol=1e-4, rtol=1e-4)


def _ranks(world: int) -> list[SimpleNamespace]:
    """Stand-ins for the trainers of ``world`` ranks (barrier and broadcast are no-ops)."""
    strategy = SimpleNamespace(barrier=lambda name=None: None, broadcast=lambda obj, src=0: obj)
    return [SimpleNamespace(world_size=world, global_rank=r, is_global_zero=r == 0, strategy=strategy)
            for r in range(world)]


def _sharded_build(directory: Path, layout: CacheLayout, shares: list[list[tuple[int, int]]]) -> None:
    """Rank r scores the views ``shares[r]`` (pairs (view epoch, index)) of a 2 x 5 replay cache; logit = 10 e + i."""
    fields = {"generation": 0, "teacher_checkpoint": "gen-0/model.ckpt", "teacher_sha256": "0" * 64,
              "dataset": {"name": "toy"}}
    trainers = _ranks(len(shares))
    writers = [CacheWriter(directory, 5, 3, "float32", fields, layout) for _ in shares]
    for w, t in zip(writers, trainers, strict=True):
        w.on_predict_start(t, None)
    for w, t, share in zip(writers, trainers, shares, strict=True):
        e, i = (torch.tensor(v) for v in zip(*share, strict=True))
        logits = (10.0 * e + i).float()[:, None].repeat(1, 3)
        w.write_on_batch_end(t, None, logits, None, (None, None, i, e), 0)
    for w, t in reversed(list(zip(writers, trainers, strict=True))):  # rank 0, which merges, finishes last
        w.on_predict_end(t, None)


def test_sharded_cache_build_merges_every_rank_and_checks_exactly_once(tmp_path):
    layout = CacheLayout(mode="replay", view_epochs=2, view_seed=0, augmentation="toy")
    views = [(e, i) for e in range(2) for i in range(5)]
    _sharded_build(tmp_path / "ok", layout, [views[0::2], views[1::2]])
    array = np.load(tmp_path / "ok" / "logits.npy")
    assert array.shape == (2, 5, 3)
    np.testing.assert_array_equal(array[..., 0], 10 * np.arange(2)[:, None] + np.arange(5))
    assert Manifest.read(tmp_path / "ok").layout == layout
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["logits.npy", "manifest.json"]

    with pytest.raises(CacheError, match="1 rows zero times and 1 more than once"):  # (0, 0) twice, (1, 4) never
        _sharded_build(tmp_path / "dup", layout, [views[0::2], [(0, 0), *views[1:-1:2]]])
    assert not (tmp_path / "dup" / "manifest.json").exists() and not list((tmp_path / "dup").glob(".shard-*"))


def test_spawning_strategies_are_refused_in_one_line(tmp_path, capsys):
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(tmp_path / "run"), *ARGS,
                   "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp_spawn", "--trainer.devices", "2") == 2
    err = capsys.readouterr().err
    assert "--trainer.strategy ddp" in err and len(err.strip().splitlines()) == 1


def test_ddp_at_two_steps_per_call_trains_as_one(ddp_run, tmp_path):
    """Each of the K backwards of a call synchronises the gradients: 2 ranks at K = 2 end with K = 1's weights (each
    rank's 3 batches an epoch are a call of 2 and a short call of 1)."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in (*RANK_VARIABLES, "WORLD_SIZE", "DISTILL_FAULT")}
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", "recipes/digits-ban.yaml", "--out", str(out),
                           *ARGS, *DDP, "--speed.steps_per_call", "2"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    for k in (0, 1):
        one, two = (torch.load(run / f"gen-{k}" / "model.ckpt", map_location="cpu", weights_only=True)
                    for run in (ddp_run[0], out))
        assert one["global_step"] == two["global_step"] == math.ceil(SUBSET / 2 / BATCH)
        for key, value in one["state_dict"].items():
            torch.testing.assert_close(two["state_dict"][key], value, atol=1e-6, rtol=0, msg=key)
