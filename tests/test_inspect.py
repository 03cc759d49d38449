"""``distill inspect`` and :func:`distill.analysis.run.load_run` on the tiny digits run (gen-0 + one student)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from distill.analysis.run import InspectableRun, InspectError, load_run
from distill.analysis.taxonomy import CLASS_NAMES
from distill.cache import CacheError

GROUPING = {"round": ["0", "6", "8", "9"], "straight": ["1", "4", "7"]}
PER_GENERATION = ["similarity.json", "similarity.csv", "similarity_heatmap.png", "dendrogram.png", "neighbours.json",
                  "taxonomy.json", "suspects.csv", "suspects.png", "reliability.png"]


@pytest.fixture(scope="module")
def inspected(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``distill inspect`` of the tiny run at T = 2 with a grouping and a threshold low enough to find suspects."""
    out = tmp_path_factory.mktemp("inspect")
    grouping = out / "grouping.json"
    grouping.write_text(json.dumps(GROUPING))
    args = ["--out", str(out / "report"), "--temperature", "2", "--grouping", str(grouping), "--threshold", "0.1",
            "--suspects", "4", "--top-k", "2", "--pairs", "5"]
    assert run_cli("inspect", str(tiny_run), *args) == 0
    return out / "report"


def test_every_file_is_written_and_pngs_are_images(inspected: Path):
    for k in (0, 1):
        for name in PER_GENERATION:
            path = inspected / f"gen-{k}" / name
            assert path.is_file() and path.stat().st_size > 0, path
            if path.suffix == ".png":
                with Image.open(path) as image:
                    image.verify()
                with Image.open(path) as image:
                    assert min(image.size) >= 200, (path, image.size)
    assert (inspected / "drift.json").is_file()


def test_similarity_json_shape_zero_diagonal_rows_sum_to_one(inspected: Path):
    data = json.loads((inspected / "gen-1" / "similarity.json").read_text())
    assert data["classes"] == [str(i) for i in range(10)] and data["temperature"] == 2.0
    matrix = np.asarray(data["matrix"])
    assert matrix.shape == (10, 10) and (matrix >= 0).all()
    np.testing.assert_array_equal(np.diag(matrix), 0.0)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-9)
    with (inspected / "gen-1" / "similarity.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["class", *data["classes"]] and len(rows) == 11
    np.testing.assert_allclose(np.asarray([r[1:] for r in rows[1:]], dtype=float), matrix, rtol=1e-6)


def test_neighbours_taxonomy_suspects_and_drift_outputs(inspected: Path):
    near = json.loads((inspected / "gen-0" / "neighbours.json").read_text())
    assert set(near["neighbours"]) == {str(i) for i in range(10)} and len(near["pairs"]) == 5
    assert all(len(v) == 2 and v[0]["mass"] >= v[1]["mass"] for v in near["neighbours"].values())
    taxonomy = json.loads((inspected / "gen-0" / "taxonomy.json").read_text())
    assert 0.0 <= taxonomy["score"] <= 1.0 and taxonomy["chance"] == pytest.approx((4 * 3 + 3 * 2) / (7 * 9))
    drift = json.loads((inspected / "drift.json").read_text())
    assert [g["generation"] for g in drift["generations"]] == [0, 1]
    with (inspected / "gen-0" / "suspects.csv").open() as handle:
        suspects = list(csv.DictReader(handle))
    assert len(suspects) == drift["generations"][0]["suspects"] > 0
    assert all(s["label"] != s["teacher"] and float(s["probability"]) >= 0.1 for s in suspects)
    (step,) = drift["drift"]
    assert (step["from"], step["to"]) == (0, 1) and list(step["per_class"]) == drift["classes"]
    assert all(0.0 <= v <= math.log(2) for v in step["per_class"].values())
    assert all(0.0 <= g["mean_entropy"] <= math.log(10) and 0.0 <= g["ece"] <= 1.0 for g in drift["generations"])


def test_generation_option_restricts_to_one(tiny_run: Path, tmp_path: Path):
    # --jobs 1 draws in-process (the fixture above used the forked workers)
    assert run_cli("inspect", str(tiny_run), "--generation", "1", "--out", str(tmp_path), "--jobs", "1") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drift.json", "gen-1"]
    assert (tmp_path / "gen-1" / "similarity_heatmap.png").stat().st_size > 0
    assert json.loads((tmp_path / "drift.json").read_text())["drift"] == []


def test_load_run_api_shapes_agree_with_the_cli(tiny_run: Path, inspected: Path):
    run = load_run(tiny_run, temperature=2.0)
    assert run.generations == [0, 1] and run.class_names == [str(i) for i in range(10)] and run.temperature == 2.0
    assert run.logits(0).shape == (len(run.train_labels), 10) == (300, 10)
    assert run.soft_labels(1).shape == (300, 10) and run.soft_labels(1).dtype == np.float32
    assert run.test_logits(1).shape == (len(run.test_labels), 10)
    cli_matrix = np.asarray(json.loads((inspected / "gen-1" / "similarity.json").read_text())["matrix"])
    np.testing.assert_allclose(run.similarity(1), cli_matrix, rtol=1e-12)
    images = run.images([0, 5, 7])
    assert images.shape == (3, 1, 8, 8) and images.min() >= 0.0 and images.max() <= 1.0
    assert run.grouping() is None  # digits has no built-in grouping
    assert load_run(tiny_run).temperature == 1.0  # the recipe's kd.temperature
    with pytest.raises(InspectError, match="not loaded"):
        load_run(tiny_run, [1]).logits(0)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err, err
    return err


def test_not_a_run_and_missing_generation_exit_2(tiny_run: Path, tmp_path: Path, capsys):
    assert run_cli("inspect", str(tmp_path)) == 2
    assert "not a distill run directory" in _one_error_line(capsys)
    assert run_cli("inspect", str(tmp_path / "nowhere")) == 2
    assert "not a directory" in _one_error_line(capsys)
    assert run_cli("inspect", str(tiny_run), "--generation", "7") == 2
    assert "generation 7 does not exist" in _one_error_line(capsys)
    assert run_cli("inspect", str(tiny_run), "--top-k", "0") == 2
    assert "--top-k" in _one_error_line(capsys)
    assert run_cli("inspect") == 2
    assert "RUN" in _one_error_line(capsys)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"g": ["0", "eleven"]}))
    assert run_cli("inspect", str(tiny_run), "--grouping", str(bad), "--out", str(tmp_path / "o")) == 2
    assert "eleven" in _one_error_line(capsys)


