"""Speed settings run for real on the CPU, and the hot-path savings change nothing a user reads.

``speed.compile``, ``speed.channels_last`` and ``trainer.precision bf16-mixed`` each train a small conv net on the
digits for one epoch through the engine; the per-step loss trajectory must match the eager float32 run (compile and
channels_last: the same math, so within float tolerance; bf16: within bf16 rounding). The throttled logging and
progress bar must leave ``metrics.csv`` exactly as logging every step did.
"""

from __future__ import annotations

import csv
from pathlib import Path
from unittest import mock

import lightning as L
import pytest
import torch
from conftest import run_cli
from lightning.pytorch.callbacks import RichProgressBar

from distill.callbacks import ThrottledProgressBar
from distill.tasks.born_again import GenerationModule

# 320 digits / batch 32 = 10 steps, every one logged; a one-conv network keeps the compilation short
ARGS = ["--data.train_subset", "320", "--data.batch_size", "32", "--generations", "0", "--trainer.max_epochs", "1",
        "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false", "--trainer.deterministic",
        "false", "--backbone", '{"class_path": "test_speed.TinyConv"}']


class TinyConv(torch.nn.Module):
    """One 3x3 convolution (NHWC under channels_last), ReLU, global pooling and a linear classifier."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(in_chans, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "gen-0" / "logs" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _losses(out: Path) -> list[float]:
    return [float(r["train/loss"]) for r in _rows(out) if r.get("train/loss")]


def _train(tmp_path: Path, name: str, *extra: str) -> list[float]:
    out = tmp_path / name
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), *ARGS, *extra) == 0
    return _losses(out)


@pytest.fixture(scope="module")
def eager(tmp_path_factory: pytest.TempPathFactory) -> list[float]:
    losses = _train(tmp_path_factory.mktemp("eager"), "run")
    assert len(losses) == 10 and losses[-1] < losses[0]  # it learns
    return losses


@pytest.mark.parametrize(("extra", "tol"), [
    (("--speed.compile", "true"), 1e-4),
    (("--speed.channels_last", "true"), 1e-4),
    (("--trainer.precision", "bf16-mixed"), 0.05),
])
def test_speed_settings_train_like_eager_float32(tmp_path, eager, extra, tol):
    from torch._dynamo.utils import counters

    calls = []
    real = torch.nn.Module.compile
    counters.clear()
    with mock.patch.object(torch.nn.Module, "compile", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)):
        losses = _train(tmp_path, "run", *extra)
    compiled = extra[0] == "--speed.compile"
    assert bool(calls) == compiled and (counters["stats"]["unique_graphs"] > 0) == compiled  # graphs really ran
    assert len(losses) == len(eager)
    for a, b in zip(losses, eager, strict=True):
        assert abs(a - b) <= tol * max(1.0, abs(b)), (extra, losses, eager)
    if extra[0] == "--trainer.precision":  # bf16 really ran: not bit-identical to float32
        assert losses != eager


def test_throttled_logging_writes_the_same_metrics_csv(tmp_path):
    """Skipping ``self.log`` on steps no logger writes leaves every row of metrics.csv as logging every step did."""
    args = ["--trainer.log_every_n_steps", "3", "--trainer.max_epochs", "2"]
    with mock.patch.object(GenerationModule, "_step_is_shown", lambda self: True):
        _train(tmp_path, "every-step", *args)
    _train(tmp_path, "throttled", *args)
    every, throttled = _rows(tmp_path / "every-step"), _rows(tmp_path / "throttled")
    assert every == throttled
    assert sum(1 for r in every if r["train/loss"]) == 6 and sum(1 for r in every if r["train/acc"]) == 2


class LinearModule(L.LightningModule):
    """A one-layer module that trains (lr 0) and predicts: enough for a progress bar to have batches to draw."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.w(batch[0]).sum()

    def predict_step(self, batch, batch_idx):
        return self.w(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_throttled_progress_bar_draws_the_last_batch_and_at_most_its_rate(tmp_path):
    drawn = []
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(20, 2)), batch_size=2)
    for hz, expected in ((1e-9, [9, 19]), (1e9, list(range(20)))):
        drawn.clear()
        bar = ThrottledProgressBar(refresh_hz=hz)
        bar._next_draw = float("inf") if hz < 1 else 0.0  # nothing is due before the last batch at a tiny rate
        real = ThrottledProgressBar.__mro__[1].on_train_batch_end

        def spy(self, trainer, module, outputs, batch, batch_idx, real=real):
            drawn.append(trainer.global_step - 1 if trainer.global_step else batch_idx)
            real(self, trainer, module, outputs, batch, batch_idx)

        with mock.patch.object(ThrottledProgressBar.__mro__[1], "on_train_batch_end", spy):
            L.Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                      enable_model_summary=False, callbacks=[bar], default_root_dir=tmp_path).fit(LinearModule(), data)
        assert drawn == expected, (hz, drawn)


