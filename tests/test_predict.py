"""distill predict: on the CIFAR-10 copy's test images it reproduces the run's test accuracy; an exported folder
predicts what the run does; unreadable images are named and skipped; top-k, CSV and JSON lines."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from distill.data import data_root
from distill.export.bundle import export_run
from distill.export.formats import ExportError
from distill.export.predict import collect_images, open_predictor, predict, write_predictions

TARBALL = data_root() / "cifar10-jpeg.tar.gz"
TRAIN_PER_CLASS, TEST_PER_CLASS = 30, 12
needs_cifar = pytest.mark.skipif(not TARBALL.is_file(), reason=f"no {TARBALL} (set DISTILL_DATA)")


def extract_subset(dest: Path) -> Path:
    """The first images of every class of the CIFAR-10 JPEG copy, as an image folder (train/ and test/)."""
    keep = {"train": TRAIN_PER_CLASS, "test": TEST_PER_CLASS}
    with tarfile.open(TARBALL) as tf:
        for member in tf:
            parts = Path(member.name).parts  # cifar10/<split>/<class>/NNNN.jpg
            if member.isfile() and len(parts) == 4 and int(Path(parts[3]).stem) < keep[parts[1]]:
                target = dest / parts[1] / parts[2] / parts[3]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tf.extractfile(member).read())
    return dest


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory) -> tuple[Path, Path]:
    """A one-epoch run on 300 training images of the CIFAR-10 copy; its test set is 120 real test images."""
    base = tmp_path_factory.mktemp("cifar")
    folder = extract_subset(base / "images")
    out = base / "run"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--data.name", "imagefolder",
                   "--data.root", str(folder), "--backbone", '{"name": "small_cnn", "init_args": {"width": 8}}',
                   "--generations", "0", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false") == 0
    return out, folder


def accuracy(rows: list[dict[str, str]]) -> float:
    """Top-1 accuracy of CSV rows against the class folder each image is in."""
    return sum(Path(r["path"]).parent.name == r["label_1"] for r in rows) / len(rows)


@needs_cifar
def test_predict_on_the_test_images_reproduces_the_runs_test_accuracy(cifar_run, tmp_path):
    run, folder = cifar_run
    predictor = open_predictor(run)
    paths = collect_images([folder / "test"])
    assert len(paths) == 10 * TEST_PER_CLASS
    predictions = predict(predictor, paths, top_k=3, batch_size=16)  # batches of another size than the run's
    assert not predictions.skipped and len(predictions.rows) == len(paths)
    write_predictions(predictions, tmp_path / "p.csv")
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label_1", "probability_1", "label_2", "probability_2", "label_3",
                             "probability_3"]
    summary = json.loads((run / "summary.json").read_text())
    assert accuracy(rows) == pytest.approx(summary["generations"][0]["test"]["acc"], abs=1e-6)
    for r in rows:  # most likely first
        assert float(r["probability_1"]) >= float(r["probability_2"]) >= float(r["probability_3"])
    # image by image: the run's own recorded test predictions (test_logits.npy rows are the sorted test files)
    recorded = torch.from_numpy(np.load(run / "gen-0" / "test_logits.npy")).softmax(-1)
    for row, probs in zip(predictions.rows, recorded, strict=True):
        assert row.classes[0] == int(probs.argmax())
        assert row.probabilities == pytest.approx(probs[row.classes].tolist(), abs=1e-5)


@needs_cifar
@pytest.mark.parametrize("fmt", ["timm", "torchscript"])
def test_an_exported_folder_predicts_what_the_run_predicts(cifar_run, tmp_path, fmt):
    run, folder = cifar_run
    export_run(run, tmp_path / fmt, fmt)
    paths = collect_images([folder / "test" / "cat", folder / "test" / "ship" / "0003.jpg"])
    assert len(paths) == TEST_PER_CLASS + 1
    from_run = predict(open_predictor(run), paths, top_k=2)
    exported = predict(open_predictor(tmp_path / fmt), paths, top_k=2)
    for a, b in zip(from_run.rows, exported.rows, strict=True):
        assert a.path == b.path and a.classes == b.classes
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


@needs_cifar
def test_unreadable_images_are_named_and_skipped(cifar_run, tmp_path):
    run, folder = cifar_run
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("0000.jpg", "0001.jpg"):
        (mixed / name).write_bytes((folder / "test" / "dog" / name).read_bytes())
    (mixed / "broken.jpg").write_bytes(b"not an image")
    (mixed / "half.jpg").write_bytes((folder / "test" / "dog" / "0002.jpg").read_bytes()[:200])  # truncated
    (mixed / "notes.txt").write_text("not an image suffix: not collected")
    paths = collect_images([mixed])
    assert [p.name for p in paths] == ["0000.jpg", "0001.jpg", "broken.jpg", "half.jpg"]
    predictions = predict(open_predictor(run), paths, top_k=1, batch_size=3)
    assert [Path(r.path).name for r in predictions.rows] == ["0000.jpg", "0001.jpg"]
    assert [Path(p).name for p, _ in predictions.skipped] == ["broken.jpg", "half.jpg"]
    assert all(str(mixed / Path(p).name) in why for p, why in predictions.skipped)  # the message names the file


def test_jsonl_output_and_top_k_on_digits_images(tiny_run, tmp_path):
    """The digits run predicts 8x8 grey image files (0..16 intensities saved as 0..255)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    for i in range(5):
        Image.fromarray((bunch.images[i] * 255 / 16).round().astype("uint8"), mode="L").save(tmp_path / f"{i}.png")
    predictions = predict(open_predictor(tiny_run, generation="ensemble"), collect_images([tmp_path]), top_k=4)
    write_predictions(predictions, tmp_path / "out" / "p.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out" / "p.jsonl").read_text().splitlines()]
    assert [Path(line["path"]).name for line in lines] == [f"{i}.png" for i in range(5)]
    for line in lines:
        top = line["top_k"]
        assert len(top) == 4 and [t["label"] for t in top] == [str(t["index"]) for t in top]
        assert all(a["probability"] >= b["probability"] for a, b in zip(top, top[1:], strict=False))
        assert 0 < sum(t["probability"] for t in top) <= 1 + 1e-6


