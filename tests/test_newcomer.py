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
