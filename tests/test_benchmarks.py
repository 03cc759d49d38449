"""The benchmark suite produces every key (tiny sizes; no speed is asserted) and renders its docs page."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from distill.data import data_root

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
KEYS = {"cached_over_ce", "online_over_ce", "build_over_inference", "replay_build_over_inference",
        "lightning_over_torch", "bytes_per_view", "topk10_bytes_per_view_at_100_classes", "accuracy",
        "topk_minus_full_points", "replay_minus_online_points", "clean_minus_online_points", "schedule", "quick",
        "machine", "step_ms", "inference_images_per_s", "build_images_per_s", "ours_images_per_s",
        "torch_images_per_s"}


@pytest.fixture(scope="module")
def suite():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("run")
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.skipif(not (data_root() / "fashion-mnist").is_dir(), reason="Fashion-MNIST files not found "
                    "(the accuracy part needs them)")
def test_tiny_suite_writes_every_key_and_the_docs_page(suite, tmp_path):
    from suite_common import TINY

    result = suite.run_suite(TINY, tmp_path)
    assert KEYS <= set(result) and result["quick"] is True and result["note"] is None
    for key in ("cached_over_ce", "online_over_ce", "build_over_inference", "lightning_over_torch"):
        assert result[key] > 0, key
    assert result["bytes_per_view"] == {"full_float32": 400.0, "full_float16": 200.0, "topk10": 40.0, "classes": 100}
    assert set(result["accuracy"]) == {"teacher", "clean_full", "clean_topk", "replay_full", "online_full"}
    assert all(0 <= v <= 100 for v in result["accuracy"].values())
    page = suite.render_docs(result)
    assert "Quick run" in page and "| `cached_over_ce` |" in page and result["machine"]["commit"] in page
    assert suite.met("cached_over_ce", 1.02) == "yes" and suite.met("build_over_inference", 0.5) == "no"
