"""Crash recovery: a run SIGKILLed at any point and resumed ends with the same metrics as an uninterrupted run."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from conftest import run_cli

# 300 samples / batch 64 = 5 steps per epoch; eval batch 128 = 3 cache batches.
ARGS = ["--data.train_subset", "300", "--data.eval_batch_size", "128", "--generations", "1",
        "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false"]


def _metrics(run) -> list:
    s = json.loads((run / "summary.json").read_text())
    return [(g["test"], g["agreement_with_teacher"]) for g in s["generations"]] + [e["test"] for e in s["ensembles"]]


def _log(gen_dir) -> list:
    rows = list(csv.DictReader(open(gen_dir / "logs" / "metrics.csv")))
    return [{k: v for k, v in r.items() if "second" not in k and "time" not in k} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), *ARGS) == 0
    return out


def _killed_run(tmp_path, point: str):
    out = tmp_path / "run"
    env = {**os.environ, "DISTILL_FAULT": point}
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", "recipes/digits-ban.yaml", "--out", str(out),
                           *ARGS], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("point", ["fit:0:step:7", "cache:0:batch:1", "cached:0", "fit:1:epoch:0", "fitted:1",
                                   "trained:1"])
def test_killed_then_resumed_matches_uninterrupted(tmp_path, reference, point):
    out = _killed_run(tmp_path, point)
    assert not (out / "summary.json").exists()
    assert run_cli("run", "--out", str(out), "--resume") == 0
    assert _metrics(out) == _metrics(reference)
    for gen in ("gen-0", "gen-1"):  # the whole training log is kept, each row once (seconds aside)
        assert _log(out / gen) == _log(reference / gen), gen


def test_finished_generations_are_not_retrained(tmp_path, reference):
    out = _killed_run(tmp_path, "cached:0")
    before = (out / "gen-0" / "model.ckpt").stat().st_mtime_ns
    assert run_cli("run", "--out", str(out), "--resume") == 0
    assert (out / "gen-0" / "model.ckpt").stat().st_mtime_ns == before


def test_a_generation_killed_before_its_metrics_is_evaluated_not_retrained(tmp_path, reference):
    out = _killed_run(tmp_path, "fitted:0")  # checkpoint saved, metrics not yet written
    before = (out / "gen-0" / "model.ckpt").stat().st_mtime_ns
    assert run_cli("run", "--out", str(out), "--resume") == 0
    assert (out / "gen-0" / "model.ckpt").stat().st_mtime_ns == before
    assert _metrics(out) == _metrics(reference)


def test_a_damaged_resume_checkpoint_is_set_aside_and_the_generation_restarts(tmp_path, reference):
    out = _killed_run(tmp_path, "fit:0:epoch:1")
    last = out / "gen-0" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated after the fact
    assert run_cli("run", "--out", str(out), "--resume") == 0
    assert (out / "gen-0" / "checkpoints" / "last.ckpt.damaged").is_file()
    assert _metrics(out) == _metrics(reference)  # started over with the same seed: the same run


def test_a_retrained_generation_retrains_its_descendants(tmp_path, reference):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    ckpt = out / "gen-0" / "model.ckpt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0x01  # gen 0 is damaged: it is retrained, so gen 1 (taught by it) must be too
    ckpt.write_bytes(bytes(data))
    gen1 = (out / "gen-1" / "model.ckpt").stat().st_mtime_ns
    assert run_cli("run", "--out", str(out), "--resume") == 0
    assert (out / "gen-1" / "model.ckpt").stat().st_mtime_ns != gen1
    assert _metrics(out) == _metrics(reference)  # deterministic on CPU: the same run again


def test_resume_refuses_a_changed_recipe_unless_forced(tmp_path, reference, capsys):
    out = _killed_run(tmp_path, "cached:0")
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--resume", *ARGS, "--kd.alpha", "0.5") == 2
    err = capsys.readouterr().err
    assert "kd.alpha: None -> 0.5" in err and len(err.strip().splitlines()) == 1  # unset in the recipe
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--resume", "--force", *ARGS,
                   "--kd.alpha", "0.5") == 0


def test_resume_of_a_non_run_directory(tmp_path, capsys):
    assert run_cli("run", "--out", str(tmp_path), "--resume") == 2
    assert "not a run directory" in capsys.readouterr().err


def test_corrupted_cache_is_rebuilt_on_resume(tmp_path, reference):
    out = _killed_run(tmp_path, "cached:0")
    array = out / "cache" / "gen-0" / "logits.npy"
    data = bytearray(array.read_bytes())
    data[-1] ^= 0x55
    array.write_bytes(bytes(data))
    assert run_cli("run", "--out", str(out), "--resume") == 0
    assert _metrics(out) == _metrics(reference)


def test_nan_loss_stops_with_a_message_keeps_the_last_good_checkpoint_and_resumes_with_a_new_lr(tmp_path, capsys):
    out = _killed_run(tmp_path, "fit:0:epoch:1")  # epochs 0 and 1 done and checkpointed
    last = out / "gen-0" / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), *ARGS, "--resume", "--force",
                   "--optimizer.lr", "1e30") == 1
    err = capsys.readouterr().err
    assert "generation 0, epoch 2, step" in err and "loss is" in err and len(err.strip().splitlines()) == 1
    assert last.read_bytes() == good and not (out / "gen-0" / "model.ckpt").exists()
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), *ARGS, "--resume", "--force",
                   "--optimizer.lr", "0.05") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert all(torch.isfinite(torch.tensor(g["test"]["nll"])) for g in summary["generations"])
    ckpt = torch.load(out / "gen-0" / "model.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["optimizer"]["lr"] == 0.05 and ckpt["epoch"] == 3