def test_throttled_bar_refresh_thread_wakes_at_the_redraw_rate(tmp_path):
    """Rich's refresh thread wakes refresh_rate times a second (Lightning's default 100): ours wakes at refresh_hz."""
    assert RichProgressBar().refresh_rate == 100  # what the stock bar does, so the override below means something
    assert ThrottledProgressBar(refresh_hz=4).refresh_rate == 4
    assert ThrottledProgressBar(refresh_hz=2.5).refresh_rate == 3  # rounded up, never 0 (0 would disable the bar)
    assert ThrottledProgressBar(refresh_hz=1, refresh_rate=7).refresh_rate == 7  # an explicit rate wins
    with pytest.raises(ValueError, match="refresh_hz"):
        ThrottledProgressBar(refresh_hz=0)
    seen = []

    class Probe(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(trainer.progress_bar_callback.progress.live.refresh_per_second)

    from lightning.pytorch.callbacks.progress.rich_progress import _RefreshThread

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)
    joined, real_join = [], _RefreshThread.join

    def join(self, *args, **kwargs):
        joined.append(self)
        return real_join(self, *args, **kwargs)

    for bar, expect_join in ((ThrottledProgressBar(refresh_hz=4), False), (RichProgressBar(), True)):
        joined.clear()
        seen.clear()
        trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                            enable_model_summary=False, callbacks=[bar, Probe()], default_root_dir=tmp_path)
        with mock.patch.object(_RefreshThread, "join", join):
            trainer.fit(LinearModule(), data)
            trainer.predict(LinearModule(), data, return_predictions=False)
        assert seen == ([4, 4] if not expect_join else [100, 100])
        # The stock bar joins its sleeping refresh thread at every loop's end (up to 1 / refresh_rate seconds);
        # ours stops it without waiting, and no display is left running.
        assert bool(joined) is expect_join and bar.progress is not None and not bar.progress.live.is_started


def test_running_accuracy_matches_torchmetrics_over_an_epoch():
    from torchmetrics.classification import MulticlassAccuracy

    from distill.tasks.born_again import RunningAccuracy

    g = torch.Generator().manual_seed(0)
    ours, ref = RunningAccuracy(), MulticlassAccuracy(num_classes=5, average="micro")
    assert float(ours.compute()) == 0.0
    hits = seen = 0
    for n in (7, 16, 3):  # unequal batches: a mean of batch accuracies would differ
        logits, y = torch.randn(n, 5, generator=g), torch.randint(0, 5, (n,), generator=g)
        ours.update(logits, y)
        ref.update(logits, y)
        hits, seen = hits + int((logits.argmax(1) == y).sum()), seen + n
    assert float(ours.compute()) == pytest.approx(hits / seen) == pytest.approx(float(ref.compute()))
    ours.reset()
    assert float(ours.compute()) == 0.0
