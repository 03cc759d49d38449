"""The opened engine: resolved specs, tasks by registry, dotted init_args overrides, your own loggers and callbacks,
and the numbers that the parser admits but training cannot use."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_RUN_ARGS, run_cli

from distill.config import RecipeError
from distill.resolve import load_recipe
from distill.tasks import TASKS
from distill.tasks.born_again import GenerationModule

RECIPE = "recipes/digits-ban.yaml"


def test_specs_are_resolved_once_frozen_and_per_generation():
    recipe = load_recipe(RECIPE, ["--generations", "2", "--kd.teacher", "ensemble", "--per_generation",
                                  '[{"generation": 2, "kd": {"temperature": 3}, "trainer": {"max_epochs": 4}}]'])
    g0, g1, g2 = recipe.specs
    assert [s.index for s in recipe.specs] == [0, 1, 2]
    assert g0.members == () and g1.members == (0,) and g2.members == (0, 1)
    assert (g1.kd.temperature, g2.kd.temperature) == (1.0, 3.0)
    assert (g1.max_epochs, g2.max_epochs) == (15, 4)
    assert len({g0.seed, g1.seed, g2.seed}) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        g1.kd = g2.kd
    with pytest.raises(TypeError):  # nested settings are read-only too
        g1.trainer["max_epochs"] = 99
    assert TASKS.get(g0.task) is GenerationModule


def test_loop_names_no_lightning_module():
    source = Path("distill/generations.py").read_text()
    assert "GenerationModule" not in source and "born_again" not in source


def test_dotted_backbone_init_args_override(tmp_path):
    args = ["--backbone.class_path", "usernet.TinyMLP", "--backbone.init_args.hidden", "32"]
    spec = load_recipe(RECIPE, args).specs[0]
    assert dict(spec.backbone) == {"class_path": "usernet.TinyMLP", "init_args": {"hidden": 32}}
    assert spec.label == "usernet.TinyMLP(hidden=32)"
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, *args) == 0
    state = torch.load(out / "gen-1" / "model.ckpt", weights_only=True)["state_dict"]
    assert state["student.fc.weight"].shape == (10, 32)


def test_dotted_override_into_an_existing_init_args_and_per_generation():
    spec = load_recipe(RECIPE, ["--backbone", '{"name": "small_cnn", "init_args": {"width": 8}}',
                                "--backbone.init_args.drop_rate", "0.1"]).specs[0]
    assert dict(spec.backbone["init_args"]) == {"width": 8, "drop_rate": 0.1}
    specs = load_recipe(RECIPE, ["--per_generation", '[{"generation": 1, "backbone": {"class_path": '
                                 '"usernet.TinyMLP", "hidden": 12}}]']).specs
    assert dict(specs[1].backbone) == {"class_path": "usernet.TinyMLP", "init_args": {"hidden": 12}}
    assert specs[0].backbone == "small_cnn" and specs[2].backbone == "small_cnn"


def test_a_per_generation_init_args_replaces_the_base_one():
    specs = load_recipe(RECIPE, ["--kd.variant", "dkd", "--kd.init_args.warmup_epochs", "3", "--per_generation",
                                 '[{"generation": 2, "kd": {"variant": "dist", "init_args": {}}}]']).specs
    assert dict(specs[1].kd.init_args) == {"warmup_epochs": 3} and dict(specs[2].kd.init_args) == {}
    assert (specs[1].kd.temperature, specs[2].kd.temperature) == (4.0, 4.0)  # the losses' own defaults


def test_inspect_temperature_of_a_run_whose_loss_has_none():
    from distill.analysis.run import _recipe_temperature

    specs = load_recipe(RECIPE, ["--kd.variant", "fitnet", "--cache.mode", "online", "--kd.init_args.pairs",
                                 '[["stages.1", "stages.1"]]']).specs
    assert specs[1].kd.temperature is None and _recipe_temperature(specs) == 1.0


def test_kd_init_args_reach_the_loss_and_unknown_keys_name_the_accepted():
    spec = load_recipe(RECIPE, ["--kd.variant", "at", "--cache.mode", "online",
                                "--kd.init_args.pairs", '[["stages.1", "stages.1"]]',
                                "--kd.init_args.weight", "10"]).specs[1]
    assert dict(spec.kd.init_args) == {"pairs": (("stages.1", "stages.1"),), "weight": 10}
    with pytest.raises(RecipeError, match=r"kd.init_args.beta is not an argument of KDLoss \(accepted: none\)"):
        load_recipe(RECIPE, ["--kd.init_args.beta", "8"])
    with pytest.raises(RecipeError, match=r"kd.init_args.weights is not an argument .*accepted: pairs, weight"):
        load_recipe(RECIPE, ["--kd.variant", "fitnet", "--cache.mode", "online",
                             "--kd.init_args", '{"pairs": [["a", "b"]], "weights": 1}'])
    with pytest.raises(RecipeError, match="kd.init_args.temperature is set by its own recipe key"):
        load_recipe(RECIPE, ["--kd.init_args.temperature", "4"])


def test_feature_loss_with_a_cache_is_refused_before_anything_runs():
    with pytest.raises(RecipeError, match="needs the teacher's intermediate features.*cache.mode is 'clean'"):
        load_recipe(RECIPE, ["--kd.variant", "fitnet", "--kd.init_args.pairs", '[["stages.1", "stages.1"]]'])


BAD_NUMBERS = {
    "negative lr": (["--optimizer.lr", "-1"], "optimizer.lr must be a finite number > 0, got -1.0"),
    "negative weight decay": (["--optimizer.weight_decay", "-0.1"], "optimizer.weight_decay must be a finite number"),
    "momentum 2": (["--optimizer.momentum", "2"], "optimizer.momentum must be in [0, 1), got 2.0"),
    "infinite temperature": (["--kd.temperature", "inf"], "kd.temperature must be a finite number > 0, got inf"),
    "unknown kd.init_args key": (["--kd.init_args.beta", "8"], "kd.init_args.beta is not an argument of KDLoss"),
    "feature loss on a cache": (["--kd.variant", "at", "--kd.init_args.pairs", '[["stem", "stem"]]'],
                                "only a teacher run online serves"),
    "ModelCheckpoint callback": (["--trainer.callbacks", "ModelCheckpoint"], "'ModelCheckpoint' is refused"),
    "unknown callback": (["--trainer.callbacks", "EarlyStoping"], "trainer.callbacks 'EarlyStoping' cannot be"),
    "callback without its argument": (["--trainer.callbacks", "EarlyStopping"], "EarlyStopping' cannot be built"),
    "unknown logger argument": (["--trainer.logger", '{"class_path": "TensorBoardLogger", "init_args": '
                                                     '{"save_dirr": "x"}}'], "save_dirr is not an argument"),
    "bad load key": (["--load", '{"weights": "x"}'], "load.weights is not a load option"),
    "missing load file": (["--load", '{"file": "nope.pth"}'], "load.file: file not found: /"),
    "pretrained without weights": (["--load", '{"pretrained": true}'], "timm has no pretrained weights"),
    "feature loss without its pairs": (["--cache.mode", "online", "--kd.variant", "fitnet"],
                                      "kd.init_args for 'fitnet': FitNetsLoss.__init__() missing 1 required"),
    "malformed pairs": (["--cache.mode", "online", "--kd.variant", "at", "--kd.init_args.pairs", '[["stem"]]'],
                        "kd.init_args.pairs must be a non-empty list of [student_layer, teacher_layer]"),
    "kd.alpha on a loss without it": (["--kd.variant", "dkd", "--kd.alpha", "0.3"],
                                      "kd.alpha is not used by kd.variant 'dkd'"),
    "vector feature for a map loss": (["--cache.mode", "online", "--kd.variant", "at", "--kd.init_args.pairs",
                                       '[["fc", "fc"]]'], "student feature 'fc' has shape (1, 10), but AttentionLoss"),
    "DKD on a top-k cache": (["--kd.variant", "dkd", "--cache.format", "topk", "--cache.topk", "5"],
                             "cache.format topk with topk=5 < 10 classes does not keep"),
    "missing logger package": (["--trainer.logger", "MLFlowLogger"], "'MLFlowLogger' cannot be built"),
    "per-generation bad lr": (["--per_generation", '[{"generation": 1, "optimizer": {"lr": 0}}]'],
                              "per_generation[0]: optimizer.lr must be a finite number > 0"),
}


@pytest.mark.parametrize("case", list(BAD_NUMBERS))
def test_values_training_cannot_use_exit_2_with_one_line(case, tmp_path, capsys):
    args, message = BAD_NUMBERS[case]
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert "Traceback" not in err
    assert not out.exists()  # checked before the run directory is created


def test_unknown_feature_name_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, "--cache.mode", "online", "--kd.variant",
                   "at", "--kd.init_args.pairs", '[["stage9", "stages.1"]]') == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "(generation 1, student): feature 'stage9' names no module" in err
    assert not out.exists()


def test_tensorboard_logger_and_user_callbacks_run_beside_the_engine(tmp_path):
    pytest.importorskip("tensorboard")
    out, record = tmp_path / "run", tmp_path / "epochs.json"
    callbacks = json.dumps(["LearningRateMonitor", {"class_path": "usernet.RecordEpochs",
                                                    "init_args": {"path": str(record), "tags": ["a", "b"]}}])
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, "--trainer.logger", "TensorBoardLogger",
                   "--trainer.callbacks", callbacks) == 0
    for k in (0, 1):
        assert (out / f"gen-{k}" / "logs" / "metrics.csv").is_file()  # the engine's CSV log stays
        events = list((out / f"gen-{k}").rglob("events.out.tfevents.*"))
        assert events and all(e.stat().st_size > 0 for e in events)
    assert json.loads(record.read_text()) == [0, 1, 0, 1]  # two epochs in each of two generations
    assert "lr-SGD" in (out / "gen-0" / "logs" / "metrics.csv").read_text().splitlines()[0]


def test_students_are_told_apart_by_their_arguments(tmp_path):
    out = tmp_path / "run"
    overrides = '[{"generation": 0, "backbone": {"name": "small_cnn", "init_args": {"width": 16}}}]'
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, "--backbone.name", "small_cnn",
                   "--backbone.init_args.width", "8", "--per_generation", overrides) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [g["backbone"] for g in s["generations"]] == ["small_cnn(width=16)", "small_cnn(width=8)"]
