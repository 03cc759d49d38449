"""Generated docs: every section of every page is exactly what its JSON renders to, no number outside the sections of
those pages is typed in by hand, the renderers compute their verdicts from the data, and the methods benchmark
writes the JSON its renderer reads (benchmarks/pages.py, benchmarks/sections.py, benchmarks/*_page.py)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from benchmarks import (
    meta_ksweep_page,
    meta_results_page,
    meta_sinusoid_page,
    methods,
    methods_page,
    pages,
    results_page,
)
from benchmarks.sections import SECTIONS

#: numbers stated in the prose of the pages with measured numbers (outside their generated sections, code and links):
#: recipe settings, dataset facts, published results, years. A number not listed here is taken for one typed in by
#: hand: measure it (a section rendered from JSON) or, when it is a stated fact, add it here.
STATED = {
    "README.md": "0 2",
    "docs/quickstart.md": "0 8 10 15 1,797",
    "docs/recipes.md": "0 0.1 0.9 1 2 4 8 10 14 15 16 20 24.38 25.32 28 32 64 69.06 70.66 72.34 82 123 164 240 2,000 "
                       "10,000 50,000 60,000",
    "docs/results.md": "0 0.1 0.5 0.9 1 4 8.75 15.5 24.38 25.32 69.06 70.66 72.34 91.25 164 240 2016 2018 2020",
    "docs/backbones.md": "1 2 3 4 8 16 18 28 32",
    "docs/teacher.md": "0 0.9 2 3 4 8 15 32",
    "docs/methods.md": "0 0.05 1 70.66 71.97 72.98 73.08 73.33 73.54 74.11 74.68 74.81 74.92 76.23 76.32 240",
    "docs/prompts.md": "0 1 2 3 4 32 48 96 100 512",
    "docs/prompt-results-lm.md": "",
    "docs/datasets.md": "0 0.1 0.1307 0.2435 0.2470 0.2564 0.2616 0.2673 0.2762 0.2860 0.3053 0.3081 0.3530 0.3760 "
                        "0.4409 0.4465 0.4822 0.4865 0.4914 0.5071 2 4 8 10 28 32 75 540 1,257 1,797 10,000 50,000 "
                        "60,000 1 5 175 250 256 512 90,868,376",  # text: countryinfo's counts, MiniLM's file
    "docs/dark-knowledge.md": "0 0.040 0.693 0.9 1 2 3 4 5 10 15 16 20 90 100 50,000",
    "docs/meta-learning.md": "0 0.01 0.1 0.4 1 2 3 4 5 8 10 17 20 25 28 32 40 48.07 48.70 63.11 63.15 90 95.8 98.7 "
                             "98.9 99.9 200 300 400 1,200 2017 2020",
    "docs/export.md": "0 1 2 8 16 255",
    # DDP's examples (processes, GPUs, epochs, samples), sweeps' (values, workers, heartbeat s), PostgreSQL 15 on
    # port 5432, optuna#1300, SQLAlchemy 2.1, optuna-dashboard 0.21.0
    "docs/distributed.md": "0 0.21 1 2 2.1 3 4 5 6 15 20 300 1300 5432",
    "docs/language-models.md": "0 1 22.7 134.5",  # generation numbers; the two bases' sizes in millions
    "docs/benchmarks.md": "",
    "docs/cache-scale.md": "",
    "docs/cli.md": "",
    "docs/concepts.md": "0 1 2 4 8 10 20 40 100 200 240 400 512 1000 2015 2017 2022 2024 "
                        # the relational/contrastive losses' defaults and citations, an embedding's bytes (512 x 2)
                        "0.07 0.5 0.8 1,024 128 16384 2018 2019 2020 25 3000 30000 50",
}
PAGES = list(dict.fromkeys(s.page for s in SECTIONS))
NUMBER = re.compile(r"(?<![\w.\-])\d[\d,]*(?:\.\d+)?")


def prose_numbers(page: str, text: str) -> set[str]:
    """The numbers in a page's prose: outside its generated sections, code (fenced and inline), comments and links."""
    for s in SECTIONS:
        if s.page == page and (body := pages.body(s, text)) is not None:
            text = text.replace(f"{s.begin()}\n{body}{s.end()}", "")
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    for pattern in (r"```.*?```", r"`[^`\n]*`", r"<!--.*?-->"):
        text = re.sub(pattern, "", text, flags=re.S)
    return {n.rstrip(",") for n in NUMBER.findall(text)}


