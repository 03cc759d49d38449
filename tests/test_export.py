"""distill export: every format reloads with its own runtime and gives the run's test predictions back; the ensemble
export scores the run's ensemble metrics; a prompted student exports merged; the card's numbers are the run's;
refusals leave nothing behind."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import run_cli
from safetensors.torch import load_file

import distill  # noqa: F401  (registers the toolkit's backbones into timm, as a user does)
from distill.data import DATASETS
from distill.export.bundle import export_run
from distill.export.formats import ExportError
from distill.export.source import parse_generation
from distill.export.timm_folder import TimmFolder

TOLERANCE = 1e-4


def digits_test_set(train_subset: int = 300) -> tuple[torch.Tensor, np.ndarray]:
    """The tiny run's test inputs and labels, built here from the dataset, not by the code under test."""
    dm = DATASETS.get("digits")(train_subset=train_subset)
    dm.setup("fit")
    return dm.test_set.images, dm.test_labels()


def reload(fmt: str, folder: Path):
    """The exported network through each format's own public loader (not distill's)."""
    if fmt == "timm":
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        return lambda x: model(x)
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    model = torch.jit.load(str(folder / "model.pt"))
    return lambda x: model(x)


def assert_same_predictions(got: torch.Tensor, recorded: torch.Tensor) -> None:
    """Probabilities within tolerance; the same class wherever the recorded top two are not a near-tie."""
    p, q = got.softmax(-1), recorded.softmax(-1)
    assert (p - q).abs().max() <= TOLERANCE
    top2 = q.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * TOLERANCE
    assert torch.equal(got.argmax(-1)[clear], recorded.argmax(-1)[clear])
    assert clear.float().mean() > 0.95


@pytest.mark.parametrize("fmt", ["timm", "onnx", "torchscript"])
def test_each_format_reloads_with_its_own_runtime_and_gives_the_runs_test_predictions(tiny_run, tmp_path, fmt):
    out = tmp_path / fmt
    result = export_run(tiny_run, out, fmt)
    assert result.label == "gen-1" and result.check.passed and result.check.samples >= 3
    images, _ = digits_test_set()
    with torch.no_grad():
        got = reload(fmt, out)(images).float()
    recorded = torch.from_numpy(np.load(tiny_run / "gen-1" / "test_logits.npy"))
    assert got.shape == recorded.shape == (540, 10)  # a batch of 540: the export's batch dimension is free
    assert_same_predictions(got, recorded)
    config = json.loads((out / "config.json").read_text())
    assert config["label_names"] == [str(i) for i in range(10)] and config["num_classes"] == 10
    assert config["distill"]["format"] == fmt and config["distill"]["network"] == "gen-1"
    assert sorted(p.name for p in out.iterdir()) == sorted(["README.md", "config.json", type_file(fmt)])


def type_file(fmt: str) -> str:
    return {"timm": "model.safetensors", "onnx": "model.onnx", "torchscript": "model.pt"}[fmt]


def test_the_timm_folder_carries_the_runs_preprocessing(tiny_run, tmp_path):
    export_run(tiny_run, tmp_path / "timm", "timm", generation=0)
    model = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True)
    data = timm.data.resolve_data_config(model=model)
    assert tuple(data["input_size"]) == (1, 8, 8)  # digits: 8x8 grey
    assert tuple(data["mean"]) == (0.3053,) and tuple(data["std"]) == (0.3760,)  # distill.data.digits' statistics
    assert data["interpolation"] == "bilinear" and data["crop_pct"] == 1.0
    assert type(model).__name__ == "SmallCNN"  # a timm-registered family is exported under its own name
    assert model.pretrained_cfg["label_names"] == [str(i) for i in range(10)]


def test_the_ensemble_export_scores_the_runs_ensemble_metrics(tiny_run, tmp_path):
    out = tmp_path / "ensemble"
    result = export_run(tiny_run, out, "onnx", generation="ensemble")
    assert result.label == "ensemble 0..1"
    images, labels = digits_test_set()
    with torch.no_grad():
        logits = reload("onnx", out)(images).float()
    summary = json.loads((tiny_run / "summary.json").read_text())
    expected = summary["ensembles"][-1]
    assert expected["members"] == [0, 1]
    target = torch.as_tensor(labels)
    assert float((logits.argmax(-1) == target).float().mean()) == pytest.approx(expected["test"]["acc"], abs=1e-6)
    assert float(F.cross_entropy(logits, target)) == pytest.approx(expected["test"]["nll"], abs=1e-4)
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "distill_ensemble" and len(config["model_args"]["members"]) == 2


