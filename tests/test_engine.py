"""The generation loop end to end on small digits runs: summary fields, teacher handling, per-generation overrides."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from conftest import TINY_RUN_ARGS, run_cli

from distill.config import parse_recipe
from distill.generations import build_datamodule, generation_seed
from distill.losses import KDLoss
from distill.optim import OptimizerConfig
from distill.tasks.born_again import GenerationModule
from distill.teachers import OnlineTeacher


def test_summary_json_has_every_field(tiny_run):
    s = json.loads((tiny_run / "summary.json").read_text())
    assert s["recipe"] == "digits-ban" and s["seed"] == 0
    assert [g["generation"] for g in s["generations"]] == [0, 1]
    g0, g1 = s["generations"]
    for g in (g0, g1):
        assert g["source"] == "trained"
        assert set(g) == {"generation", "backbone", "teacher", "source", "epochs", "train_seconds", "parameters",
                          "test", "train", "agreement_with_teacher", "cache_seconds"}
        assert g["cache_seconds"] > 0  # every generation built its cache (cache/gen-k)
        assert g["parameters"]["trainable"] == g["parameters"]["total"] > 0  # every small_cnn weight trains
        assert set(g["train"]) == {"acc", "nll"} and 0 <= g["train"]["acc"] <= 1
        assert g["backbone"] == "small_cnn" and g["epochs"] == 2 and g["train_seconds"] > 0
        assert set(g["test"]) == {"acc", "nll", "ece"}  # 10 classes: no top-5
        assert 0 <= g["test"]["acc"] <= 1 and g["test"]["nll"] > 0 and 0 <= g["test"]["ece"] <= 1
    # Training accuracy is the un-augmented training set's: recompute it from gen-0's cache (its logits of that set).
    cached = np.load(tiny_run / "cache" / "gen-0" / "logits.npy", allow_pickle=False).astype(np.float32)
    labels = np.asarray(build_datamodule(parse_recipe(str(tiny_run / "config.yaml"), []).data).train_labels())
    assert abs(float((cached.argmax(1) == labels).mean()) - g0["train"]["acc"]) < 1e-6
    assert g0["teacher"] is None and g0["agreement_with_teacher"] is None
    assert g1["teacher"] == "gen-0" and 0 <= g1["agreement_with_teacher"] <= 1
    assert s["ensembles"] == [{"members": [0, 1], "test": s["ensembles"][0]["test"]}]
    assert set(s["ensembles"][0]["test"]) == {"acc", "nll"}
    for k in (0, 1):
        assert (tiny_run / f"gen-{k}" / "model.ckpt").is_file()
        assert json.loads((tiny_run / f"gen-{k}" / "metrics.json").read_text())["test"] == s["generations"][k]["test"]
        assert (tiny_run / f"gen-{k}" / "logs" / "metrics.csv").is_file()
        assert (tiny_run / "cache" / f"gen-{k}" / "manifest.json").is_file()
    assert "generations: 1" in (tiny_run / "config.yaml").read_text()


def test_checkpoints_load_with_weights_only(tiny_run):
    state = torch.load(tiny_run / "gen-1" / "model.ckpt", map_location="cpu", weights_only=True)
    assert any(k.startswith("student.") for k in state["state_dict"])
    assert not any(k.startswith("teacher") for k in state["state_dict"])


def test_generation_seeds_differ_and_are_stable():
    seeds = [generation_seed(0, k) for k in range(4)]
    assert len(set(seeds)) == 4 and seeds == [generation_seed(0, k) for k in range(4)]
    assert generation_seed(1, 0) != seeds[0]


def _tiny_module(teacher_model: torch.nn.Module) -> GenerationModule:
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    return GenerationModule(student, KDLoss(0.5, 2.0), OnlineTeacher([teacher_model]), 10, OptimizerConfig(lr=0.01),
                            max_epochs=1, generation=1)


def test_online_teacher_stays_in_eval_mode_and_gets_no_gradients():
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32),
                                  torch.nn.Linear(32, 10))
    modes: list[bool] = []
    teacher.register_forward_pre_hook(lambda m, inp: modes.append(m.training))
    teacher.train()  # even a teacher handed over in train mode must be run in eval mode
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    module = _tiny_module(teacher)
    assert all(m is not teacher for m in module.modules())  # outside the module tree
    dm = build_datamodule({"name": "digits", "train_subset": 128, "batch_size": 32})
    L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
              enable_model_summary=False).fit(module, dm.train_dataloader())
    assert modes and not any(modes)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # BN stats untouched
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for p in module.student.parameters())


def test_online_mode_ensemble_teacher_and_per_generation_backbone(tmp_path):
    out = tmp_path / "run"
    code = run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), *TINY_RUN_ARGS, "--generations", "2",
                   "--trainer.max_epochs", "1", "--cache.mode", "online", "--kd.teacher", "ensemble",
                   "--kd.alpha", "0.5", "--kd.temperature", "4", "--kd.variant", "cwtm",
                   "--per_generation", '[{"generation": 2, "backbone": {"name": "small_cnn", "init_args": '
                                       '{"width": 8}}, "trainer": {"max_epochs": 2}}]')
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert [g["teacher"] for g in s["generations"]] == [None, "gen-0", "gen-0+gen-1"]
    assert [g["epochs"] for g in s["generations"]] == [1, 1, 2]
    assert [e["members"] for e in s["ensembles"]] == [[0, 1], [0, 1, 2]]
    widths = torch.load(out / "gen-2" / "model.ckpt", weights_only=True)["state_dict"]["student.fc.weight"].shape
    assert widths == (10, 32)  # 4 * width 8


@pytest.mark.parametrize("variant", ["dkpp"])
def test_variants_train(tmp_path, variant):
    out = tmp_path / variant
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), *TINY_RUN_ARGS, "--trainer.max_epochs", "1",
                   "--kd.variant", variant) == 0
    assert json.loads((out / "summary.json").read_text())["generations"][1]["teacher"] == "gen-0"