def test_tampered_checkpoint_is_rejected(tiny_run: Path, tmp_path: Path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("inspect", "logs"))
    with (copy / "gen-0" / "model.ckpt").open("ab") as handle:
        handle.write(b"tampered")
    assert run_cli("inspect", str(copy)) == 2
    assert "different teacher checkpoint" in _one_error_line(capsys)
    with pytest.raises(CacheError):
        load_run(copy, [0])
    assert load_run(copy, [1]).generations == [1]  # the untouched generation still opens


def _stub_run(name: str, class_names: list[str], datamodule: object = None) -> InspectableRun:
    """An :class:`InspectableRun` without a run directory, for the parts that need only names and a data module."""
    return InspectableRun(root=Path("."), config=SimpleNamespace(data={"name": name}), datamodule=datamodule,
                          class_names=class_names, train_labels=np.zeros(0, np.int64),
                          test_labels=np.zeros(0, np.int64), temperature=1.0)


def test_builtin_grouping_by_dataset_name_or_class_names():
    cifar10 = list(CLASS_NAMES["cifar10"])
    assert _stub_run("cifar10", cifar10).grouping()[0] == "built-in cifar10"
    source, groups = _stub_run("imagefolder", cifar10).grouping()  # an image folder with CIFAR-10's classes
    assert source == "built-in cifar10" and sorted(sum(groups.values(), [])) == list(range(10))
    assert _stub_run("cifar100", list(CLASS_NAMES["cifar100"])).grouping()[0] == "built-in cifar100"
    assert _stub_run("imagefolder", ["a", "b"]).grouping() is None


def test_images_are_unnormalised_with_the_modules_mean_and_std():
    pixels = torch.tensor([[[0.0, 0.5], [1.0, 0.25]], [[1.0, 0.0], [0.5, 0.5]]])  # (C=2, H, W) in [0, 1]
    mean, std = (0.5, 0.2), (0.25, 0.5)
    normalised = (pixels - torch.tensor(mean).view(2, 1, 1)) / torch.tensor(std).view(2, 1, 1)
    dm = SimpleNamespace(input_stats=lambda: (mean, std), cache_set=[(normalised, 0, 0)])
    np.testing.assert_allclose(_stub_run("x", ["a"], dm).images([0])[0], pixels.numpy(), atol=1e-6)
    plain = SimpleNamespace(input_stats=lambda: None, cache_set=[(normalised, 0, 0)])  # no mean/std: min-max scaled
    shown = _stub_run("x", ["a"], plain).images([0])[0]
    assert shown.min() == 0.0 and shown.max() == 1.0
