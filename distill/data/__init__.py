"""Data modules yielding ``(image, label, index)``; look them up by name in :data:`DATASETS`."""

from distill.data import digits  # noqa: F401  (registers "digits")
from distill.data.base import DATASETS, DistillDataModule, TensorIndexedDataset

__all__ = ["DATASETS", "DistillDataModule", "TensorIndexedDataset"]
