"""A newcomer's first hour: the README names the data setting and says its table is an example, every progress bar
says what it is doing, a long backbone label is shortened in the table."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from distill.summary import short_label, summary_table

ROOT = Path(__file__).resolve().parents[1]


def test_readme_names_the_data_setting_and_calls_its_table_an_example() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "DISTILL_DATA" in readme
    assert "a table like this example" in readme and "at another commit or on another machine" in readme


def test_every_progress_bar_says_what_it_is_doing(tmp_path) -> None:
    env = {**os.environ, "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", "recipes/digits-ban.yaml", "--out",
                           str(tmp_path / "run"), "--generations", "1", "--trainer.max_epochs", "1",
                           "--data.train_subset", "100"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "Predicting" not in text
    for k in (0, 1):
        for doing in ("soft-label cache", "test set", "training set (accuracy)"):
            assert f"gen-{k}: {doing}" in text, (k, doing)


def test_a_long_backbone_label_is_shortened_in_the_table() -> None:
    long = ("prompted_vit(base='vit_tiny_patch16_224', base_args={'depth': 3, 'embed_dim': 24}, "
            "prompt={'kind': 'deep', 'length': 8}, source={'seed': 0})")
    assert short_label(long) == "prompted_vit(…)"
    assert short_label("small_cnn(width=8)") == "small_cnn(width=8)"
    test = {"acc": 0.5, "nll": 1.0, "ece": 0.1}
    gen = {"generation": 0, "backbone": long, "teacher": None, "epochs": 1, "test": test, "train": {"acc": 0.5},
           "agreement_with_teacher": None, "train_seconds": 1.0, "parameters": {"trainable": 10, "total": 100}}
    console = Console(width=120, record=True, color_system=None, file=io.StringIO())
    console.print(summary_table({"recipe": "r", "seed": 0, "generations": [gen], "ensembles": []}))
    rows = [line for line in console.export_text().splitlines() if "gen-0" in line or "vit" in line]
    assert len(rows) == 1 and "prompted_vit(…)" in rows[0]  # one line, not the wrapped repr


def test_the_prompt_kinds_legend_labels_do_not_overlap(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "docs"))
    from gen_prompt_figure import draw

    fig = draw()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    fig.savefig(io.BytesIO(), dpi=130)  # the layout as saved
    boxes = [t.get_window_extent(renderer) for t in ax.texts] + [p.get_window_extent(renderer) for p in ax.patches]
    overlaps = [(i, j) for i, a in enumerate(boxes) for j, b in enumerate(boxes[:i])
                if a.x0 < b.x1 - 1 and b.x0 < a.x1 - 1 and a.y0 < b.y1 - 1 and b.y0 < a.y1 - 1]
    assert not overlaps, [(ax.texts[i].get_text() if i < len(ax.texts) else i) for i, _ in overlaps]


def test_the_k_sweep_figure_leaves_time_out_when_the_cores_were_oversubscribed(tmp_path) -> None:
    import json

    from benchmarks.meta_ksweep import figure
    from benchmarks.meta_ksweep_page import meta_ksweep

    d = json.loads((ROOT / "docs" / "data" / "meta-ksweep.json").read_text())
    assert len(figure(d["points"], tmp_path / "three.png").axes) == 3
    assert len(figure(d["points"], tmp_path / "two.png", with_time=False).axes) == 2
    busy = {**d["info"], "machine": {**d["info"]["machine"], "cores": 2, "load_average_at_start": [5.0, 5.0, 5.0]},
            "load_average_at_end": [6.0, 6.0, 6.0]}
    quiet = {**busy, "machine": {**busy["machine"], "load_average_at_start": [0.5, 0.5, 0.5]},
             "load_average_at_end": [1.0, 1.0, 1.0]}
    text = meta_ksweep({**d, "info": busy})
    assert "The figure leaves time out" in text and "re-measurement on a quiet machine" in text
    assert "accuracy and time against K" in meta_ksweep({**d, "info": quiet})
    assert "leaves time out" not in meta_ksweep({**d, "info": quiet})
