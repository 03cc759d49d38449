"""Open a finished run directory for dark-knowledge inspection, without retraining anything.

:func:`load_run` reads ``RUN/config.yaml``, rebuilds the data module (for class names, labels and images), and opens
every requested generation's soft-label cache through :class:`~distill.cache.SoftLabelCache`, which rejects a cache
whose manifest does not match the checkpoint on disk or the dataset. In a notebook::

    run = load_run("runs/digits-ban-20250101-120000")
    S = run.similarity(run.generations[-1])        # (C, C) dark-knowledge matrix at the recipe's temperature
    probs = run.soft_labels(0, temperature=1.0)    # (N, C) training-set probabilities of generation 0

Every user-facing problem (not a run, unknown generation, stale cache, unreadable grouping) raises a subclass of
``ValueError`` with a one-line message: :class:`InspectError` here, :class:`~distill.cache.CacheError` from the cache.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill.analysis.similarity import class_similarity, soften
from distill.analysis.taxonomy import BUILTIN_GROUPINGS, CLASS_NAMES, grouping_indices, load_grouping
from distill.cache import SoftLabelCache
from distill.errors import UserError
from distill.generations import build_datamodule
from distill.io import sha256_file
from distill.plan import RunLayout

GEN_DIR = re.compile(r"gen-(\d+)")


class InspectError(UserError, ValueError):
    """A run directory, generation or option that cannot be inspected; the message is one line."""


@dataclass
class InspectableRun:
    """A finished run opened for analysis: labels, class names and verified per-generation logits.

    Attributes:
        root: the run directory.
        config: the resolved recipe (``RUN/config.yaml`` parsed back).
        datamodule: the run's data module, set up (``cache_set[i]`` is training sample ``i``).
        class_names: class names in label order.
        train_labels: ``(N,)`` training labels in dataset-index order (the caches' row order).
        test_labels: ``(M,)`` test labels in test-loader order (the ``test_logits.npy`` row order).
        temperature: softening temperature for the dark knowledge (the recipe's ``kd.temperature`` unless overridden).
        caches: generation -> verified, memory-mapped soft-label cache.
    """

    root: Path
    config: Any
    datamodule: Any
    class_names: list[str]
    train_labels: np.ndarray
    test_labels: np.ndarray
    temperature: float
    caches: dict[int, SoftLabelCache] = field(default_factory=dict)

    @property
    def generations(self) -> list[int]:
        """The generations opened, ascending."""
        return sorted(self.caches)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def dataset_name(self) -> str:
        return str(self.config.data["name"])

    def _cache(self, generation: int) -> SoftLabelCache:
        if generation not in self.caches:
            raise InspectError(f"generation {generation} is not loaded (loaded: {_listing(self.generations)})")
        return self.caches[generation]

    def logits(self, generation: int) -> np.ndarray:
        """``(N, C)`` training-set logits of ``generation`` (memory-mapped, float16 or float32, by dataset index)."""
        return self._cache(generation).array

    def soft_labels(self, generation: int, temperature: float | None = None) -> np.ndarray:
        """``(N, C)`` float32 softened training-set probabilities (default: :attr:`temperature`)."""
        logits = np.array(self.logits(generation), dtype=np.float32)  # writable float32 copy of the memory map
        return soften(logits, self.temperature if temperature is None else temperature)

    def similarity(self, generation: int, temperature: float | None = None) -> np.ndarray:
        """``(C, C)`` class-similarity matrix of ``generation`` (see :func:`~distill.analysis.class_similarity`)."""
        return class_similarity(self.soft_labels(generation, temperature), self.train_labels, self.num_classes)

    def test_logits(self, generation: int) -> np.ndarray | None:
        """``(M, C)`` test-set logits of ``generation`` in test-loader order, or ``None`` if the run has none."""
        path = RunLayout(self.root).test_logits(generation)
        if not path.is_file():
            return None
        logits = np.load(path, allow_pickle=False)
        if logits.shape != (len(self.test_labels), self.num_classes):
            raise InspectError(f"{path} has shape {logits.shape}, expected ({len(self.test_labels)}, "
                               f"{self.num_classes}) for this run's test set")
        return logits

    def grouping(self, path: str | Path | None = None) -> tuple[str, dict[str, list[int]]] | None:
        """``(source, groups as class indices)`` from a JSON file, else the built-in one for this dataset, else None.

        The built-in grouping is chosen by dataset name (``cifar100``, ``cifar10``, ``fashion_mnist``) or, for any
        other data module (e.g. an image folder), by its class names equalling a built-in dataset's.
        """
        if path is not None:
            try:
                return str(path), load_grouping(path, self.class_names)
            except OSError as e:
                raise InspectError(f"cannot read grouping file {path}: {e.strerror}") from None
            except ValueError as e:
                raise InspectError(str(e)) from None
        names = tuple(self.class_names)
        keys = [self.dataset_name] + [k for k, v in CLASS_NAMES.items() if tuple(v) == names]
        for key in keys:
            if key in BUILTIN_GROUPINGS and tuple(CLASS_NAMES[key]) == names:
                return f"built-in {key}", grouping_indices(BUILTIN_GROUPINGS[key], names, source=f"built-in {key}")
        return None

    def images(self, indices: Sequence[int]) -> np.ndarray:
        """Training images ``indices`` as float ``(n, C, H, W)`` in ``[0, 1]``, ready for display.

        Un-normalised per channel with the data module's ``input_stats()`` when it states them; otherwise each image is
        min-max scaled.
        """
        if len(indices) == 0:
            return np.zeros((0, 1, 1, 1))
        x = torch.stack([torch.as_tensor(self.datamodule.cache_set[int(i)][0]).float().cpu() for i in indices])
        mean, std = self.datamodule.input_stats() or (None, None)
        if mean is not None and std is not None and len(mean) == x.shape[1] and len(std) == x.shape[1]:
            shape = (1, -1, 1, 1)
            x = x * torch.tensor(std, dtype=x.dtype).view(shape) + torch.tensor(mean, dtype=x.dtype).view(shape)
        else:
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            hi = x.amax(dim=(1, 2, 3), keepdim=True)
            x = (x - lo) / (hi - lo).clamp_min(1e-12)
        return x.clamp(0.0, 1.0).numpy()


def _recipe_temperature(specs: Sequence[Any]) -> float:
    """The temperature the run's students learned at (the last one that has one), else 1."""
    return next((s.kd.temperature for s in reversed(specs) if s.members and s.kd.temperature), 1.0)


def _listing(values: Sequence[int]) -> str:
    return ", ".join(str(v) for v in values) or "none"


def available_generations(run_dir: str | Path) -> list[int]:
    """Generations with both a checkpoint (``gen-k/model.ckpt``) and a cache directory (``cache/gen-k``)."""
    layout = RunLayout(Path(run_dir))
    found = [int(m.group(1)) for p in layout.root.glob("gen-*") if (m := GEN_DIR.fullmatch(p.name))]
    return sorted(k for k in found if layout.checkpoint(k).is_file() and layout.cache_dir(k).is_dir())


def load_run(run_dir: str | Path, generations: Sequence[int] | None = None,
             temperature: float | None = None) -> InspectableRun:
    """Open a run directory written by ``distill run``.

    Args:
        run_dir: the run directory (holds ``config.yaml``, ``gen-k/`` and ``cache/gen-k/``).
        generations: which generations to open (default: every finished one).
        temperature: softening temperature (default: the recipe's ``kd.temperature``); must be ``> 0``.

    Raises:
        InspectError: not a run directory, unreadable config, unknown generation, bad temperature.
        CacheError: a cache that is incomplete, corrupted, or does not match its checkpoint or the dataset.
        DataError: the run's dataset cannot be loaded here.
    """
    from distill.config import RecipeError
    from distill.resolve import load_recipe

    root = Path(run_dir)
    config_path = root / "config.yaml"
    if not root.is_dir():
        raise InspectError(f"{root} is not a directory")
    if not config_path.is_file():
        raise InspectError(f"{root} is not a distill run directory (no config.yaml; make one with `distill run`)")
    available = available_generations(root)
    if not available:
        raise InspectError(f"{root} has no finished generation (no gen-k/model.ckpt with a cache/gen-k)")
    wanted = available if generations is None else sorted(set(int(k) for k in generations))
    missing = [k for k in wanted if k not in available]
    if missing:
        raise InspectError(f"generation {missing[0]} does not exist in {root} (available: {_listing(available)})")
    if temperature is not None and not temperature > 0:
        raise InspectError(f"temperature must be > 0, got {temperature}")
    try:
        # Inspection reads the run's own files: a loaded teacher's source (possibly gone by now) is not needed.
        recipe = load_recipe(str(config_path), ["--load", "null"])
    except RecipeError as e:
        raise InspectError(f"{config_path}: {e}") from None
    cfg = recipe.cfg
    dm = build_datamodule(cfg.data)
    fingerprint = dm.fingerprint()
    layout = RunLayout(root)
    caches = {k: SoftLabelCache(layout.cache_dir(k), fingerprint, sha256_file(layout.checkpoint(k))) for k in wanted}
    return InspectableRun(
        root=root, config=cfg, datamodule=dm, class_names=[str(n) for n in dm.class_names],
        train_labels=np.asarray(dm.train_labels(), dtype=np.int64),
        test_labels=np.asarray(dm.test_labels(), dtype=np.int64),
        temperature=float(_recipe_temperature(recipe.specs) if temperature is None else temperature), caches=caches,
    )
