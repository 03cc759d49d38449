"""The user's own loggers see the run: every spelling LightningCLI accepts, and the numbers that decide a generation
(test accuracy, NLL, ECE, the ensemble's, the cache build time) with the recipe as hyper-parameters."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli

from distill.arguments import accepted_kwargs
from distill.generations import build_datamodule
from distill.resolve import load_recipe

tensorboard = pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

RECIPE = "recipes/digits-ban.yaml"
TINY = ["--data.train_subset", "300", "--generations", "2", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false"]
TB = "lightning.pytorch.loggers.TensorBoardLogger"


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Generations 0..2, one epoch each, with the full class path of TensorBoardLogger (and a SummaryWriter option
    it forwards through **kwargs) into one directory, and the short name CSVLogger, as a list."""
    root = tmp_path_factory.mktemp("loggers")
    out, board = root / "run", root / "board"
    loggers = f"[{{class_path: {TB}, init_args: {{save_dir: {board}, flush_secs: 5}}}}, CSVLogger]"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY, "--trainer.logger", loggers) == 0
    return out, board


def _events(board: Path, k: int) -> EventAccumulator:
    events = EventAccumulator(str(board / "lightning_logs" / f"version_{k}"))  # one version a generation, in order
    events.Reload()
    return events


def _last(events: EventAccumulator, tag: str) -> float:
    return events.Scalars(tag)[-1].value


def _test_labels(out: Path) -> np.ndarray:
    recipe = load_recipe(str(out / "config.yaml"), [])
    return np.asarray(build_datamodule(recipe.run.data).test_labels())


def test_tensorboard_full_class_path_has_each_generations_test_metrics(logged_run):
    out, board = logged_run
    labels = _test_labels(out)
    summary = json.loads((out / "summary.json").read_text())
    for k in range(3):
        events = _events(board, k)
        metrics = json.loads((out / f"gen-{k}" / "metrics.json").read_text())
        logits = np.load(out / f"gen-{k}" / "test_logits.npy").astype(np.float64)
        # worked out here from the saved logits: accuracy, and the mean NLL through a stable log-softmax
        acc = float((logits.argmax(1) == labels).mean())
        shifted = logits - logits.max(1, keepdims=True)
        nll = float(np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(labels)), labels]))
        assert _last(events, "test/acc") == pytest.approx(acc, abs=1e-6)
        assert _last(events, "test/nll") == pytest.approx(nll, rel=1e-4)
        assert _last(events, "test/ece") == pytest.approx(metrics["test"]["ece"], rel=1e-6)
        assert 0 < _last(events, "test/ece") < 1
        assert _last(events, "time/train_seconds") == pytest.approx(metrics["train_seconds"], rel=1e-6)
        assert _last(events, "time/cache_seconds") == pytest.approx(metrics["cache_seconds"], rel=1e-6)
        assert metrics["cache_seconds"] > 0
        assert "train/acc" in events.Tags()["scalars"]  # the training curve is still there, beside them
        assert not [t for t in events.Tags()["scalars"] if "hp_metric" in t]
        if k == 0:
            assert not [t for t in events.Tags()["scalars"] if t.startswith("ensemble/")]
            continue
        members = np.mean([_softmax(np.load(out / f"gen-{j}" / "test_logits.npy").astype(np.float64))
                           for j in range(k + 1)], axis=0)
        assert _last(events, "ensemble/test_acc") == pytest.approx(float((members.argmax(1) == labels).mean()),
                                                                   abs=1e-6)
        assert _last(events, "ensemble/test_acc") == pytest.approx(summary["ensembles"][k - 1]["test"]["acc"])
        assert _last(events, "ensemble/test_nll") == pytest.approx(summary["ensembles"][k - 1]["test"]["nll"],
                                                                   rel=1e-6)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_tensorboard_hparams_hold_the_recipe_with_the_real_metrics(logged_run):
    out, board = logged_run
    for k in range(3):
        content = _events(board, k).PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hparams = start.session_start_info.hparams
        assert hparams["generation"].number_value == k
        assert hparams["teacher"].string_value == ("labels" if k == 0 else f"gen-{k - 1}")
        assert hparams["loss/name"].string_value == ("cross_entropy" if k == 0 else "standard")
        assert hparams["data/train_subset"].number_value == 300
        assert hparams["trainer/max_epochs"].number_value == 1
        experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
        tags = {m.name.tag for m in experiment.metric_infos}
        assert {"test/acc", "test/nll", "test/ece"} <= tags and "hp_metric" not in tags


def test_csv_logger_in_a_list_gets_the_same_numbers_and_the_recipe(logged_run):
    out, _ = logged_run
    for k in range(3):
        metrics = json.loads((out / f"gen-{k}" / "metrics.json").read_text())
        folder = out / f"gen-{k}" / "lightning_logs" / "version_0"  # CSVLogger's save_dir defaults to gen-k/
        with open(folder / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("test/acc")]
        assert len(rows) == 1
        assert float(rows[0]["test/acc"]) == pytest.approx(metrics["test"]["acc"], abs=1e-6)
        assert float(rows[0]["test/ece"]) == pytest.approx(metrics["test"]["ece"], rel=1e-6)
        assert math.isfinite(float(rows[0]["time/cache_seconds"]))
        hparams = yaml.safe_load((folder / "hparams.yaml").read_text())
        assert hparams["generation"] == k and hparams["data"]["train_subset"] == 300
        assert hparams["kd"]["variant"] == "standard" and "hp_metric" not in hparams


