"""Callbacks and plugins for long, resumable runs: epoch seeding, non-finite loss guard, atomic checkpoints."""

from __future__ import annotations

import math
import pickle
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from rich.console import Console

from distill.distributed import is_global_zero
from distill.errors import UnsafeCheckpointError
from distill.faults import fault_point
from distill.io import atomic_writer, move_aside


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names generation, epoch and step."""


class EpochSeed(Callback):
    """Re-seed python, numpy and torch before the first batch of every epoch from (generation seed, epoch).

    Every epoch's random draws in the training step (dropout, DKPP permutations) then depend only on the seed and
    the epoch number, so a run resumed from an end-of-epoch checkpoint continues exactly as if never stopped. (The
    data order is the sampler's business: the data modules' samplers are seeded by (seed, epoch) through
    ``set_epoch``.) Seeding at the first batch rather than in ``on_train_epoch_start`` also covers the first epoch
    after a restore, for which Lightning skips the epoch-start hooks.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx == 0:
            epoch_seed = int(np.random.SeedSequence([self.seed, trainer.current_epoch]).generate_state(1)[0])
            random.seed(epoch_seed)
            np.random.seed(epoch_seed)
            torch.manual_seed(epoch_seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fault_point(f"fit:{pl_module.hparams.generation}:epoch:{trainer.current_epoch - 1}")


class FiniteLossGuard(Callback):
    """Stop training with :class:`NonFiniteLossError` when a step's loss is NaN or infinite.

    The last end-of-epoch checkpoint always stays as it was: the check of an epoch's last step happens before its
    checkpoint. On the CPU each step is checked at its end. On a GPU reading the loss would stall the host until the
    device finishes the step, every step; so the check is started without waiting (a copy to pinned memory behind an
    event) and read one step later, when the device has long finished it -- a non-finite loss stops training one
    step later, naming its own step, and the epoch's last step is still read before the checkpoint. Under DDP the ranks
    agree on the decision each step (one tiny all-reduce), so every rank stops at the same step with the same error
    instead of the others waiting in the next gradient all-reduce.
    """

    def __init__(self) -> None:
        self._pending: tuple[torch.Tensor, Any, str, torch.Tensor] | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        gen = pl_module.hparams.generation
        where = f"generation {gen}, epoch {trainer.current_epoch}, step {trainer.global_step}"
        if loss is not None and loss.device.type == "cuda" and trainer.world_size == 1:
            self._check_pending()
            flag = torch.isfinite(loss.detach()).all().to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending = (flag, event, where, loss.detach())
        else:
            local = loss is None or bool(torch.isfinite(loss).all())
            finite = trainer.strategy.reduce_boolean_decision(local, all=True) if trainer.world_size > 1 else local
            if not finite:
                value = "non-finite on another rank" if local else loss.item()
                raise NonFiniteLossError(f"{where}: training loss is {value}")
        fault_point(f"fit:{gen}:step:{trainer.global_step}")

    def _check_pending(self) -> None:
        if self._pending is None:
            return
        flag, event, where, loss = self._pending
        self._pending = None
        event.synchronize()
        if not bool(flag):
            raise NonFiniteLossError(f"{where}: training loss is {loss.item()}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_pending()  # before the epoch's checkpoint (checkpoint callbacks run last)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_pending()  # a checkpoint saved at validation end must not hold the unchecked step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_pending()


class ThrottledProgressBar(RichProgressBar):
    """Lightning's rich progress bar, redrawn at most ``refresh_hz`` times a second (and on every last batch).

    The stock bar redraws and reads every progress-bar metric on every batch; reading a metric is a ``.item()``, a
    device sync on a GPU, and the redraw is Python work that a step of a few milliseconds notices. Between redraws a
    batch costs one clock read. The last batch of every loop is always drawn, so the final counts and metrics shown
    are exact. Whether the current training batch is drawn is decided when it starts (:attr:`draw_this_batch`), so
    the module can skip logging values nobody will see.

    Rich's refresh thread wakes ``refresh_rate`` times a second (Lightning's default: 100) and takes the GIL each
    time, which a step of a few milliseconds notices (``docs/benchmarks.md`` measures the stock bar against this one);
    here it wakes as often as the bar can be redrawn.

    Args:
        refresh_hz: redraws per second at most (and the refresh thread's wake-ups per second, rounded up).
        leave: keep each epoch's finished bar on screen.
        doing: what a prediction loop does, shown on its bar (Lightning's default: "Predicting").
        **kwargs: the other arguments of :class:`~lightning.pytorch.callbacks.RichProgressBar`.
    """

    def __init__(self, refresh_hz: float = 4.0, leave: bool = True, doing: str = "Predicting", **kwargs: Any) -> None:
        if refresh_hz <= 0:
            raise ValueError(f"refresh_hz must be positive, got {refresh_hz}")
        kwargs.setdefault("refresh_rate", max(1, math.ceil(refresh_hz)))
        super().__init__(leave=leave, **kwargs)
        self.interval = 1.0 / refresh_hz
        self.doing = doing
        self._next_draw = 0.0
        self.draw_this_batch = True

    @property
    def predict_description(self) -> str:
        """The prediction bar's label: what it is scoring."""
        return self.doing

    def _stop_progress(self) -> None:
        """Stop the display without waiting out the refresh thread's sleep.

        Lightning's refresh thread sleeps ``1 / refresh_rate`` between wake-ups and is joined when a loop's display
        stops, so at a few wake-ups a second the end of every fit, validation and prediction would wait up to a
        quarter of a second. The thread is told to stop and left to end by itself (a daemon thread that checks the
        flag before it draws); the display's own stop still draws the final state.
        """
        live = getattr(self.progress, "live", None)
        thread = getattr(live, "_refresh_thread", None)
        if thread is not None:
            thread.stop()
            live._refresh_thread = None  # nothing left for the progress's stop to join
        super()._stop_progress()

    def _due(self, batch_idx: int, total: float) -> bool:
        now = time.monotonic()
        if now < self._next_draw and batch_idx + 1 < total:
            return False
        self._next_draw = now + self.interval
        return True

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.draw_this_batch = self._due(batch_idx, self.total_train_batches)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.draw_this_batch:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx, self.total_val_batches_current_dataloader):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._due(batch_idx, self.total_predict_batches_current_dataloader):
            super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O through :func:`distill.io.atomic_writer`: never a half checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def resumable_checkpoint(last: Path, console: Console) -> bool:
    """Whether ``last`` is a checkpoint to resume a generation from.

    Writes are atomic (:class:`AtomicCheckpointIO`), so an unreadable file was damaged afterwards: it is moved aside
    as ``last.ckpt.damaged`` and the generation starts over, with a message. A file that would run code when
    unpickled is not moved: :class:`~distill.errors.UnsafeCheckpointError` names it and the run stops with exit
    code 2.
    """
    if not last.is_file():
        return False
    try:
        torch.load(last, map_location="cpu", weights_only=True)  # once per resume; a pickle bomb raises here
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError.of(last, e) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        if is_global_zero():
            move_aside(last, ".damaged")
        console.print(f"[yellow]{last} cannot be read ({type(e).__name__}); training this generation from the start[/]")
        return False
    return True