def test_predict_refusals(tiny_run, tmp_path):
    with pytest.raises(ExportError, match="input not found"):
        collect_images([tmp_path / "missing"])
    with pytest.raises(ExportError, match="no image files"):
        collect_images([tmp_path])
    with pytest.raises(ExportError, match="neither a run directory"):
        open_predictor(tmp_path)
    with pytest.raises(ExportError, match="give a .csv or .jsonl file"):
        write_predictions(None, tmp_path / "p.txt")
    with pytest.raises(ExportError, match="has no generation 4"):
        open_predictor(tiny_run, generation="4")


@needs_cifar
def test_the_predict_command_names_skipped_images_and_writes_the_file(cifar_run, tmp_path, capsys):
    run, folder = cifar_run
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG broken")
    assert run_cli("predict", str(run), str(folder / "test" / "frog"), str(tmp_path / "in"), "--top-k", "2",
                   "--out", str(tmp_path / "p.csv")) == 0
    err = capsys.readouterr().err
    assert f"skipped: cannot read image {tmp_path / 'in' / 'bad.png'}" in err
    assert f"{TEST_PER_CLASS} predictions of" in err and "1 unreadable image(s) skipped" in err
    with open(tmp_path / "p.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == TEST_PER_CLASS
    assert run_cli("predict", str(run), str(folder / "test" / "frog" / "0000.jpg"), "--top-k", "3") == 0
    assert "0000.jpg" in capsys.readouterr().out  # the table


def test_predict_command_refusals_are_one_line(tiny_run, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"nope")
    for args, expected in ((["--out", str(tmp_path / "p.txt")], "give a .csv or .jsonl file"),
                           ([], "none of the 1 images could be read"),
                           (["--top-k", "0"], "argument --top-k: expected an integer >= 1, got '0'")):
        assert run_cli("predict", str(tiny_run), str(tmp_path / "bad.png"), *args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and expected in err[-1], err


def test_image_file_preprocessing_is_the_data_modules_declared_form():
    """A data module says how its samples read as image files; one that does not (the base default) is refused."""
    from distill.data import DistillDataModule
    from distill.data.digits import DigitsDataModule
    from distill.errors import UserError
    from distill.export.preprocess import preprocess_of

    digits = preprocess_of(DigitsDataModule())
    assert (digits.channels, digits.size) == (1, (8, 8))
    # grey 0..255 pixels of an 8x8 image divided by 255 are the digits' 0..16 intensities divided by 16
    bunch = __import__("sklearn.datasets", fromlist=["load_digits"]).load_digits()
    pixels = torch.tensor(bunch.images[0] / 16.0, dtype=torch.float32)
    normalised = digits.transform()((pixels * 255).round().to(torch.uint8).unsqueeze(0))
    expected = (pixels - digits.mean[0]) / digits.std[0]
    assert torch.allclose(normalised[0], expected, atol=1 / 255 / digits.std[0])

    class Tabular(DistillDataModule):
        name = "tabular"

    with pytest.raises(UserError, match="'tabular' .* does not read image files"):
        preprocess_of(Tabular())