def test_full_class_path_spelling_is_kept_as_written():
    written = {"class_path": TB, "init_args": {"save_dir": "somewhere", "comment": "x"}}
    recipe = load_recipe(RECIPE, ["--trainer.logger", json.dumps(written)])
    assert [json.loads(json.dumps(e, default=dict)) for e in recipe.specs[0].loggers] == [written]
    appended = load_recipe(RECIPE, ["--trainer.logger+", "CSVLogger", "--trainer.logger+", json.dumps(written)])
    assert [json.loads(json.dumps(e, default=dict)) for e in appended.specs[0].loggers] == ["CSVLogger", written]


def test_lightningcli_short_form_options_keep_the_class():
    """``--trainer.logger CSVLogger --trainer.logger.save_dir D`` (and ``.init_args.KEY``) add init_args to the class
    named before them; the parser alone replaced the class name with ``{save_dir: D}`` and the run was refused."""
    recipe = load_recipe(RECIPE, ["--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", "somewhere",
                                  "--trainer.logger.init_args.name=n", "--trainer.callbacks=LearningRateMonitor",
                                  "--trainer.callbacks.logging_interval", "epoch"])
    spec = recipe.specs[0]
    assert [json.loads(json.dumps(e, default=dict)) for e in spec.loggers] == [
        {"class_path": "CSVLogger", "init_args": {"save_dir": "somewhere", "name": "n"}}]
    assert [json.loads(json.dumps(e, default=dict)) for e in spec.callbacks] == [
        {"class_path": "LearningRateMonitor", "init_args": {"logging_interval": "epoch"}}]


def test_forwarded_summarywriter_options_are_accepted_and_typos_refused():
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    assert {"comment", "flush_secs", "max_queue", "save_dir", "default_hp_metric"} <= accepted_kwargs(TensorBoardLogger)
    assert "comment" not in accepted_kwargs(CSVLogger)


BAD = {
    "forwarded option misspelt": ([f"{{class_path: {TB}, init_args: {{flush_sec: 3}}}}"],
                                  "trainer.logger.init_args.flush_sec is not an argument of TensorBoardLogger "
                                  "(accepted: comment, default_hp_metric, filename_suffix, flush_secs,"),
    "standalone pytorch_lightning class": (["pytorch_lightning.loggers.CSVLogger"],
                                           "'pytorch_lightning.loggers.CSVLogger' is from the standalone "
                                           "pytorch_lightning package, which the engine's lightning.pytorch trainer "
                                           "does not accept; use 'lightning.pytorch.loggers.CSVLogger'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_logger_is_one_line_exit_2(case, tmp_path, capsys):
    args, message = BAD[case]
    if "standalone" in case:
        pytest.importorskip("pytorch_lightning")
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY, "--trainer.logger", *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def _image_folder(root: Path) -> Path:
    """Three classes of random 10x12 RGB images with train/, val/ and test/ splits."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        for c in ("cat", "dog", "owl"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def test_validation_acc_nll_ece_reach_the_users_logger_every_epoch(tmp_path):
    folder, out = _image_folder(tmp_path / "images"), tmp_path / "run"
    data = json.dumps({"name": "imagefolder", "root": str(folder), "batch_size": 4, "eval_batch_size": 5})
    assert run_cli("run", RECIPE, "--out", str(out), "--data", data, "--generations", "1", "--trainer.max_epochs",
                   "2", "--trainer.enable_progress_bar", "false", "--trainer.logger", "TensorBoardLogger") == 0
    for k in (0, 1):
        events = EventAccumulator(str(out / f"gen-{k}" / "lightning_logs" / "version_0"))
        events.Reload()
        for tag in ("val/acc", "val/loss", "val/ece"):  # val/loss is the mean cross-entropy: the NLL
            values = [e.value for e in events.Scalars(tag)]
            assert len(values) == 2 and all(math.isfinite(v) for v in values), (tag, values)
        # 9 validation images: accuracy is a multiple of 1/9, and ECE (15 bins) lies in [0, 1]
        assert all(abs(e.value * 9 - round(e.value * 9)) < 1e-5 for e in events.Scalars("val/acc"))
        assert all(0 <= e.value <= 1 for e in events.Scalars("val/ece"))
        with open(out / f"gen-{k}" / "logs" / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r["val/ece"]]
        assert [float(r["val/ece"]) for r in rows] == pytest.approx([e.value for e in events.Scalars("val/ece")])
        assert events.Scalars("val/ece")[-1].value == pytest.approx(_val_ece(out, k), abs=1e-5)


def _val_ece(out: Path, k: int) -> float:
    """The final network's L1 ECE over 15 equal-width confidence bins on the validation images, worked out here."""
    import torch

    from distill.generations import BornAgainRun

    spec = load_recipe(str(out / "config.yaml"), []).run
    run = BornAgainRun(spec, out, "x", dm=build_datamodule(spec.data))  # reads gen-k/model.ckpt of the finished run
    network = run.network(run.specs[k]).eval()
    with torch.no_grad():
        batches = [(network(x).double().softmax(1).numpy(), y.numpy()) for x, y, *_ in run.dm.val_dataloader()]
    probs, labels = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    bins = np.clip(np.ceil(confidence * 15).astype(int) - 1, 0, 14)
    return float(sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
                     for b in range(15) if (bins == b).any()))
