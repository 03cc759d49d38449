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


def _stamp(commit: str, load: float) -> dict:
    return {"cpu": "cpu", "cores": 2, "gpu": None, "load_average": [load, 1.0, 1.0], "torch_threads": 1,
            "date": "2026-12-03", "commit": commit, "dirty": False, "load_average_at_end": [load + 1, 1.0, 1.0]}


def test_depth_compares_shallow_and_deep_and_names_each_runs_own_stamp() -> None:
    zero = [{"template": "a {country}", "exact_match": 0.40, "answer_loss": 1.0, "examples": []}]
    shallow = [_run("English", "teacher forcing", s, em) for s, em in ((0, 0.30), (1, 0.40))]
    deep = [{**_run("English", "teacher forcing", s, em), "kind": "deep", "measured": _stamp("abc1234", 2.5)}
            for s, em in ((0, 0.50), (1, 0.60))]
    d = {"setting": {"prompt_length": 5, "layers": 30, "english_start_is_first_paraphrase": True}, "zero_shot": zero,
         "runs": shallow + deep}
    text = prompt_capital_page.depth(d)  # sample std of two seeds 10 points apart: sqrt(50) = 7.1
    assert "| deep | 150 | 55.0 ± 7.1 | 50.0, 60.0 |" in text and "| shallow | 5 | 35.0 ± 7.1 |" in text
    assert "averages 55.0% against the shallow prompt's 35.0% (+20.0 points)" in text and "do not overlap" in text
    assert "seed 1: 2026-12-03, commit `abc1234`, 1 torch thread(s), load average 2.5 at the start" in text
    assert "not recorded" in text.splitlines()[2]  # the shallow runs were never stamped: no stamp is claimed
    assert prompt_capital_page.soft(d).count("| English |") == 1  # deep runs stay out of the shallow tables
    assert len(prompt_capital_page.sampling(d).splitlines()) == 3


def test_the_setting_says_which_invocation_measured_which_runs() -> None:
    setting = {"base": "b", "sha256": "0" * 64, "load_seconds": 30.0, "train_countries": 1, "test_countries": 1,
               "dropped": [], "format": "plain", "prompt_length": 5, "init_text": "x", "input": "y", "lr": 0.01,
               "steps": 1, "batch": 1, "seeds": [0], "sampling_seeds": [0]}
    earlier = [{**_stamp("old0001", 4.0), "measured_runs": 6}]
    d = {"provenance": _stamp("new0002", 3.0), "setting": setting, "wall_seconds": 60.0, "measured_runs": 3,
         "reused_runs": 26, "earlier": earlier}
    text = prompt_capital_page.setting(d)
    assert "The last invocation of the script ran on" in text and "commit `new0002`" in text
    assert "it measured 3 runs and reused 26" in text and "6 by the invocation on" in text and "`old0001`" in text
    assert "20 by an earlier invocation whose stamp was not kept" in text
    assert prompt_capital_page.setting({**d, "reused_runs": 0}).startswith("Measured on cpu")