def test_the_model_card_holds_the_runs_own_numbers(tiny_run, tmp_path):
    export_run(tiny_run, tmp_path / "card", "torchscript")
    card = (tmp_path / "card" / "README.md").read_text()
    summary = json.loads((tiny_run / "summary.json").read_text())
    gen = summary["generations"][1]
    for number in (f"{100 * gen['test']['acc']:.2f}", f"{gen['test']['nll']:.3f}", f"{gen['test']['ece']:.3f}",
                   f"{100 * gen['train']['acc']:.2f}", f"{gen['parameters']['total']:,}",
                   f"{100 * summary['generations'][0]['test']['acc']:.2f}"):
        assert number in card
    manifest = json.loads((tiny_run / "cache" / "gen-1" / "manifest.json").read_text())
    state = json.loads((tiny_run / "state.json").read_text())
    assert manifest["dataset"]["labels_sha256"] in card
    assert state["generations"]["1"][:16] in card
    assert (tiny_run / "config.yaml").read_text().strip() in card  # the recipe, as the run resolved it
    assert "| gen-1 | small_cnn | gen-0 | standard | 1.0 | 1.0 |" in card  # lineage: teacher, loss, T, alpha


def test_parse_generation():
    assert parse_generation(None, 2, "run").members == (2,)
    assert parse_generation("ensemble", 2, "run").members == (0, 1, 2)
    assert parse_generation("ensemble:1", 2, "run").members == (0, 1)
    for bad, message in (("3", "has no generation 3"), ("ensemble", "K >= 1"), ("last", "generation number"),
                         ("1:2", "generation number")):
        with pytest.raises(ExportError, match=message):
            parse_generation(bad, 0 if bad == "ensemble" else 2, "run")


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_refusals_are_one_line_and_leave_nothing(tiny_run, tmp_path, monkeypatch):
    with pytest.raises(ExportError, match="has no generation 7"):
        export_run(tiny_run, tmp_path / "a", "timm", generation=7)
    used = tmp_path / "used"
    used.mkdir()
    (used / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="exists and is not empty"):
        export_run(tiny_run, used, "timm")
    assert (used / "mine.txt").read_text() == "keep"
    with pytest.raises(Exception, match="unknown export format 'tflite'"):
        export_run(tiny_run, tmp_path / "b", "tflite")
    find_spec = importlib.util.find_spec  # as if the export extra were not installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else
                        find_spec(name, *a))
    with pytest.raises(ExportError, match=r"needs onnxruntime, which is not installed: pip install '.*\[export\]'"):
        export_run(tiny_run, tmp_path / "c", "onnx")
    monkeypatch.undo()
    assert leftovers(tmp_path) == ["used"]


def test_an_export_over_the_tolerance_writes_nothing(tiny_run, tmp_path, monkeypatch):
    loader = TimmFolder.load.__func__

    def drifted(cls, folder):  # a runtime whose outputs are off by a margin
        model = loader(cls, folder)
        return lambda x: model(x) + torch.linspace(0, 0.5, 10)

    monkeypatch.setattr(TimmFolder, "load", classmethod(drifted))
    with pytest.raises(ExportError, match=r"timm vs PyTorch on \d+ test images.*over the tolerance, nothing written"):
        export_run(tiny_run, tmp_path / "drift", "timm")
    assert leftovers(tmp_path) == []  # neither the folder nor its temporary sibling


def test_an_unfinished_generation_is_refused(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "gen-1" / "metrics.json").unlink()  # crashed between the checkpoint and the evaluation
    with pytest.raises(ExportError, match="generation 1 of .* is not evaluated yet"):
        export_run(run, tmp_path / "x", "timm")
    (run / "gen-1" / "model.ckpt").write_bytes(b"half")  # a checkpoint state.json did not record
    with pytest.raises(ExportError, match="not the checkpoint state.json recorded"):
        export_run(run, tmp_path / "x", "timm")
    (run / "gen-1" / "model.ckpt").unlink()
    with pytest.raises(ExportError, match="generation 1 of .* is not finished"):
        export_run(run, tmp_path / "x", "timm")
    export_run(run, tmp_path / "gen0", "timm", generation=0)  # generation 0 is finished: exported
    assert not (tmp_path / "x").exists()


PROMPTED = {"name": "prompted_vit", "init_args": {
    "base_args": {"img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 2, "num_heads": 2},
    "source": {"seed": 3}, "prompt": {"kind": "deep", "length": 2}}}


@pytest.fixture(scope="module")
def prompted_run(tmp_path_factory) -> Path:
    """Generation 0 a prompted ViT on digits; its base from seed 3 (the export rebuilds bases from seed 0)."""
    out = tmp_path_factory.mktemp("prompted") / "run"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--task", "prompted", "--backbone",
                   json.dumps(PROMPTED), "--generations", "0", "--trainer.max_epochs", "1", "--data.train_subset",
                   "200", "--trainer.enable_progress_bar", "false") == 0
    return out