def test_every_generated_section_matches_its_json() -> None:
    assert {"quickstart-readme", "quickstart-page", "recipes-digits", "recipes-fashion", "results", "backbones-small",
            "backbones-families", "meta-results", "meta-ksweep", "meta-sinusoid", "meta-results-reading",
            "meta-ksweep-answers", "teacher-example", "prompt-results", "datasets-speed", "dk-speed", "dk-fashion",
            "methods-setting", "methods-table", "methods-cost", "benchmarks-run", "benchmarks-regimes",
            "cli-run", "export-card"} <= {s.name for s in SECTIONS}
    assert pages.mismatches() == []


def test_the_section_table_names_real_pages_json_and_scripts() -> None:
    keys = [(s.page, s.name) for s in SECTIONS]
    assert len(keys) == len(set(keys))  # a marker names one section of its page
    for s in SECTIONS:
        assert (pages.ROOT / s.page).is_file() and s.data.startswith("docs/data/") and s.data.endswith(".json")
        assert (pages.ROOT / (s.script.replace(".", "/") + ".py")).is_file(), s.script


@pytest.fixture
def copy(tmp_path, monkeypatch):
    """The pages and JSON of every section, copied under tmp_path, which becomes the root the mechanism works in."""
    for rel in {f for s in SECTIONS for f in (s.page, s.data)}:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pages.ROOT / rel, tmp_path / rel)
    monkeypatch.setattr(pages, "ROOT", tmp_path)
    return tmp_path


def test_a_number_typed_into_any_section_is_caught_and_rendering_puts_it_back(copy) -> None:
    assert pages.mismatches() == []
    empty = []
    for s in SECTIONS:
        page = copy / s.page
        text = page.read_text()
        body = pages.body(s, text)
        i = next((i for i, ch in enumerate(body) if ch.isdigit()), None)
        if i is None:
            empty.append(s.name)
            continue
        page.write_text(text.replace(f"{s.begin()}\n{body}", f"{s.begin()}\n{body[:i]}{(int(body[i]) + 1) % 10}"
                                                               f"{body[i + 1:]}"))
        assert [m for m in pages.mismatches() if m.startswith(f"{s.name}:")] == [
            f"{s.name}: {s.page} differs from what {s.data} renders to (run python -m benchmarks.pages)"]
        assert s.name in pages.render([s.name])  # rendering puts the measured text back
        assert page.read_text() == text
    assert empty == ["benchmarks-ban", "benchmarks-gpu"]  # a part the profile did not run; "this run had no GPU"


@pytest.mark.parametrize("page", PAGES)
def test_no_number_is_typed_outside_the_sections(page) -> None:
    found = prose_numbers(page, (pages.ROOT / page).read_text())
    typed = found - set(STATED[page].split())
    assert not typed, f"{page}: numbers typed by hand outside the generated sections: {sorted(typed)}"


def test_a_number_typed_into_the_prose_is_caught(copy) -> None:
    page = copy / "docs/methods.md"
    text = page.read_text()
    assert prose_numbers("docs/methods.md", text) <= set(STATED["docs/methods.md"].split())
    ce = f"{json.loads((copy / methods.DATA).read_text())['relative_cost']['alone_seconds_per_epoch']:.1f}"
    typed = text.replace("## Published", f"The student alone took {ce} s per epoch.\n\n## Published")
    assert prose_numbers("docs/methods.md", typed) - set(STATED["docs/methods.md"].split()) == {ce}
    assert f"({ce} s/epoch)" in text  # the same number inside its section is measured, not typed


def _gen(acc: float, train_seconds: float, epochs: int = 6) -> dict:
    return {"test": {"acc": acc}, "train_seconds": train_seconds, "epochs": epochs}


