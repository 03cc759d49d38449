"""``speed.steps_per_call``: K optimizer steps per Lightning step train exactly as K = 1 does.

The reference is Lightning's own automatic loop (K = 1): every test runs the same recipe at K = 1 and K > 1 and
compares each optimizer step's loss (in order, with its batch size, global step and learning rate) and the final
weights of every generation. The epochs below are not multiples of K, so every epoch ends with a short call.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from conftest import run_cli
from test_cache_modes import TINY_NET, tiny_aug  # noqa: F401 (fixture)

from distill.config import RecipeError
from distill.data.memory import EpochBatchSampler
from distill.resolve import load_recipe
from distill.tasks.born_again import GenerationModule

# 300 digits / batch 32 = 10 batches an epoch: K = 4 trains calls of 4, 4 and 2 batches (the last one 12 samples).
DIGITS = ["--data.train_subset", "300", "--data.batch_size", "32", "--trainer.max_epochs", "2",
          "--trainer.enable_progress_bar", "false"]
PROMPTED = {"name": "prompted_vit", "init_args": {"base_args": {"img_size": 16, "patch_size": 4, "embed_dim": 24,
                                                                "depth": 3, "num_heads": 2},
                                                  "prompt": {"kind": "deep", "length": 2}}}


def _train(out: Path, k: int, *args: str) -> tuple[list[tuple], list[dict[str, torch.Tensor]]]:
    """Run ``args`` at ``speed.steps_per_call k``; every optimizer step's (generation, epoch, global step, batch
    size, learning rate, loss) in order, and each generation's final state dict (student and loss parameters)."""
    steps: list[tuple] = []
    step_loss = GenerationModule._step_loss

    def recording(self, x, y, index):
        result = step_loss(self, x, y, index)
        lr = self.trainer.optimizers[0].param_groups[0]["lr"]
        steps.append((self.hparams.generation, self.current_epoch, self.global_step, len(y), lr, result.total.item()))
        return result

    with mock.patch.object(GenerationModule, "_step_loss", recording):
        assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--speed.steps_per_call", str(k),
                       *args) == 0
    states = [torch.load(p, weights_only=True)["state_dict"] for p in sorted(out.glob("gen-*/model.ckpt"))]
    return steps, states


def _assert_same_training(a: tuple, b: tuple, atol: float = 0.0) -> None:
    (steps_a, states_a), (steps_b, states_b) = a, b
    assert [s[:5] for s in steps_a] == [s[:5] for s in steps_b]  # the same steps, batches, epochs and rates
    torch.testing.assert_close(torch.tensor([s[5] for s in steps_a]), torch.tensor([s[5] for s in steps_b]),
                               atol=atol, rtol=0)
    assert len(states_a) == len(states_b) and states_a
    for sa, sb in zip(states_a, states_b, strict=True):
        assert sa.keys() == sb.keys()
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], atol=atol, rtol=0, msg=key)


@pytest.mark.parametrize("extra", [
    pytest.param(["--generations", "1"], id="born-again-cached"),
    pytest.param(["--generations", "1", "--cache.mode", "online", "--kd.variant", "dkd"], id="online-dkd"),
    pytest.param(["--generations", "1", "--cache.mode", "online", "--kd.variant", "fitnet",
                  "--kd.init_args.pairs", '[["stages.1", "stages.1"]]', "--backbone",
                  '{"name": "small_cnn", "init_args": {"width": 8}}'], id="fitnets-own-parameters"),
    pytest.param(["--generations", "1", "--task", "prompted", "--backbone", json.dumps(PROMPTED), "--kd.variant",
                  "dkd"], id="prompted"),
    pytest.param(["--generations", "0", "--trainer.gradient_clip_val", "0.05"], id="gradient-clipping"),
])
def test_k4_takes_the_same_steps_as_k1(tmp_path, extra):
    one = _train(tmp_path / "k1", 1, *DIGITS, *extra)
    four = _train(tmp_path / "k4", 4, *DIGITS, *extra)
    assert len(one[0]) == 2 * 10 * (1 + (extra[1] == "1"))  # every optimizer step of every generation
    assert sorted({s[3] for s in four[0]}) == [12, 32]  # the short last batch of each epoch is there
    _assert_same_training(one, four)  # bit-identical on the CPU: the same ops on the same tensors


def test_gradient_clipping_is_applied_per_step_at_k4(tmp_path):
    """The clipping test above can fail: without the clip the K = 4 weights differ."""
    clipped = _train(tmp_path / "clip", 4, *DIGITS, "--generations", "0", "--trainer.gradient_clip_val", "0.05")
    free = _train(tmp_path / "free", 4, *DIGITS, "--generations", "0")
    assert any(not torch.equal(clipped[1][0][key], free[1][0][key]) for key in free[1][0])