@pytest.mark.parametrize("fmt", ["timm", "onnx", "torchscript"])
def test_a_prompted_student_exports_merged_and_reloads(prompted_run, tmp_path, fmt):
    out = tmp_path / fmt
    export_run(prompted_run, out, fmt)
    images, _ = digits_test_set(train_subset=200)
    with torch.no_grad():
        got = reload(fmt, out)(images).float()
    assert_same_predictions(got, torch.from_numpy(np.load(prompted_run / "gen-0" / "test_logits.npy")))
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "distill_backbone"
    assert config["model_args"]["backbone"]["init_args"]["source"] == {"seed": 0}  # no reference to the base's source
    assert "input_stats" not in config["model_args"]  # digits tensors are not re-normalised (no data statistics)
    if fmt == "timm":  # merged: the frozen base's tensors are in the file
        assert any(k.startswith("base.blocks.") for k in load_file(out / "model.safetensors"))


def test_a_prompted_network_keeps_its_input_statistics_through_timm(tmp_path):
    """Image data re-normalise to the base's statistics inside the network; they are not in the state dict."""
    from distill.export.timm_folder import timm_config
    from distill.models import create_backbone

    network = create_backbone(PROMPTED, 10, 3).eval()
    network.adapter.set_data_stats([0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
    config = timm_config([PROMPTED], network, False, [str(i) for i in range(10)],
                         {"input_size": [3, 16, 16], "mean": [0.49, 0.48, 0.45], "std": [0.25, 0.24, 0.26]})
    stats = config["model_args"]["input_stats"]
    assert stats[0] == pytest.approx([0.49, 0.48, 0.45]) and stats[1] == pytest.approx([0.25, 0.24, 0.26])
    (tmp_path / "config.json").write_text(json.dumps(config))
    TimmFolder.write(network, torch.zeros(2, 3, 16, 16), tmp_path)
    model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), network(x))


def test_a_class_path_backbone_exports_its_class_path_and_arguments(tmp_path):
    """A user's own module (tests/usernet.py, importable like the user's package) travels as class path + args."""
    run = tmp_path / "run"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(run), "--backbone.class_path", "usernet.TinyMLP",
                   "--backbone.init_args.hidden", "24", "--generations", "0", "--trainer.max_epochs", "1",
                   "--data.train_subset", "200", "--trainer.enable_progress_bar", "false") == 0
    export_run(run, tmp_path / "timm", "timm")
    config = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert config["architecture"] == "distill_backbone"
    assert config["model_args"]["backbone"] == {"class_path": "usernet.TinyMLP", "init_args": {"hidden": 24}}
    images, _ = digits_test_set(train_subset=200)
    with torch.no_grad():
        got = reload("timm", tmp_path / "timm")(images).float()
    assert_same_predictions(got, torch.from_numpy(np.load(run / "gen-0" / "test_logits.npy")))


def test_the_export_folder_has_plain_permissions(tiny_run, tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        out = export_run(tiny_run, tmp_path / "perm", "timm").out
    finally:
        os.umask(umask)
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)
    assert {oct(p.stat().st_mode & 0o777) for p in out.iterdir()} == {oct(0o644)}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_the_export_command_prints_the_check_and_the_files(tiny_run, tmp_path, capsys):
    assert run_cli("export", str(tiny_run), "--out", str(tmp_path / "e"), "--format", "torchscript",
                   "--generation", "0") == 0
    out = capsys.readouterr().out
    assert "torchscript vs PyTorch on 64 test images of the run: max |Δp|" in out
    assert "gen-0 of" in out and "README.md, config.json, model.pt" in out


@pytest.mark.parametrize("case", ["no such generation", "unfinished generation", "--out in use", "onnx missing",
                                  "over the tolerance", "unknown format", "not a run"])
def test_export_refusals_are_one_line_with_exit_2(case, tiny_run, tmp_path, capsys, monkeypatch):
    run, out = tiny_run, tmp_path / "out"
    args = []
    if case == "no such generation":
        args, expected = ["--generation", "2"], "has no generation 2 (its recipe has generations 0..1)"
    elif case == "unfinished generation":
        run = tmp_path / "run"
        shutil.copytree(tiny_run, run)
        (run / "gen-1" / "model.ckpt").unlink()
        expected = "generation 1 of"
    elif case == "--out in use":
        out.mkdir()
        (out / "x").write_text("x")
        expected = "exists and is not empty"
    elif case == "onnx missing":
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("onnx", "onnxscript") else
                            find_spec(name, *a))
        args, expected = ["--format", "onnx"], "needs onnx, onnxscript, which are not installed"
    elif case == "over the tolerance":
        args, expected = ["--tolerance", "1e-12"], "over the tolerance, nothing written"
        loader = TimmFolder.load.__func__
        monkeypatch.setattr(TimmFolder, "load", classmethod(lambda cls, f: (lambda x: loader(cls, f)(x) * 1.01)))
    elif case == "unknown format":
        args, expected = ["--format", "tflite"], "argument --format: invalid choice: 'tflite'"
    else:
        run, expected = tmp_path, "is not a distill run directory (no config.yaml)"
    assert run_cli("export", str(run), "--out", str(out), *args) == 2
    assert expected in one_error_line(capsys)
    assert case == "--out in use" or not out.exists()
