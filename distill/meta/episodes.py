"""N-way K-shot episodes over disjoint meta-train / meta-val / meta-test class splits, reproducible by index.

An episode is drawn from its own generator seeded by ``(seed, split, episode index)``: episode 17 of the meta-test
split is the same tensors in every run, process and method, so all methods and baselines are scored on exactly the
same tasks, and a resumed run sees the episodes it would have seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from distill.data.base import DataError
from distill.io import atomic_write_text

SPLITS = ("train", "val", "test")
STREAM = {name: i for i, name in enumerate(SPLITS)}  # a split's id in the episode seed

Episode = tuple[Tensor, Tensor, Tensor, Tensor]  # support x, support y, query x, query y


def split_classes(num_classes: int, split: Mapping[str, Any], seed: int,
                  groups: Sequence[int] | None = None) -> dict[str, list[int]]:
    """Disjoint class lists for ``train``/``val``/``test``.

    Args:
        num_classes: classes of the source (ids ``0..num_classes-1``).
        split: per split either a count (classes drawn by a seeded permutation, in the order train, val, test) or an
            explicit list of class ids. A split left out gets no classes.
        seed: seed of the permutation.
        groups: the group of every class (Omniglot: the character of each rotation class). Given, the counts and ids
            of ``split`` are groups, and every class of a group lands in the same split.

    Raises:
        DataError: unknown split name, a count or id out of range, overlapping splits, or too few classes.
    """
    if groups is not None:
        members: dict[int, list[int]] = {}
        for c, g in enumerate(groups):
            members.setdefault(int(g), []).append(c)
        if sorted(members) != list(range(len(members))):
            raise ValueError("groups must number the groups 0..G-1")
        by_group = split_classes(len(members), split, seed)
        return {name: sorted(c for g in ids for c in members[g]) for name, ids in by_group.items()}
    unknown = sorted(set(split) - set(SPLITS))
    if unknown:
        raise DataError(f"split.{unknown[0]} is not a split (accepted: {', '.join(SPLITS)})")
    explicit = {k: v for k, v in split.items() if isinstance(v, (list, tuple))}
    taken: set[int] = set()
    for name, ids in explicit.items():
        for c in ids:
            if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < num_classes:
                raise DataError(f"split.{name}: class {c!r} is not a class id in [0, {num_classes})")
            if c in taken:
                raise DataError(f"split.{name}: class {c} is in two splits; the splits must be disjoint")
            taken.add(c)
    free = [int(c) for c in np.random.default_rng(seed).permutation(num_classes) if int(c) not in taken]
    out: dict[str, list[int]] = {}
    for name in SPLITS:
        value = split.get(name, 0)
        if isinstance(value, (list, tuple)):
            out[name] = [int(c) for c in value]
            continue
        if value is None:
            value = 0
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DataError(f"split.{name} must be a class count >= 0 or a list of class ids, got {value!r}")
        if value > len(free):
            raise DataError(f"split.{name} asks for {value} classes but only {len(free)} of {num_classes} are left")
        out[name], free = sorted(free[:value]), free[value:]
    return out


def write_splits(path: Path, splits: Mapping[str, Sequence[int]], class_names: Sequence[str], seed: int) -> None:
    """``splits.json``: each split's class ids and names (and the seed), so the meta-test classes are on record."""
    doc = {"seed": seed, **{name: {"classes": list(ids), "names": [class_names[c] for c in ids]}
                            for name, ids in splits.items()}}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


class EpisodeSource(Protocol):
    """What a :class:`EpisodeDataset` reads: ``episode(split, index) -> (support x, support y, query x, query y)``."""

    def episode(self, split: str, index: int) -> Episode: ...


def episode_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one episode: a function of (seed, split, index) only."""
    return np.random.default_rng([int(seed), STREAM[split], int(index)])


@dataclass
class ClassEpisodes:
    """N-way K-shot episodes with Q queries per class from labelled images split by class.

    Labels inside an episode are ``0..way-1`` in a random order (a class has no fixed output unit).

    Args:
        images: float ``(N, C, H, W)`` (normalised).
        labels: ``(N,)`` class ids.
        splits: split name -> class ids (disjoint).
        way: classes per episode (N).
        shot: support samples per class (K).
        query: query samples per class (Q).
        seed: episode seed.
    """

    images: Tensor
    labels: Tensor
    splits: Mapping[str, Sequence[int]]
    way: int
    shot: int
    query: int
    seed: int = 0

    def __post_init__(self) -> None:
        labels = self.labels.cpu().numpy()
        self._by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
        for name, ids in self.splits.items():
            if ids and len(ids) < self.way:
                raise DataError(f"split.{name} has {len(ids)} classes, fewer than episodes.way={self.way}")
            for c in ids:
                n = len(self._by_class.get(int(c), ()))
                if n < self.shot + self.query:
                    raise DataError(f"class {c} has {n} samples, fewer than episodes.shot + episodes.query = "
                                    f"{self.shot + self.query}")

    def episode(self, split: str, index: int) -> Episode:
        """Episode ``index`` of ``split`` (raises DataError for a split without classes)."""
        ids = self.splits.get(split) or []
        if not ids:
            raise DataError(f"split.{split} has no classes: no {split} episodes")
        rng = episode_rng(self.seed, split, index)
        chosen = rng.choice(np.asarray(ids), size=self.way, replace=False)
        support, query = [], []
        for c in chosen:
            picks = rng.choice(self._by_class[int(c)], size=self.shot + self.query, replace=False)
            support.append(picks[: self.shot])
            query.append(picks[self.shot:])
        s_idx = torch.from_numpy(np.concatenate(support))
        q_idx = torch.from_numpy(np.concatenate(query))
        s_y = torch.arange(self.way).repeat_interleave(self.shot)
        q_y = torch.arange(self.way).repeat_interleave(self.query)
        return self.images[s_idx], s_y, self.images[q_idx], q_y


class EpisodeDataset(Dataset):
    """Episodes ``0..length-1`` of one split as a dataset (an index beyond ``length`` is valid too: training draws
    fresh episodes every epoch through :class:`EpochEpisodes`)."""

    def __init__(self, source: EpisodeSource, split: str, length: int) -> None:
        self.source, self.split, self.length = source, split, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Episode:
        return self.source.episode(self.split, index)


class EpochEpisodes(Sampler[int]):
    """Episode indices ``epoch * n .. epoch * n + n - 1``: new tasks every epoch, the same ones after a resume
    (Lightning calls :meth:`set_epoch` before each epoch)."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.n, (self.epoch + 1) * self.n))
