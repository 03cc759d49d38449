"""Bring your own teacher: generation 0 loaded from another run's checkpoint, from a local weights file through timm's
own loading path, or from timm's hub (tested up to the download, which has no network here)."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from conftest import TINY_RUN_ARGS, run_cli

from distill.cache import Manifest, sha256_file
from distill.loaded import load_network
from distill.models import BackboneError
from distill.resolve import load_recipe
from distill.tasks.born_again import load_student

RECIPE = "recipes/digits-ban.yaml"


def _gen0(run) -> dict:
    return json.loads((run / "summary.json").read_text())["generations"][0]


def test_loaded_from_an_earlier_runs_checkpoint(tiny_run, tmp_path):
    out = tmp_path / "run"
    ckpt = tiny_run / "gen-0" / "model.ckpt"
    # The recipe asks for another backbone: a run checkpoint brings its own run's backbone (small_cnn).
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, "--backbone.name", "small_cnn",
                   "--backbone.init_args.width", "4", "--load", json.dumps({"checkpoint": str(ckpt)})) == 0
    g0, old = _gen0(out), _gen0(tiny_run)
    assert g0["source"] == f"loaded: distill checkpoint {ckpt.resolve()}"
    assert g0["backbone"] == "small_cnn" and g0["epochs"] == 0 and g0["train_seconds"] == 0
    assert g0["test"] == old["test"]  # the same weights on the same test set
    manifest = Manifest.read(out / "cache" / "gen-0")
    assert manifest.teacher_sha256 == sha256_file(out / "gen-0" / "model.ckpt")
    assert json.loads((out / "summary.json").read_text())["generations"][1]["backbone"] == "small_cnn(width=4)"
    a = load_student(ckpt, "small_cnn", 10, 1).state_dict()
    b = load_student(out / "gen-0" / "model.ckpt", "small_cnn", 10, 1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A resumed run reuses the loaded generation like a trained one.
    assert run_cli("run", "--out", str(out), "--resume") == 0
    # A third run loading this run's generation 0 rebuilds the backbone recorded in it, not this recipe's width 4.
    chained = load_recipe(RECIPE, ["--load", json.dumps({"checkpoint": str(out / "gen-0" / "model.ckpt")})])
    assert chained.specs[0].label == "small_cnn"


def test_loaded_from_a_local_weights_file_through_timm(tiny_run, tmp_path):
    state = torch.load(tiny_run / "gen-0" / "model.ckpt", weights_only=True)["state_dict"]
    weights = tmp_path / "small_cnn-digits.pth"
    torch.save({k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}, weights)
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, "--load", json.dumps({"file": str(weights)})) == 0
    g0 = _gen0(out)
    assert g0["source"] == f"loaded: file {weights.resolve()}"
    assert g0["test"] == _gen0(tiny_run)["test"]


def test_a_weights_file_that_does_not_fit_is_one_line(tmp_path, capsys):
    weights = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, weights)
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, "--load", json.dumps({"file": str(weights)})) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"load.file {weights.resolve()} cannot be loaded" in err
    assert not out.exists()


def test_hub_weights_go_through_timm_up_to_the_download(monkeypatch):
    asked = []

    def offline(model, pretrained_cfg=None, **kwargs):
        asked.append(pretrained_cfg["hf_hub_id"])
        raise OSError("no network in this test")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    spec = load_recipe(RECIPE, ["--backbone", "resnet18", "--load", '{"pretrained": true}']).specs[0]
    assert spec.load.kind == "pretrained"
    with pytest.raises(BackboneError, match=r"load.pretrained \(resnet18\) cannot be loaded: OSError: no network"):
        load_network(spec, 1000, 1, from_checkpoint=None)  # an ImageNet-class dataset: timm's classifier fits
    assert asked == ["timm/resnet18.a1_in1k"]
    with pytest.raises(BackboneError, match="timm's weights classify 1000 classes, the dataset has 10"):
        load_network(spec, 10, 1, from_checkpoint=None)  # a fresh classifier would be no teacher: refused
    assert len(asked) == 1


def test_a_weights_file_keeps_its_classifier_when_the_model_default_has_other_classes(tmp_path):
    """cifar_resnet20's default config has 100 classes: a 10-class file must load whole, head included."""
    model = timm.create_model("cifar_resnet20", num_classes=10, in_chans=1)
    weights = tmp_path / "r20.pth"
    torch.save(model.state_dict(), weights)
    spec = load_recipe(RECIPE, ["--backbone", "cifar_resnet20", "--load", json.dumps({"file": str(weights)})]).specs[0]
    loaded = load_network(spec, 10, 1, from_checkpoint=None)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
