"""Sinusoid regression, the first experiment of the MAML paper: y = A sin(x − φ), A in [0.1, 5], φ in [0, π],
x uniform in [−5, 5]; K support and Q query points per task, the task drawn from (seed, split, index)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from distill.meta.episodes import Episode, episode_rng

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, math.pi)
X_RANGE = (-5.0, 5.0)


@dataclass(frozen=True)
class SinusoidTasks:
    """Sinusoid tasks; every split draws from the same task distribution through its own episode seeds.

    Args:
        shot: support points per task (K).
        query: query points per task.
        seed: episode seed.
    """

    shot: int = 10
    query: int = 10
    seed: int = 0

    def task(self, split: str, index: int) -> tuple[float, float]:
        """``(amplitude, phase)`` of task ``index`` of ``split``."""
        rng = episode_rng(self.seed, split, index)
        return float(rng.uniform(*AMPLITUDE)), float(rng.uniform(*PHASE))

    def episode(self, split: str, index: int) -> Episode:
        rng = episode_rng(self.seed, split, index)
        amp, phase = rng.uniform(*AMPLITUDE), rng.uniform(*PHASE)
        x = rng.uniform(*X_RANGE, size=(self.shot + self.query, 1))
        y = amp * np.sin(x - phase)
        xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
        return xt[: self.shot], yt[: self.shot], xt[self.shot:], yt[self.shot:]
