"""Generated page sections: each page section is exactly what its JSON renders to, and the renderers compute their
verdicts from the data (benchmarks/pages.py, benchmarks/page_sections.py)."""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def pages():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        module = importlib.import_module("pages")
        module._load_renderers()
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_every_generated_section_matches_its_json(pages) -> None:
    assert set(pages.SECTIONS) >= {"quickstart-readme", "quickstart-page", "recipes-digits", "recipes-fashion",
                                   "results", "backbones-small", "backbones-families",
                                   "meta-results", "meta-ksweep", "meta-sinusoid", "teacher-example", "prompt-results"}
    assert pages.mismatches() == []


def test_a_number_typed_into_a_section_is_caught(pages, tmp_path, monkeypatch) -> None:
    s = pages.SECTIONS["results"]
    for rel in {f for sec in pages.SECTIONS.values() for f in (sec.page, sec.data)}:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pages.ROOT / rel, tmp_path / rel)
    monkeypatch.setattr(pages, "ROOT", tmp_path)
    assert not [m for m in pages.mismatches() if m.startswith("results:")]
    page = tmp_path / s.page
    text = page.read_text()
    body = pages.current(s)
    i = next(i for i, ch in enumerate(body) if ch.isdigit())
    edited = body[:i] + str((int(body[i]) + 1) % 10) + body[i + 1:]
    page.write_text(text.replace(body, edited))
    assert any(m.startswith("results:") and "differs" in m for m in pages.mismatches())
    assert pages.render(["results"]) == ["results"]  # rendering puts the measured text back
    assert pages.current(s) == body


def _run(accs: list[float], ens: float, train: float = 1.0) -> dict:
    gens = [{"generation": k, "train": {"acc": train}, "test": {"acc": a, "nll": 0.5, "ece": 0.02}}
            for k, a in enumerate(accs)]
    return {"summary": {"seed": 0, "generations": gens, "ensembles": [{"members": [0, 1, 2], "test":
                                                                        {"acc": ens, "nll": 0.4}}]},
            "wall_seconds": 10.0, "cpu_seconds": 9.0, "load_average": [1.0, 1.0, 1.0], "teacher_entropy": {"0": 0.1}}


def test_results_verdicts_come_from_the_paired_differences(pages) -> None:
    import page_sections as ps

    goal = {"student_margin": 0.1, "ensemble_gain": 0.5}
    # seeds: student gains +0.4 and -0.2 points over gen-0 -> mean +0.1 (>= -0.1: met);
    # ensemble - gen-0 = +0.3 and +0.5 -> mean +0.4 (< 0.5: not met).
    entry = {"recipe": "r.yaml", "overrides": [], "schedule": "s",
             "seeds": {"0": _run([0.800, 0.804, 0.806], 0.803), "1": _run([0.810, 0.808, 0.809], 0.815)}}
    text = "\n".join(ps.results_dataset("toy", entry, goal))
    assert "| gen-1 − gen-0 | 0.10 ± 0.42 | -0.20 … +0.40 | +0.40, -0.20 |" in text  # std of (0.4, -0.2) = 0.424
    assert "the worst student is +0.10) — **met**" in text
    assert "ensemble ≥ gen-0 + 0.5 points (+0.40) — **not met**" in text
    assert "| gen-0 | 100.00 ± 0.00 | 80.50 ± 0.71 |" in text  # mean of 80.0, 81.0 and their std 0.707
    entry["seeds"]["1"] = _run([0.810, 0.806, 0.809], 0.820)  # gen-1 - gen-0 = +0.4, -0.4: mean 0.0; worst gen-2
    text = "\n".join(ps.results_dataset("toy", entry, goal))
    assert "the worst student is +0.00) — **met**" in text and "(+0.65) — **met**" in text
    entry["seeds"]["1"] = _run([0.810, 0.802, 0.809], 0.820)  # gen-1 - gen-0 mean (0.4 - 0.8) / 2 = -0.2
    assert "the worst student is -0.20) — **not met**" in "\n".join(ps.results_dataset("toy", entry, goal))


def test_meta_sections_derive_their_counts_from_the_json(pages) -> None:
    import page_sections_meta as psm

    # 3 epochs x 90 training episodes / meta-batch 6 = 45 meta-iterations, whatever order the overrides come in
    schedule = ["--episodes.meta_batch", "6", "--trainer.max_epochs", "3", "--episodes.train_episodes", "90"]
    assert psm.meta_iterations(schedule) == 45
    row = {"mse": 0.5, "ci95": 0.01, "episodes": 600, "seconds_per_meta_iteration": 0.1, "wall_seconds": 9.6}
    info = {"machine": {"date": "d", "cpu": "c", "cores": 2, "load_average_at_start": [1.0], "torch": "t",
                        "commit": "0123456789abc"}, "threads": 2, "load_average_at_end": [2.0], "wall_seconds": 20.4}
    text = psm.meta_sinusoid({"info": info, "rows": {"a": row, "b": row | {"mse": 0.25}}})
    assert "| b | 0.250 ± 0.010 | 0.1000 | 10 |" in text and "600 meta-test sinusoids" in text
    assert "2 threads, commit `0123456789`" in text and "(total 20 s)" in text
    with pytest.raises(ValueError, match="differ"):  # "the same for every row" is checked, not assumed
        psm.meta_sinusoid({"info": info, "rows": {"a": row, "b": row | {"episodes": 200}}})
