"""Meta, prompt and folder settings a run cannot use are one line naming the key, exit 2, before the run directory
exists; a finished meta run is not rewritten by ``--force``; a recipe or run directory of the other command is named
as such."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import run_cli
from PIL import Image

META = ["--trainer.max_epochs", "1", "--episodes.train_episodes", "8", "--episodes.test_episodes", "4",
        "--episodes.val_episodes", "0"]
SINUSOID, DIGITS = "recipes/meta/sinusoid-maml.yaml", "recipes/meta/digits-maml-5way.yaml"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    return err


@pytest.mark.parametrize("recipe,args,words", [
    (DIGITS, ["--baselines", "{epochs: 1, foo: 2}"], "baselines.foo is not a baselines option (accepted: epochs"),
    (DIGITS, ["--baselines", "{epochs: 0}"], "baselines.epochs must be an integer >= 1, got 0"),
    (DIGITS, ["--baselines", "{lr: -1}"], "baselines.lr must be a finite number > 0"),
    (SINUSOID, ["--baselines", "{epochs: 1}"], "baselines: the paradigms classify"),
    (DIGITS, ["--network", "{name: conv4, hidden: 0}"], "network.hidden must be >= 1, got 0"),
    (SINUSOID, ["--network", "{name: mlp, layers: -1}"], "network.layers must be >= 1, got -1"),
    (SINUSOID, ["--network", "{name: conv4}"], "network {'name': 'conv4'} cannot run on sinusoid episodes"),
    (DIGITS, ["--network", "{name: mlp}"], "network {'name': 'mlp'} cannot run on digits episodes (inputs of shape "
                                           "(1, 8, 8)): RuntimeError"),
    (SINUSOID, ["--network", "{name: mlp, nope: 1}"], "network.nope is not an option of mlp (accepted: hidden, "
                                                       "in_features, layers)"),
    (DIGITS, ["--network", "{name: conv4, nope: 1}"], "network.nope is not an option of conv4 (accepted: blocks, "
                                                      "hidden)"),
], ids=["unknown baselines key", "zero baseline epochs", "negative baseline lr", "baselines on sinusoid",
        "conv4 without channels", "mlp without layers", "conv4 on sinusoid", "mlp on images", "unknown mlp option",
        "unknown conv4 option"])
def test_meta_settings_are_checked_before_the_run_directory(recipe, args, words, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("meta", recipe, "--out", str(out), *META, *args) == 2
    assert words in one_line_error(capsys)
    assert not out.exists()


def test_force_on_a_finished_meta_run_changes_nothing_it_cannot_redo(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert run_cli("meta", SINUSOID, "--out", str(out), *META) == 0
    before = {p.name: p.read_bytes() for p in (out / "config.yaml", out / "results.json", out / "model.ckpt")}
    before_weights = torch.load(out / "model.ckpt", weights_only=True)["state_dict"]
    capsys.readouterr()
    assert run_cli("meta", "--out", str(out), "--resume", "--force", "--inner.steps", "3") == 2
    assert "is a finished run (results.json): inner.steps: 1 -> 3 would need the meta-training again" in \
        one_line_error(capsys)
    assert {p.name: p.read_bytes() for p in (out / "config.yaml", out / "results.json", out / "model.ckpt")} == before
    # What a finished run redoes (the meta-test) may change: the model is kept, the results say what was done.
    assert run_cli("meta", "--out", str(out), "--resume", "--force", "--episodes.test_episodes", "6") == 0
    assert json.loads((out / "results.json").read_text())["test"]["episodes"] == 6
    weights = torch.load(out / "model.ckpt", weights_only=True)["state_dict"]  # (the file's loop state is rewritten)
    assert all(torch.equal(w, before_weights[k]) for k, w in weights.items())
    assert "test_episodes: 6" in (out / "config.yaml").read_text()


def test_a_recipe_or_run_directory_of_the_other_command_is_named(tmp_path, tiny_run, capsys) -> None:
    meta_run = tmp_path / "meta"
    assert run_cli("meta", SINUSOID, "--out", str(meta_run), *META) == 0
    capsys.readouterr()
    run_copy = tmp_path / "run"
    shutil.copytree(tiny_run, run_copy)
    cases = [(["run", "--out", str(meta_run), "--resume"],
              f"{meta_run} was made by `distill meta`; use `distill meta --out {meta_run} --resume`"),
             (["meta", "--out", str(run_copy), "--resume"],
              f"{run_copy} was made by `distill run`; use `distill run --out {run_copy} --resume`"),
             (["sweep", SINUSOID, "--key", "inner.steps", "--values", "1,2", "--out", str(tmp_path / "s")],
              f"{SINUSOID} is a `distill meta` recipe (it sets episodes, inner, meta_lr, method, network), not a "
              f"`distill run` one: use `distill meta {SINUSOID}`"),
             (["run", SINUSOID, "--out", str(tmp_path / "r")], f"use `distill meta {SINUSOID}`"),
             (["meta", "recipes/digits-ban.yaml", "--out", str(tmp_path / "m")],
              "recipes/digits-ban.yaml is a `distill run` recipe (it sets backbone, cache, generations, kd, "
              "optimizer), not a `distill meta` one")]
    for argv, words in cases:
        assert run_cli(*argv) == 2, argv
        assert words in one_line_error(capsys)
    assert not any((tmp_path / d).exists() for d in ("s", "r", "m"))


VIT = {"img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 3, "num_heads": 2}


@pytest.mark.parametrize("init_args,words", [
    ({"prompt": {"kind": "shallow", "length": 0}}, "prompt length must be an integer >= 1, got 0"),
    ({"prompt": {"kind": "deep", "length": -2}}, "prompt length must be an integer >= 1, got -2"),
    ({"prompt": {"kind": "input_dependent", "length": 0}}, "prompt length must be an integer >= 1, got 0"),
    ({"prompt": {"kind": "input_dependent", "hidden": 0}}, "prompt hidden must be an integer >= 1, got 0"),
    ({"prompt": {"kind": "around", "before": 0, "after": 0}}, "prompt before + after must be >= 1 tokens, got 0 + 0"),
    ({"prompt": {"kind": "around", "before": -1, "after": 3}}, "prompt before must be an integer >= 0, got -1"),
    ({"prompt": {"kind": "input_map", "mode": "lowrank", "rank": 0}}, "input_map rank must be an integer >= 1"),
    ({"prompt": {"kind": "input_map", "prompt": {"kind": "deep", "length": 0}}}, "prompt length must be an integer"),
    ({"prompt": "none", "train_head": False}, "prompted_vit trains nothing"),
], ids=["zero length", "negative length", "zero input-dependent length", "zero hidden", "around 0 + 0",
        "around negative", "zero rank", "inner prompt of zero length", "nothing trainable"])
def test_prompt_sizes_below_one_and_nothing_to_train_are_refused(init_args, words, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    backbone = {"name": "prompted_vit", "init_args": {"base_args": VIT, **init_args}}
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--task", "prompted", "--backbone",
                   json.dumps(backbone), "--generations", "0", "--trainer.max_epochs", "1") == 2
    err = one_line_error(capsys)
    assert words in err and "backbone" in err, err
    assert not out.exists()


def _folder(root, classes, empty=()):
    for split in ("train", "test"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            if cls in empty and split == "train":
                continue
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 60, 10, 200)).save(root / split / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("classes,empty,words", [
    (("a",), (), "train has 1 class folder: a; classification needs at least two"),
    (("a", "b", "c"), ("b",), "train/b holds no images: every train/ class folder needs images"),
], ids=["one class", "empty class folder"])
def test_image_folders_a_run_cannot_learn_from_are_refused(classes, empty, words, tmp_path, capsys) -> None:
    root = _folder(tmp_path / "data", classes, empty)
    out = tmp_path / "run"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--data",
                   json.dumps({"name": "imagefolder", "root": str(root)}), "--backbone",
                   '{"name": "small_cnn", "init_args": {"in_chans": 3}}') == 2
    assert words in one_line_error(capsys)
    assert not out.exists()