def test_the_methods_script_writes_the_json_its_renderer_reads(copy) -> None:
    """methods.py's rows and document on fake runs, written by pages.publish and rendered into a copy of the page."""
    seeds = [0, 1]
    rows = [methods.method_row(methods.ALONE, "labels only", seeds, [_gen(0.30, 60), _gen(0.32, 66)], [100.4, 90], 0),
            methods.method_row("KD", "kd", seeds, [_gen(0.34, 63), _gen(0.35, 63)], [92, 96], 0),
            methods.method_row("DKD", "dkd", seeds, [_gen(0.10, 84), _gen(0.11, 84)], [90, 94], 0),
            methods.method_row("FitNet", "hint", seeds, [_gen(0.33, 126), _gen(0.34, 126)], [143, 166], 4224),
            methods.method_row("AT", "at", seeds, [_gen(0.36, 147), _gen(0.37, 147)], [155, 156], 0)]
    provenance = {"cpu": "cpu", "cores": 2, "gpu": None, "load_average_at_start": [0.5, 1.0, 1.5],
                  "commit": "0123456789abcdef", "date": "2026-01-02"}
    setting = {"train_images": 2500, "test_images": 10000, "student": "cifar_resnet20", "epochs": 6,
               "schedule": "SGD lr 0.1 cosine, batch 128", "seeds": seeds}
    teacher = {"backbone": "cifar_resnet56", "epochs": 10, "seed": 0, "wall_seconds": 855.6, "test_acc": 0.3549}
    doc = methods.document(provenance, setting, teacher, rows)
    # alone: (10 + 11) / 2 = 10.5 s/epoch; cached: KD 10.5, DKD 14 -> 1.00, 1.33; online: FitNet 21, AT 24.5 -> 2, 2.33
    assert doc["relative_cost"]["alone_seconds_per_epoch"] == pytest.approx(10.5)
    assert doc["relative_cost"]["cached"] == pytest.approx([1.0, 14 / 10.5])
    assert doc["relative_cost"]["online"] == pytest.approx([2.0, 24.5 / 10.5])
    assert pages.publish(methods.DATA, doc) == ["methods-setting", "methods-table", "methods-cost"]
    assert json.loads((copy / methods.DATA).read_text()) == json.loads(json.dumps(doc))
    page = (copy / "docs/methods.md").read_text()
    assert "Commit: `0123456789`." in page and "(seed 0; 856 s wall), test accuracy 35.49%;" in page
    assert "seeds 0, 1." in page and "a fixed random 2,500 of the training images" in page
    assert "| student alone (CE) | 31.00 ± 1.41 | 30.00, 32.00 | 10.5 | 100, 90 | 0 | labels only |" in page
    assert "| FitNet | 33.50 ± 0.71 | 33.00, 34.00 | 21.0 | 143, 166 | 4,224 | hint |" in page
    assert ("Relative to the student alone (10.5 s/epoch), the methods read from the soft-label cache took 1.00-1.33x "
            "its time per epoch and those with an online teacher 2.00-2.33x.") in page
    assert pages.mismatches() == []  # the page is what the JSON renders to


def _keys(d: object) -> set[str]:
    """Every key path of a JSON document (list items merged)."""
    if isinstance(d, dict):
        return {k for k in d} | {f"{k}.{sub}" for k, v in d.items() for sub in _keys(v)}
    if isinstance(d, list):
        return {sub for v in d for sub in _keys(v)}
    return set()


def test_the_committed_methods_json_has_the_schema_the_script_writes() -> None:
    """docs/data/methods.json is what methods.py writes: the script's schema, key for key."""
    committed = json.loads((pages.ROOT / methods.DATA).read_text())
    row = methods.method_row("KD", "kd", [0], [_gen(0.3, 6)], [9], 0)
    written = _keys(methods.document({k: 0 for k in ("cpu", "cores", "gpu", "load_average_at_start", "commit",
                                                     "date")}, committed["setting"], committed["teacher"],
                                     [methods.method_row(methods.ALONE, "", [0], [_gen(0.3, 6)], [9], 0), row,
                                      methods.method_row("AT", "", [0], [_gen(0.3, 6)], [9], 0)]))
    assert _keys(committed) == written
    for render in (methods_page.setting, methods_page.methods, methods_page.cost):
        assert render(committed)


def _run(accs: list[float], ens: float, train: float = 1.0) -> dict:
    gens = [{"generation": k, "train": {"acc": train}, "test": {"acc": a, "nll": 0.5, "ece": 0.02}}
            for k, a in enumerate(accs)]
    return {"summary": {"seed": 0, "generations": gens, "ensembles": [{"members": [0, 1, 2], "test":
                                                                        {"acc": ens, "nll": 0.4}}]},
            "wall_seconds": 10.0, "cpu_seconds": 9.0, "load_average": [1.0, 1.0, 1.0], "teacher_entropy": {"0": 0.1}}


