"""What the results table reports besides accuracy: seconds per meta-iteration and the memory of one iteration."""

from __future__ import annotations

import time
from typing import Any, Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from distill.faults import fault_point


class IterationTimer(Callback):
    """Wall seconds of every training batch (forward, backward and optimiser step) of this process."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.seconds.append(time.perf_counter() - self._start)

    def mean(self) -> float | None:
        """Mean seconds per iteration, the first (warm-up) left out when there are others."""
        s = self.seconds[1:] if len(self.seconds) > 1 else self.seconds
        return sum(s) / len(s) if s else None


class MetaFaults(Callback):
    """Fault points of a meta run for the crash tests: ``meta:step:S`` after optimiser step S, ``meta:epoch:E``
    once epoch E's checkpoint is written (see :mod:`distill.faults`)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        fault_point(f"meta:step:{trainer.global_step}")

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fault_point(f"meta:epoch:{trainer.current_epoch - 1}")


def graph_bytes(loss_fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct tensor storages autograd saves for the backward pass of ``loss_fn()``.

    The memory a meta-iteration holds between forward and backward, device-independent: second-order MAML keeps
    every inner step's activations *and* the graph of their gradients, FOMAML and ANIL much less. (On a GPU, peak
    allocator memory is reported beside it.)
    """
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()
    return int(sum(seen.values()))
