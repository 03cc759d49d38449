"""The run directory's layout, the one place that writes into it, and the plan: what is done, stale or to do.

Under DDP every rank computes the same plan (it depends only on files that change after a collective every rank has
reached); :class:`RunLayout`'s writers do nothing off global rank 0, so the loop reads without rank checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from distill.distributed import is_global_zero
from distill.io import atomic_write_json, atomic_writer
from distill.spec import GenerationSpec
from distill.state import RunState


@dataclass(frozen=True)
class RunLayout:
    """Paths inside a run directory, and its rank-0 writers."""

    root: Path

    def gen_dir(self, k: int) -> Path:
        return self.root / f"gen-{k}"

    def checkpoint(self, k: int) -> Path:
        return self.gen_dir(k) / "model.ckpt"

    def cache_dir(self, k: int) -> Path:
        return self.root / "cache" / f"gen-{k}"

    def test_logits(self, k: int) -> Path:
        return self.gen_dir(k) / "test_logits.npy"

    def metrics(self, k: int) -> Path:
        return self.gen_dir(k) / "metrics.json"

    def last_checkpoint(self, k: int) -> Path:
        """End-of-epoch checkpoint with the full trainer state, for resuming an interrupted generation."""
        return self.gen_dir(k) / "checkpoints" / "last.ckpt"

    def make_gen_dir(self, k: int) -> None:
        if is_global_zero():
            self.gen_dir(k).mkdir(parents=True, exist_ok=True)

    def write_json(self, path: Path, obj: Any) -> None:
        """Atomic JSON write, on global rank 0 only."""
        if is_global_zero():
            atomic_write_json(path, obj)

    def write_array(self, path: Path, array: np.ndarray) -> None:
        """Atomic ``.npy`` write, on global rank 0 only."""
        if is_global_zero():
            with atomic_writer(path) as tmp:
                np.save(tmp, array)

    def remove(self, path: Path) -> None:
        if is_global_zero():
            path.unlink(missing_ok=True)


Action = Literal["reuse", "evaluate", "train", "load"]


@dataclass(frozen=True)
class Step:
    """What the loop does for one generation.

    Attributes:
        spec: the generation.
        action: ``reuse`` (checkpoint and metrics are there), ``evaluate`` (checkpoint saved, metrics not: a crash
            between the two; never retrained), ``train`` or ``load`` (a loaded generation 0).
        build_cache: whether its soft-label cache must be (re)built.
    """

    spec: GenerationSpec
    action: Action
    build_cache: bool

    @property
    def fresh(self) -> bool:
        """The generation's weights are (re)made by this step."""
        return self.action in ("train", "load")


def make_plan(specs: Sequence[GenerationSpec], layout: RunLayout, state: RunState,
              checkpoint_sha: Callable[[int], str], cache_is_valid: Callable[[int], bool]) -> list[Step]:
    """Decide every generation's step from the run directory, before anything runs.

    A generation counts as trained when its checkpoint has the checksum ``state.json`` recorded; once one
    generation is (re)made, every later one is too (it would have learned from a teacher that no longer exists).
    ``cache_is_valid`` may raise for a cache that was built from something else (never overwritten silently).
    """
    steps: list[Step] = []
    remake = False
    for spec in specs:
        k = spec.index
        sha = state.generation_sha(k)
        trained = not remake and sha is not None and layout.checkpoint(k).is_file() and checkpoint_sha(k) == sha
        if not trained:
            remake = True
            steps.append(Step(spec, "load" if spec.load is not None else "train", build_cache=True))
            continue
        evaluated = layout.metrics(k).is_file() and layout.test_logits(k).is_file()
        steps.append(Step(spec, "reuse" if evaluated else "evaluate", build_cache=not cache_is_valid(k)))
    return steps
