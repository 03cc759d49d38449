"""The prompted_lm task through the engine: tiny random bases (MiniLM's tokenizer), the countryinfo region data."""

from __future__ import annotations

import json
import shutil

import lightning as L
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("countryinfo")

from conftest import run_cli  # noqa: E402
from textbases import tiny_base  # noqa: E402

from distill.prompts import BaseMismatchError  # noqa: E402
from distill.prompts.checkpoint import REFERENCE_KEY  # noqa: E402
from distill.resolve import load_recipe  # noqa: E402
from distill.tasks.base import TaskContext  # noqa: E402
from distill.tasks.prompted_lm import REPORT, PromptedLMModule  # noqa: E402
from distill.text.data import TextDataModule  # noqa: E402

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.max_epochs", "1"]


def _recipe(tmp_path, base, **init_args) -> str:
    recipe = tmp_path / "recipe.yaml"
    backbone = {"name": "prompted_lm", "init_args": {"base": str(base), **init_args}}
    recipe.write_text(json.dumps({
        "seed": 0, "generations": 0, "task": "prompted_lm",
        "data": {"name": "text", "source": "countryinfo", "task": "region", "template": "{prompt} {input}",
                 "batch_size": 32},
        "backbone": backbone, "optimizer": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0},
        "trainer": {"accelerator": "cpu"}}))
    return str(recipe)


def test_a_prompted_lm_teaches_another_base_with_another_tokenizer_through_the_cache(tmp_path):
    """Gen 0: a tiny Llama (verbalizer-free: linear head on its last position) whose tokenizer pads on the left;
    gen 1: a tiny BERT student (right padding) learning from gen 0's cached class scores."""
    causal = tiny_base(tmp_path / "llama", "causal")
    config = json.loads((causal / "tokenizer_config.json").read_text())
    (causal / "tokenizer_config.json").write_text(json.dumps({**config, "padding_side": "left"}))
    encoder = tiny_base(tmp_path / "bert", "encoder")
    recipe = _recipe(tmp_path, encoder, prompt={"kind": "deep"}, init={"text": "the region of"})
    teacher = {"name": "prompted_lm", "init_args": {"base": str(causal), "prompt": {"kind": "around", "after": 1},
                                                    "init": {"text": "which region is"}}}
    out = tmp_path / "run"
    assert run_cli("run", recipe, "--out", str(out), "--generations", "1", "--per_generation",
                   json.dumps([{"generation": 0, "backbone": teacher}]), *QUIET) == 0
    summary = json.loads((out / "summary.json").read_text())
    gens = summary["generations"]
    assert gens[1]["agreement_with_teacher"] is not None
    assert gens[0]["parameters"]["trainable"] == 3 * 16 + 16 * 5 + 5  # 2 before + 1 after, a linear head
    assert gens[1]["parameters"]["trainable"] == 2 * 3 * 16 + 16 * 5 + 5  # deep: 3 tokens in each of 2 layers
    for k, tokens in ((0, ["which", "region", "is"]), (1, ["the", "region", "of"])):
        report = json.loads((out / f"gen-{k}" / REPORT).read_text())
        assert [r["token"] for r in report["start"]] == tokens and len(report["end"]) == len(tokens)
        state = torch.load(out / f"gen-{k}" / "model.ckpt", weights_only=True)
        assert state["state_dict"] and not any(key.startswith("student.base.") for key in state["state_dict"])
        assert state[REFERENCE_KEY]["source"] == str(causal if k == 0 else encoder)


@pytest.mark.parametrize(("init_args", "words"), [
    ({"prompt": {"kind": "shallow", "length": 4}, "init": {"text": "the region of"}}, ["prompt.length 4", "3 tokens"]),
    ({"prompt": {"kind": "sideways"}}, ["sideways"]),
    ({"prompt": "shallow", "verbalizer": {"words": ["africa", "xylophonist", "asia", "europe", "oceania"]}},
     ["'xylophonist' is", "tokens"]),
])
def test_bad_prompted_lm_arguments_exit_2_before_the_run_directory(tmp_path, capsys, init_args, words):
    base = tiny_base(tmp_path / "llama", "causal")
    out = tmp_path / "run"
    capsys.readouterr()
    assert run_cli("run", _recipe(tmp_path, base, **init_args), "--out", str(out), *QUIET) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "it/s]" not in line]  # (weight loading)
    assert len(err) == 1 and all(w in err[0] for w in words), err
    assert not out.exists()


def _module(tmp_path, base) -> tuple[PromptedLMModule, L.Trainer, torch.utils.data.DataLoader]:
    spec = load_recipe(_recipe(tmp_path, base, prompt={"kind": "shallow", "length": 2}),
                       ["--optimizer.scheduler", "constant"]).specs[0]
    dm = TextDataModule(source="countryinfo", task="region", template="{prompt} {input}", batch_size=32)
    dm.setup()
    dm.prepare_generation(spec)
    loader = dm.train_dataloader()
    sample = dm.cache_set[0][0].unsqueeze(0)
    torch.manual_seed(0)
    module = PromptedLMModule.create(spec, TaskContext(dm.num_classes, 1, sample), spec.loss.build())
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    return module, trainer, loader


def test_resume_refuses_a_base_that_hashes_differently(tmp_path):
    base = tiny_base(tmp_path / "bert", "encoder")
    module, trainer, loader = _module(tmp_path, base)
    before = {k: v.clone() for k, v in module.student.base.state_dict().items()}
    trainer.fit(module, loader)
    assert all(torch.equal(v, before[k]) for k, v in module.student.base.state_dict().items())
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    assert not any(k.startswith("student.base.") for k in torch.load(path, weights_only=True)["state_dict"])
    resumed, trainer2, _ = _module(tmp_path, base)
    trainer2.fit_loop.max_epochs = 2
    trainer2.fit(resumed, loader, ckpt_path=path, weights_only=True)  # the same base: the strict load succeeds
    shutil.rmtree(base)
    other = tiny_base(tmp_path / "bert", "encoder", seed=1)  # same folder, other weights
    changed, trainer3, _ = _module(tmp_path, other)
    trainer3.fit_loop.max_epochs = 2
    with pytest.raises(BaseMismatchError, match="sha256"):
        trainer3.fit(changed, loader, ckpt_path=path, weights_only=True)