def test_in_memory_replayed_views_at_k3(tiny_aug, tmp_path):  # noqa: F811 (fixture)
    """The in-memory pipeline (one gather of K x B samples per call, sliced) with replayed cached views: 64 images,
    batch 8, K = 3: calls of 3, 3 and 2 batches."""
    args = ["--generations", "1", "--data", '{"name": "tiny_aug", "batch_size": 8, "eval_batch_size": 24}',
            "--backbone", TINY_NET, "--cache.mode", "replay", "--cache.epochs", "2", "--trainer.max_epochs", "3",
            "--trainer.enable_progress_bar", "false"]
    one, three = _train(tmp_path / "k1", 1, *args), _train(tmp_path / "k3", 3, *args)
    assert len(one[0]) == 2 * 3 * 8
    _assert_same_training(one, three)


def test_the_memory_loader_yields_k_consecutive_batches_per_call():
    single = EpochBatchSampler(50, 8, seed=3)
    calls = EpochBatchSampler(50, 8 * 4, seed=3)
    for sampler in (single, calls):
        sampler.set_epoch(2)
    batches = [key.indices for key in single]
    sliced = [part for key in calls for part in key.indices.split(8)]
    assert len(list(calls)) == 2 and len(sliced) == len(batches) == 7
    assert all(torch.equal(a, b) for a, b in zip(batches, sliced, strict=True))


def test_train_loss_is_logged_once_per_call_as_the_mean_of_its_steps(tmp_path):
    steps, _ = _train(tmp_path / "run", 4, *DIGITS, "--generations", "0", "--trainer.log_every_n_steps", "1")
    with open(tmp_path / "run" / "gen-0" / "logs" / "metrics.csv") as f:
        logged = [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]
    calls = [steps[i:min(i + 4, 10 * epoch + 10)] for epoch in range(2) for i in range(10 * epoch, 10 * epoch + 10, 4)]
    assert [len(c) for c in calls] == [4, 4, 2, 4, 4, 2]
    expected = [sum(s[5] for s in c) / len(c) for c in calls]
    torch.testing.assert_close(torch.tensor(logged), torch.tensor(expected), atol=1e-6, rtol=1e-6)


def test_killed_mid_epoch_and_resumed_at_k4_is_the_uninterrupted_run(tmp_path):
    args = [*DIGITS, "--generations", "1", "--trainer.max_epochs", "3", "--speed.steps_per_call", "4"]
    reference = _train(tmp_path / "ref", 4, *args)[1]
    out = tmp_path / "killed"
    env = {**os.environ, "DISTILL_FAULT": "fit:1:step:14"}  # generation 1, epoch 1, after its second call
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", "recipes/digits-ban.yaml", "--out", str(out),
                           *args], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert torch.load(out / "gen-1" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    assert run_cli("run", "--out", str(out), "--resume") == 0
    resumed = [torch.load(p, weights_only=True)["state_dict"] for p in sorted(out.glob("gen-*/model.ckpt"))]
    for sa, sb in zip(reference, resumed, strict=True):
        assert all(torch.equal(sa[key], sb[key]) for key in sa)


@pytest.mark.parametrize(("extra", "message"), [
    (["--speed.steps_per_call", "0"], "speed.steps_per_call must be an integer >= 1, got 0"),
    (["--trainer.accumulate_grad_batches", "2"], "speed.steps_per_call 4 with trainer.accumulate_grad_batches 2"),
    (["--trainer.max_steps", "40"], "speed.steps_per_call 4 with trainer.max_steps 40"),
    (["--trainer.limit_train_batches", "5"], "speed.steps_per_call 4 with trainer.limit_train_batches 5"),
    (["--trainer.limit_train_batches", "0.5"], "speed.steps_per_call 4 with trainer.limit_train_batches 0.5"),
    (["--trainer.val_check_interval", "1"], "speed.steps_per_call 4 with trainer.val_check_interval 1"),
])
def test_settings_that_count_calls_are_refused_in_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--speed.steps_per_call", "4", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_what_k1_accepts_and_k4_keeps():
    base = ["--speed.steps_per_call", "4"]
    for extra in (["--trainer.val_check_interval", "1.0"], ["--trainer.limit_train_batches", "1.0"],
                  ["--trainer.gradient_clip_val", "1.0"], ["--trainer.log_every_n_steps", "5"]):
        assert load_recipe("recipes/digits-ban.yaml", [*base, *extra]).run.speed.steps_per_call == 4
    assert load_recipe("recipes/digits-ban.yaml", ["--trainer.accumulate_grad_batches", "2"]).run
    with pytest.raises(RecipeError, match="per_generation"):  # a generation's own trainer override is named
        load_recipe("recipes/digits-ban.yaml", [*base, "--per_generation",
                                                '[{"generation": 1, "trainer": {"max_steps": 5}}]'])


def test_a_non_finite_loss_inside_a_call_stops_the_run_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), *DIGITS, "--generations", "0",
                   "--speed.steps_per_call", "4", "--optimizer.lr", "1e30") == 1
    err = capsys.readouterr().err.strip()
    assert "generation 0, epoch 0, step" in err and "loss is nan" in err and len(err.splitlines()) == 1
    assert not (out / "gen-0" / "model.ckpt").exists()
