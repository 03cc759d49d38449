"""The renderers of the cache-scale page and of the methods page's step cost compute their statements from the data:
changed numbers change the verdicts (benchmarks/cache_scale_page.py, benchmarks/step_cost_page.py)."""

from __future__ import annotations

import copy
import json

from benchmarks import cache_scale_page, pages, step_cost_page


def _load(name: str) -> dict:
    return json.loads((pages.ROOT / "docs" / "data" / name).read_text())


def test_the_memory_copy_goal_is_computed_from_the_measurements():
    data = _load("cache-scale.json")
    first = data["rows"][0]["name"]
    fast = copy.deepcopy(data)
    fast["rows"][0]["read"]["copy_seconds"] = fast["rows"][0]["read"]["lookup_seconds"]  # read = the limit
    slow = copy.deepcopy(data)
    slow["rows"][0]["read"]["copy_seconds"] = 0.1 * slow["rows"][0]["read"]["lookup_seconds"]
    assert f"limit: met by {first}" in cache_scale_page.scale(fast)
    assert f"limit: met by {first}" not in cache_scale_page.scale(slow)


def test_the_gpu_comparison_names_the_slowest_cache_and_its_multiple():
    data = _load("cache-scale.json")
    data["rows"][1]["read"]["lookup_seconds"] = 1.0  # 256 samples a second: far below the GPUs
    text = cache_scale_page.scale(data)
    gpus = data["gpu_reference"]["samples"] / data["gpu_reference"]["seconds_per_epoch"]
    assert f"The slowest cache here, {data['rows'][1]['name']}, serves 256 samples/s" in text
    assert f"{256 / gpus:,.1f} × what those" in text


def test_the_step_cost_range_is_computed_from_the_rows():
    data = _load("step-cost.json")
    data["rows"][-1]["ratio_to_ce"] = 7.25
    assert "-7.25× the cross-entropy step" in step_cost_page.cost(data)
