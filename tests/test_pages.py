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
                                   "meta-results", "meta-ksweep", "meta-sinusoid", "meta-results-reading",
                                   "meta-ksweep-answers", "teacher-example", "prompt-results"}
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
    assert "(2 cores, load average [1.0]" in text  # 1-minute loads 1.0 and 2.0 do not exceed the 2 cores
    busy = info | {"load_average_at_end": [2.5]}
    assert "(2 cores shared with other jobs, load average" in psm.measured(busy, "s.py")


def _info(start: float = 1.0, end: float = 1.5) -> dict:
    return {"machine": {"date": "d", "cpu": "c", "cores": 2, "load_average_at_start": [start, 0.0, 0.0], "torch": "t",
                        "commit": "0123456789abc"}, "threads": 1, "load_average_at_end": [end, 0.0, 0.0],
            "wall_seconds": 600.0, "recipe": "r.yaml",
            "schedule": ["--inner.lr", "0.2", "--episodes.meta_batch", "2", "--episodes.train_episodes", "60",
                         "--trainer.max_epochs", "1"]}


def test_meta_results_reading_ranks_by_ci_overlap(pages) -> None:
    import page_sections_meta as psm

    r = {"a": {"mean": 0.60, "ci95": 0.01}, "b": {"mean": 0.59, "ci95": 0.01}, "c": {"mean": 0.50, "ci95": 0.01},
         "d": {"mean": 0.40, "ci95": 0.01}}
    labels = {k: k.upper() for k in r}
    assert psm.ranking(r, labels) == "A and B are best, within the CIs of each other; C comes next; D trails"
    r["b"] = {"mean": 0.55, "ci95": 0.01}  # 0.05 apart > 0.01 + 0.01: b leaves a's group
    assert psm.ranking(r, labels) == "A is best; B comes next; then C; D trails"
    # c overlaps a (0.04 <= 0.051) but not b (0.03 > 0.002): one group, not mutually within the CIs
    r = {"a": {"mean": 0.60, "ci95": 0.05}, "b": {"mean": 0.59, "ci95": 0.001}, "c": {"mean": 0.56, "ci95": 0.001}}
    assert psm.ranking(r, labels) == "A, B and C are best, each within the CIs of A"

    def run(mean: float, baselines: dict | None = None) -> dict:
        return {"test": {"mean": mean, "ci95": 0.01, "episodes": 10}} | ({"baselines": baselines} if baselines else {})
    same = {"mean": 0.3, "ci95": 0.01}
    d = {"info": _info(), "runs": {"maml": run(0.5), "anil": run(0.2, {"nearest_mean": same,
                                                                         "nearest_neighbour": same})}}
    text = psm.meta_results_reading(d)
    assert text.startswith("What the table says, for this small setting: MAML is best; nearest class mean and "
                           "1-nearest neighbour come next, within the CIs of each other; ANIL trails.")
    assert "rows are identical" in text and "measured at a 1-minute load average 1 at start, 1.5 at end" in text
    d["runs"]["anil"]["baselines"]["nearest_neighbour"] = {"mean": 0.31, "ci95": 0.01}
    d["info"] = _info(start=4.0)
    text = psm.meta_results_reading(d)
    assert "rows are not identical" in text and "while other jobs loaded the cores" in text


def _pt(k: int, acc: float, gmean: float = 2.0, gfirst: float = 2.0, mib: float = 5.0, secs: float = 0.1,
        bad: int = 0) -> dict:
    return {"K": k, "accuracy": acc, "ci95": 0.01, "grad_norm_mean": gmean, "grad_norm_first": gfirst,
            "non_finite_iterations": bad, "graph_mib": mib, "seconds_per_meta_iteration": secs, "wall_seconds": 10.0}


def test_meta_ksweep_verdicts_flip_with_the_data(pages) -> None:
    import page_sections_meta as psm

    ks = (1, 5, 20)
    so = [_pt(k, a, gmean=g, gfirst=10.0, mib=2.0 + k, secs=1.0) for k, a, g in zip(ks, (0.5, 0.66, 0.665),
                                                                                     (5.0, 20.0, 30.0), strict=True)]
    fo = [_pt(k, a, gfirst=2.0, mib=4.0, secs=2.0) for k, a in zip(ks, (0.5, 0.66, 0.66), strict=True)]
    d = {"info": _info(end=3.0), "points": {"maml": so, "fomaml": fo}}
    text = psm.meta_ksweep_answers(d)
    assert "(`r.yaml`, inner lr 0.2, 30 meta-iterations)" in text  # 1 epoch x 60 episodes / meta-batch 2
    assert "Neither up to K = 20" in text and "MAML: 1× to 6×" in text  # 30 / 5
    assert "5.0 to 5.0 times FOMAML's" in text and "at least 80% of MAML's norm" in text  # 1 - 1/5
    assert "Several: MAML's meta-test accuracy goes from 50.0% at K = 1 to 66.5% at K = 20 (its best), every K " \
           "from 5 on" in text and "past K = 5, more steps add nothing" in text
    assert "The same accuracy within the CIs at every K" in text
    assert "MAML's saved tensors grow linearly with K (about 1.00 MiB per inner step" in text  # 2 + K
    assert "FOMAML's do not grow with K" in text and "the cores were oversubscribed" in text
    assert "slower than MAML at K = 1, 5 and 20" in text
    assert "The sweep took 10 minutes of wall time" in text

    so[2] = so[2] | {"grad_norm_mean": 60.0, "accuracy": 0.60, "graph_mib": 40.0}  # 12x K = 1's; a drop at K = 20
    fo[1] = fo[1] | {"accuracy": 0.62, "grad_norm_mean": 0.1}
    text = psm.meta_ksweep_answers(d | {"info": _info()})
    assert "Not in every case up to K = 20: MAML's explodes (0 non-finite iterations, mean norm up to 12.0×" in text
    assert "FOMAML's vanishes (mean norm down to 0.05×" in text
    assert "every K from 5 on within the CIs of it except K = 20" in text
    assert "more steps do not always help: MAML at K = 20 fall" in text
    assert "Different accuracy beyond the CIs at K = 5 (MAML higher) and K = 20 (FOMAML higher)" in text
    assert "grow with K, not linearly" in text and "oversubscribed" not in text
    flat = [_pt(k, 0.5) for k in ks]
    assert psm.inner_steps({"maml": flat, "fomaml": flat}).startswith("One is enough")
    assert "explodes (1 non-finite" in psm.explode_or_vanish({"maml": [_pt(1, 0.5), _pt(2, 0.5, bad=1)]})
