"""Running under Lightning's DDP: who is global rank 0, which launchers work, and gathering predictions.

``distill run ... --trainer.strategy ddp --trainer.devices N`` starts as one process. At the first fit or predict,
Lightning's subprocess launcher re-runs the same command line in N - 1 child processes with ``LOCAL_RANK``,
``NODE_RANK``, ``WORLD_SIZE`` set (torchrun and SLURM ``srun`` instead start every process themselves, with ``RANK``
or ``SLURM_PROCID``). Every process then runs the whole born-again loop, so every rank reaches the same trainers and
collectives in the same order; only global rank 0 writes the run directory's shared files. See
``docs/distributed.md``.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

# Rank variables of the launchers Lightning supports: its own subprocess launcher (LOCAL_RANK, NODE_RANK), torchrun
# (RANK, LOCAL_RANK, GROUP_RANK) and SLURM (SLURM_PROCID). Global rank 0 has 0 in every one that is set.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def env_is_global_zero() -> bool:
    """Whether this process is global rank 0 according to the launcher's environment variables.

    True for a plain single process (none set) and for the process a user starts before Lightning launches the other
    ranks. Valid before any trainer exists, which is when the command line decides whether to create the run
    directory.
    """
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in RANK_VARIABLES)


def is_global_zero() -> bool:
    """Whether this process is global rank 0: the process group's rank once there is one, else the environment's."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_is_global_zero()


def barrier() -> None:
    """Wait for every rank when a process group exists (a no-op in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def finish() -> None:
    """End of a distributed run: wait for every rank, then destroy the process group (no-op in a single process).

    Rank 0 does not exit before the ranks it launched are done, and a rank that died is noticed here.
    """
    if dist.is_available() and dist.is_initialized():
        barrier()
        dist.destroy_process_group()


def require_command_launcher(trainer: L.Trainer) -> None:
    """Raise :class:`~distill.config.RecipeError` for a strategy that does not run the whole command in every process.

    The engine needs every rank to run the whole born-again loop (it launches a trainer per generation and per cache
    build): Lightning's ``ddp`` (subprocess launcher), or processes started by torchrun / SLURM, qualify. ``ddp_spawn``,
    ``ddp_fork`` and ``ddp_notebook`` run only the fit function in their workers and would lose every rank's results.
    """
    launcher = getattr(trainer.strategy, "launcher", None)
    if launcher is not None and not isinstance(launcher, _SubprocessScriptLauncher):
        from distill.config import RecipeError

        raise RecipeError(f"trainer.strategy {type(trainer.strategy).__name__} starts its processes with "
                          f"{type(launcher).__name__.strip('_')}; distill needs every process to run the whole "
                          "command: use --trainer.strategy ddp (or start the processes with torchrun or srun)")


class GatherPredictions(BasePredictionWriter):
    """Collect a predict loop's outputs in dataset order; under DDP from every rank, so each rank holds them all.

    Batches are ``(x, y, index, ...)``; row ``index`` of :attr:`outputs` is the prediction for dataset sample
    ``index``. Under a multi-process strategy each rank scores its shard (Lightning's predict sampler gives each
    sample to exactly one rank) and the shards are exchanged with ``all_gather_object`` at the end of the loop, so all
    ranks take the same next steps. Every index must be predicted exactly once.

    Args:
        num_samples: length of the dataset being predicted.
    """

    def __init__(self, num_samples: int) -> None:
        super().__init__(write_interval="batch")
        self.num_samples = int(num_samples)
        self.outputs: torch.Tensor | None = None
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._parts, self.outputs = [], None

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: torch.Tensor,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._parts.append((batch[2].cpu().numpy(), prediction.detach().float().cpu().numpy()))

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        parts = self._parts
        if trainer.world_size > 1:
            gathered: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(gathered, parts)
            parts = [part for rank_parts in gathered for part in rank_parts]
        self._parts = []
        if not parts:
            raise RuntimeError("the predict loop produced no batches")
        index = np.concatenate([i for i, _ in parts])
        values = np.concatenate([v for _, v in parts])
        counts = np.bincount(index, minlength=self.num_samples)
        if len(counts) != self.num_samples or counts.min() != 1 or counts.max() != 1:
            raise RuntimeError(f"predictions cover {int((counts > 0).sum())} of {self.num_samples} samples, "
                               f"{int((counts > 1).sum())} more than once")
        out = np.empty((self.num_samples, *values.shape[1:]), dtype=values.dtype)
        out[index] = values
        self.outputs = torch.from_numpy(out)