def test_results_verdicts_come_from_the_paired_differences() -> None:
    goal = {"student_margin": 0.1, "ensemble_gain": 0.5}
    # seeds: student gains +0.4 and -0.2 points over gen-0 -> mean +0.1 (>= -0.1: met);
    # ensemble - gen-0 = +0.3 and +0.5 -> mean +0.4 (< 0.5: not met).
    entry = {"recipe": "r.yaml", "overrides": [], "schedule": "s",
             "seeds": {"0": _run([0.800, 0.804, 0.806], 0.803), "1": _run([0.810, 0.808, 0.809], 0.815)}}
    text = "\n".join(results_page.results_dataset("toy", entry, goal))
    assert "| gen-1 − gen-0 | 0.10 ± 0.42 | -0.20 … +0.40 | +0.40, -0.20 |" in text  # std of (0.4, -0.2) = 0.424
    assert "the worst student is +0.10) — **met**" in text
    assert "ensemble ≥ gen-0 + 0.5 points (+0.40) — **not met**" in text
    assert "| gen-0 | 100.00 ± 0.00 | 80.50 ± 0.71 |" in text  # mean of 80.0, 81.0 and their std 0.707
    entry["seeds"]["1"] = _run([0.810, 0.806, 0.809], 0.820)  # gen-1 - gen-0 = +0.4, -0.4: mean 0.0; worst gen-2
    text = "\n".join(results_page.results_dataset("toy", entry, goal))
    assert "the worst student is +0.00) — **met**" in text and "(+0.65) — **met**" in text
    entry["seeds"]["1"] = _run([0.810, 0.802, 0.809], 0.820)  # gen-1 - gen-0 mean (0.4 - 0.8) / 2 = -0.2
    assert "the worst student is -0.20) — **not met**" in "\n".join(results_page.results_dataset("toy", entry, goal))


def test_meta_sections_derive_their_counts_from_the_json() -> None:
    # 3 epochs x 90 training episodes / meta-batch 6 = 45 meta-iterations, whatever order the overrides come in
    schedule = ["--episodes.meta_batch", "6", "--trainer.max_epochs", "3", "--episodes.train_episodes", "90"]
    assert meta_ksweep_page.meta_iterations(schedule) == 45
    row = {"mse": 0.5, "ci95": 0.01, "episodes": 600, "seconds_per_meta_iteration": 0.1, "wall_seconds": 9.6}
    info = {"machine": {"date": "d", "cpu": "c", "cores": 2, "load_average_at_start": [1.0], "torch": "t",
                        "commit": "0123456789abc"}, "threads": 2, "load_average_at_end": [2.0], "wall_seconds": 20.4}
    text = meta_sinusoid_page.meta_sinusoid({"info": info, "rows": {"a": row, "b": row | {"mse": 0.25}}})
    assert "| b | 0.250 ± 0.010 | 0.1000 | 10 |" in text and "600 meta-test sinusoids" in text
    assert "2 threads, commit `0123456789`" in text and "(total 20 s)" in text
    with pytest.raises(ValueError, match="differ"):  # "the same for every row" is checked, not assumed
        meta_sinusoid_page.meta_sinusoid({"info": info, "rows": {"a": row, "b": row | {"episodes": 200}}})
    assert "(2 cores, load average [1.0]" in text  # 1-minute loads 1.0 and 2.0 do not exceed the 2 cores
    busy = info | {"load_average_at_end": [2.5]}
    assert "(2 cores shared with other jobs, load average" in meta_results_page.measured(busy, "s.py")


def _info(start: float = 1.0, end: float = 1.5) -> dict:
    return {"machine": {"date": "d", "cpu": "c", "cores": 2, "load_average_at_start": [start, 0.0, 0.0], "torch": "t",
                        "commit": "0123456789abc"}, "threads": 1, "load_average_at_end": [end, 0.0, 0.0],
            "wall_seconds": 600.0, "recipe": "r.yaml",
            "schedule": ["--inner.lr", "0.2", "--episodes.meta_batch", "2", "--episodes.train_episodes", "60",
                         "--trainer.max_epochs", "1"]}


