"""Data modules yielding ``(image, label, index)``; look them up by name in :data:`DATASETS`."""

from distill.data import digits, imagefolder, torchvision_sets  # noqa: F401  (register the datasets)
from distill.data.base import (
    DATASETS,
    DataError,
    DataNotFoundError,
    DistillDataModule,
    ImageFileForm,
    TensorIndexedDataset,
)
from distill.data.defaults import DEFAULTS, AugmentSpec
from distill.data.image import ImageDataModule
from distill.data.locate import data_root, ensure_cifar10_jpeg
from distill.data.memory import EpochBatchSampler, MemoryImageSet, augment_batch, view_params

__all__ = ["DATASETS", "DEFAULTS", "AugmentSpec", "DataError", "DataNotFoundError", "DistillDataModule",
           "EpochBatchSampler", "ImageDataModule", "ImageFileForm", "MemoryImageSet", "TensorIndexedDataset",
           "augment_batch", "data_root", "ensure_cifar10_jpeg", "view_params"]
