"""The capital benchmark's pieces (benchmarks/prompt_capital.py and its renderer): the countries it keeps and drops,
the stop tokens, and verdicts the renderer computes from the data, on a hand-made document."""

from __future__ import annotations

import pytest

pytest.importorskip("countryinfo")
pytest.importorskip("transformers")

from benchmarks import prompt_capital, prompt_capital_page  # noqa: E402


def test_capitals_keep_the_held_out_split_and_drop_what_decoding_cannot_match() -> None:
    train, test, dropped = prompt_capital.capitals()
    assert not {c for c, _ in train} & {c for c, _ in test}
    assert "United States" in dropped and all("." not in a and not a.startswith("[") for _, a in train + test)
    assert len(train) > 2 * len(test) > 0


def _run(init: str, objective: str, seed: int, em: float) -> dict:
    return {"init": init, "objective": objective, "seed": seed, "exact_match": em, "answer_loss": 1.0,
            "train_losses": [2.0] * 6, "seconds_per_step": 1.5, "nearest_tokens_end": ["a"],
            "nearest_cosines_end": [0.5], "examples": []}


def test_the_renderer_decides_its_verdicts_from_the_data() -> None:
    zero = [{"template": t, "exact_match": em, "answer_loss": 1.0, "examples": [["France", "Paris", " Paris"]]}
            for t, em in (("a {country}", 0.40), ("b {country}", 0.30))]
    setting = {"english_start_is_first_paraphrase": True}
    narrow = {"setting": setting, "zero_shot": zero, "runs": [
        _run("English", "teacher forcing", s, em) for s, em in ((0, 0.5), (1, 0.55))]}
    text = prompt_capital_page.soft(narrow)
    assert "narrower than the paraphrases' spread (10.0 points)" in text
    assert "scores 40.0% before training" in text and "52.5% on average (+12.5 points)" in text
    wide = {"setting": setting, "zero_shot": zero, "runs": [
        _run("random", "teacher forcing", s, em) for s, em in ((0, 0.1), (1, 0.6))]}
    assert "as wide as or wider than" in prompt_capital_page.soft(wide)
    sampling = prompt_capital_page.sampling({"runs": narrow["runs"] + [_run("English", "argmax", 0, 0.2)]})
    assert [line.split(" | ")[0] for line in sampling.splitlines()[2:]] == ["| teacher forcing", "| argmax"]
