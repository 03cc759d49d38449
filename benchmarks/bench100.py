"""``bench100``: a synthetic CIFAR-100-sized data module and a complete, valid run directory for it, the subject of
``python -m benchmarks.inspect_speed``.

Importing this module registers ``bench100`` (CIFAR-100 class names, 500 training images per class, 10,000 test
images). :func:`make_run` writes the run: ``config.yaml`` by the real recipe parser, ``gen-k/model.ckpt`` (random
bytes of a given size, since only its sha256 is read), ``gen-k/test_logits.npy`` and ``cache/gen-k/{logits.npy,
manifest.json}`` (float16, with genuine checksums and the data module's fingerprint). The logits have superclass
structure and ~1 % confidently relabelled samples, so every output of ``distill inspect`` is produced.

``python -m benchmarks.bench100 RUN [distill inspect options]`` is the timed process: ``distill inspect RUN`` with
``bench100`` registered, importing nothing else of the benchmarks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from distill.analysis.taxonomy import CIFAR100_CLASSES, CIFAR100_SUPERCLASSES
from distill.data import DATASETS, DistillDataModule

NUM_TRAIN, NUM_TEST, NUM_CLASSES = 50_000, 10_000, 100


class LazyImages(Dataset):
    """``(image, label, index)`` with a deterministic random 3x32x32 image made on access; labels held in memory."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = torch.from_numpy(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(int(i)))
        return image, self.labels[i], i


@DATASETS.register("bench100")
class Bench100DataModule(DistillDataModule):
    """Synthetic CIFAR-100-sized data module (labels balanced, shuffled with a fixed seed)."""

    name, num_classes, in_chans, class_names = "bench100", NUM_CLASSES, 3, list(CIFAR100_CLASSES)

    def transform_description(self) -> str:
        return "synthetic"

    def setup(self, stage: str | None = None) -> None:
        if self.cache_set is not None:
            return
        rng = np.random.default_rng(0)
        self.train_set = self.cache_set = LazyImages(rng.permutation(np.arange(NUM_TRAIN) % NUM_CLASSES))
        self.test_set = LazyImages(rng.permutation(np.arange(NUM_TEST) % NUM_CLASSES))


def fake_logits(labels: np.ndarray, seed: int, relabel: float = 0.01) -> np.ndarray:
    """Logits with a strong true-class peak, a weaker superclass bump, noise, and ``relabel`` confident "errors"."""
    rng = np.random.default_rng(seed)
    position = {name: i for i, name in enumerate(CIFAR100_CLASSES)}
    group = np.zeros(NUM_CLASSES, dtype=np.int64)
    for g, members in enumerate(CIFAR100_SUPERCLASSES.values()):
        group[[position[m] for m in members]] = g
    seen = labels.copy()
    flip = rng.random(len(labels)) < relabel
    seen[flip] = rng.integers(0, NUM_CLASSES, flip.sum())  # the teacher "sees" another class
    z = rng.normal(0.0, 1.0, (len(labels), NUM_CLASSES)).astype(np.float32)
    z += 3.0 * (group[None, :] == group[seen][:, None])
    z[np.arange(len(labels)), seen] += rng.normal(9.0, 2.0, len(labels))
    return z


def make_run(root: Path, generations: int, ckpt_mb: int) -> None:
    """Write a complete run directory for ``bench100`` under ``root``."""
    from distill.cache import Manifest, sha256_file
    from distill.config import dump_config, parse_recipe
    from distill.generations import RunLayout, build_datamodule

    cfg = parse_recipe(None, ["--data", '{"name": "bench100"}', "--generations", str(generations - 1)])
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(dump_config(cfg))
    dm = build_datamodule(cfg.data)
    layout, train, test = RunLayout(root), dm.train_labels(), dm.test_labels()
    for k in range(generations):
        layout.gen_dir(k).mkdir(parents=True, exist_ok=True)
        layout.checkpoint(k).write_bytes(np.random.default_rng(k).bytes(ckpt_mb << 20))
        np.save(layout.test_logits(k), fake_logits(test, 1000 + k))
        cache = layout.cache_dir(k)
        cache.mkdir(parents=True, exist_ok=True)
        np.save(cache / "logits.npy", fake_logits(train, k).astype(np.float16))
        Manifest(generation=k, teacher_checkpoint=str(layout.checkpoint(k).relative_to(root)),
                 teacher_sha256=sha256_file(layout.checkpoint(k)), dataset=dm.fingerprint(), dtype="float16",
                 shape=[NUM_TRAIN, NUM_CLASSES], array_sha256=sha256_file(cache / "logits.npy"),
                 array_bytes=(cache / "logits.npy").stat().st_size).write(cache)


def main(argv: list[str]) -> int:
    """``distill inspect RUN [options]`` with ``bench100`` registered (by importing this module)."""
    from distill.cli import main as distill

    return distill(["inspect", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
