"""The benchmark suite: verdicts follow the spread, every key is produced, the page is a pure function of the JSON,
and the GPU script runs end to end on a CPU (``--dry-run``). No speed is asserted: this machine is shared."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from benchmarks import run as suite
from benchmarks.suite_common import TINY
from benchmarks.suite_page import _above
from benchmarks.suite_timing import ratio, spread, verdict
from distill.data import data_root

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "benchmarks"
RESULT = REPO / "docs" / "data" / "benchmarks.json"
REGIME_KEYS = {"lightning_over_torch", "cached_over_ce", "online_over_ce", "stock_bar_over_ours",
               "build_over_inference", "build_finish_seconds", "images_per_s", "step_ms", "floor_ms_per_step",
               "floor_bound", "profile_ms_per_step", "load_average_per_round", "seconds", "settings", "data",
               "plain_over_torch", "ours_over_plain", "plain_floor_ms_per_step", "extra_ms_per_step",
               "above_floor_ms_per_step", "floor_python_calls_per_step", "plain_extra_ms_per_step",
               "above_plain_ms_per_step", "lightning_k4_over_torch", "lightning_k16_over_torch"}
VARIANTS = {"ours", "ours_stock_bar", "torch", "cached", "online", "empty_step", "plain", "plain_empty", "data_only",
            "build", "inference", "ours_k4", "ours_k16"}
HAVE_FASHION = (data_root() / "fashion-mnist").is_dir()


def test_verdict_reads_the_whole_spread():
    assert verdict([0.96, 0.97, 0.99], ">=", 0.95) == "met"
    assert verdict([0.96, 0.94, 0.99], ">=", 0.95) == "within noise"
    assert verdict([0.90, 0.94], ">=", 0.95) == "missed"
    assert verdict([1.01, 1.02], "<=", 1.03) == "met" and verdict([1.01, 1.05], "<=", 1.03) == "within noise"
    # throughput ratio: bare times over our times; ratio of medians, per-round spread
    r = ratio("lightning_over_torch", [1.0, 2.0, 3.0], [2.0, 2.0, 2.0])
    assert r["value"] == pytest.approx(1.0) and r["rounds"] == pytest.approx([0.5, 1.0, 1.5])
    assert (r["min"], r["max"], r["verdict"], r["goal"]) == (0.5, 1.5, "within noise", [">=", 0.95])
    assert ratio("cached_over_ce", [1.1, 1.2], [1.0, 1.0])["verdict"] == "missed"
    assert ratio("cached_over_ce", [1.0, 1.02], [1.0, 1.0])["verdict"] == "met"
    assert ratio("online_over_ce", [2.0], [1.0]) | {"rounds": None} == {
        "value": 2.0, "min": 2.0, "max": 2.0, "rounds": None, "goal": None, "verdict": "-"}


@pytest.mark.skipif(not HAVE_FASHION, reason="Fashion-MNIST files not found (the accuracy part needs them)")
def test_tiny_suite_writes_every_key_and_render_reproduces_the_page(tmp_path):
    import torch

    threads = torch.get_num_threads()
    result = suite.run_suite(TINY, tmp_path / "work", "python -m benchmarks.run --profile tiny")
    # The profile's one thread must not leak into later in-process runs (resume tests compare them with subprocesses).
    assert torch.get_num_threads() == threads
    assert set(result["regimes"]) == {"small", "large"}
    for regime in result["regimes"].values():
        assert REGIME_KEYS <= set(regime) and set(regime["seconds"]) == VARIANTS
        assert all(len(v["values"]) == TINY.rounds and v["min"] > 0 for v in regime["seconds"].values())
        assert regime["lightning_over_torch"]["verdict"] in ("met", "within noise", "missed")
        assert regime["build_finish_seconds"]["sha256"]["min"] >= 0
        assert any("training_step" in k for k in regime["profile_ms_per_step"])
        # above the floor = (ours - bare) - (empty step - data only), per round, in ms per step: recomputed here
        sec, steps = regime["seconds"], regime["settings"]["steps"]
        columns = [sec[k]["values"] for k in ("ours", "torch", "empty_step", "data_only")]
        expected = [1000 * ((o - b) - (e - d)) / steps for o, b, e, d in zip(*columns, strict=True)]
        assert regime["above_floor_ms_per_step"]["values"] == pytest.approx(expected)
        ours, plain = sec["ours"]["values"], sec["plain"]["values"]
        over_plain = [1000 * (o - p) / steps for o, p in zip(ours, plain, strict=True)]
        assert regime["above_plain_ms_per_step"]["values"] == pytest.approx(over_plain)
        calls = regime["floor_python_calls_per_step"]
        assert calls["lightning"]["calls"] > 50 and all(v["calls"] > 0 for v in calls.values())
    assert result["bytes_per_view"] == {"full_float32": 400.0, "full_float16": 200.0, "topk10": 40.0, "classes": 100}
    assert set(result["accuracy"]) == {"teacher", "clean_full", "clean_topk", "replay_full", "online_full"}
    assert isinstance(result["machine"]["dirty_files"], int) and result["machine"]["torch_threads"] == 1
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(result))
    assert suite.main(["--render", str(saved), "--docs-dir", str(tmp_path)]) == 0
    page = (tmp_path / "benchmarks.md").read_text()
    assert page == suite.render_docs(result)
    assert json.loads((tmp_path / "data" / "benchmarks.json").read_text()) == result  # what the page is rendered from
    assert "| small | `lightning_over_torch` |" in page and result["machine"]["commit"] in page
    assert f"{result['regimes']['small']['floor_ms_per_step']['median']:.2f} ms per step" in page


def test_above_the_floor_sentence_reads_every_round():
    assert _above({"median": 0.3, "min": -0.2, "max": 0.9}).endswith("within noise of zero")
    assert _above({"median": 1.1, "min": 0.4, "max": 1.5}).endswith("above it in every round")
    assert _above({"median": -0.5, "min": -0.9, "max": -0.1}).endswith("below it in every round")
    assert "+1.10 ms per step (rounds +0.40 to +1.50)" in _above({"median": 1.1, "min": 0.4, "max": 1.5})


def test_real_step_against_empty_step_is_read_from_the_rounds():
    """Whether a real step costs Lightning more than an empty one is the data's verdict, not a fixed sentence."""
    result = json.loads(RESULT.read_text())
    g = result["regimes"]["small"]
    for floor, real, words in ((2.0, 1.0, "below it in every round"), (1.0, 3.0, "above it in every round")):
        g["plain_floor_ms_per_step"] = spread([floor, floor + 0.1])
        g["plain_extra_ms_per_step"] = spread([real, real - 0.1])
        page = suite.render_docs(result)
        assert "A real step costs Lightning more than an empty one" not in page
        assert f"empty-step floor, round by round, {real - floor - 0.1:+.2f} ms per step" in " ".join(page.split())
        assert words in page


def test_checked_in_page_is_the_render_of_the_checked_in_result():
    result = json.loads(RESULT.read_text())
    assert (REPO / "docs" / "benchmarks.md").read_text() == suite.render_docs(result)


@pytest.mark.skipif(not HAVE_FASHION, reason="Fashion-MNIST files not found")
def test_gpu_script_dry_run_on_cpu(tmp_path):
    """``benchmarks/gpu.sh --dry-run`` runs profile gpu-dry end to end (cifar_resnet20, bf16-mixed, channels_last,
    the whole born-again recipe) and writes its JSON and page."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    out = tmp_path / "gpu.json"
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu.sh"), "--dry-run", str(out), str(tmp_path)], env=env,
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["profile"] == "gpu-dry" and result["settings"]["precision"] == "bf16-mixed"
    assert result["ban"]["generations"] == 4 and len(result["ban"]["test_acc"]) == 4
    page = (tmp_path / "benchmarks-gpu.md").read_text()
    assert page.startswith("# Benchmarks") and "bf16-mixed" in page
    assert "from docs/data/benchmarks-gpu.json by python -m benchmarks.run" in page  # its own JSON in the markers
    assert json.loads((tmp_path / "data" / "benchmarks-gpu.json").read_text()) == result