def test_meta_results_reading_ranks_by_ci_overlap() -> None:
    r = {"a": {"mean": 0.60, "ci95": 0.01}, "b": {"mean": 0.59, "ci95": 0.01}, "c": {"mean": 0.50, "ci95": 0.01},
         "d": {"mean": 0.40, "ci95": 0.01}}
    labels = {k: k.upper() for k in r}
    assert meta_results_page.ranking(r, labels) == (
        "A and B are best, within the CIs of each other; C comes next; D trails")
    r["b"] = {"mean": 0.55, "ci95": 0.01}  # 0.05 apart > 0.01 + 0.01: b leaves a's group
    assert meta_results_page.ranking(r, labels) == "A is best; B comes next; then C; D trails"
    # c overlaps a (0.04 <= 0.051) but not b (0.03 > 0.002): one group, not mutually within the CIs
    r = {"a": {"mean": 0.60, "ci95": 0.05}, "b": {"mean": 0.59, "ci95": 0.001}, "c": {"mean": 0.56, "ci95": 0.001}}
    assert meta_results_page.ranking(r, labels) == "A, B and C are best, each within the CIs of A"

    def run(mean: float, baselines: dict | None = None) -> dict:
        return {"test": {"mean": mean, "ci95": 0.01, "episodes": 10}} | ({"baselines": baselines} if baselines else {})
    same = {"mean": 0.3, "ci95": 0.01}
    d = {"info": _info(), "runs": {"maml": run(0.5), "anil": run(0.2, {"nearest_mean": same,
                                                                         "nearest_neighbour": same})}}
    text = meta_results_page.meta_results_reading(d)
    assert text.startswith("What the table says, for this small setting: MAML is best; nearest class mean and "
                           "1-nearest neighbour come next, within the CIs of each other; ANIL trails.")
    assert "rows are identical" in text and "measured at a 1-minute load average 1 at start, 1.5 at end" in text
    d["runs"]["anil"]["baselines"]["nearest_neighbour"] = {"mean": 0.31, "ci95": 0.01}
    d["info"] = _info(start=4.0)
    text = meta_results_page.meta_results_reading(d)
    assert "rows are not identical" in text and "while other jobs loaded the cores" in text


def _pt(k: int, acc: float, gmean: float = 2.0, gfirst: float = 2.0, mib: float = 5.0, secs: float = 0.1,
        bad: int = 0) -> dict:
    return {"K": k, "accuracy": acc, "ci95": 0.01, "grad_norm_mean": gmean, "grad_norm_first": gfirst,
            "non_finite_iterations": bad, "graph_mib": mib, "seconds_per_meta_iteration": secs, "wall_seconds": 10.0}


def test_meta_ksweep_verdicts_flip_with_the_data() -> None:
    ks = (1, 5, 20)
    so = [_pt(k, a, gmean=g, gfirst=10.0, mib=2.0 + k, secs=1.0) for k, a, g in zip(ks, (0.5, 0.66, 0.665),
                                                                                     (5.0, 20.0, 30.0), strict=True)]
    fo = [_pt(k, a, gfirst=2.0, mib=4.0, secs=2.0) for k, a in zip(ks, (0.5, 0.66, 0.66), strict=True)]
    d = {"info": _info(end=3.0), "points": {"maml": so, "fomaml": fo}}
    text = meta_ksweep_page.meta_ksweep_answers(d)
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
    text = meta_ksweep_page.meta_ksweep_answers(d | {"info": _info()})
    assert "Not in every case up to K = 20: MAML's explodes (0 non-finite iterations, mean norm up to 12.0×" in text
    assert "FOMAML's vanishes (mean norm down to 0.05×" in text
    assert "every K from 5 on within the CIs of it except K = 20" in text
    assert "more steps do not always help: MAML at K = 20 fall" in text
    assert "Different accuracy beyond the CIs at K = 5 (MAML higher) and K = 20 (FOMAML higher)" in text
    assert "grow with K, not linearly" in text and "oversubscribed" not in text
    flat = [_pt(k, 0.5) for k in ks]
    assert meta_ksweep_page.inner_steps({"maml": flat, "fomaml": flat}).startswith("One is enough")
    assert "explodes (1 non-finite" in meta_ksweep_page.explode_or_vanish({"maml": [_pt(1, 0.5), _pt(2, 0.5, bad=1)]})
