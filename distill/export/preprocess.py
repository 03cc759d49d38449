"""What an image file goes through before the network: the run's own evaluation transform, as data.

A :class:`Preprocess` is decoded from a run's data module (:func:`preprocess_of`) or from an exported folder's
``config.json`` (:meth:`Preprocess.from_config`), and does exactly what the data module does to a test image: PIL
decode and convert to the run's channels (:class:`~distill.data.sources.ImageLoader`), scale to ``[0, 1]`` and
normalise with the run's mean and std (:func:`~distill.data.sources.build_transform` without augmentation). An image
of another size is resized (bilinear) to the trained size, as ``data.image_size`` does in training.

It is also the ``pretrained_cfg`` an export writes (input size, mean, std, interpolation, ``crop_pct`` 1): timm's
``resolve_data_config`` reads it back and ``create_transform`` builds the same pipeline for images of the trained
size.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torchvision.transforms import v2

from distill.data import AugmentSpec, DistillDataModule, ImageFileForm
from distill.data.sources import ImageLoader, build_transform
from distill.errors import UserError

MODES = {1: "L", 3: "RGB"}


class PreprocessError(UserError, ValueError):
    """A run whose data has no image-file form, or an exported ``config.json`` without its preprocessing."""


class Preprocess(ImageFileForm):
    """The evaluation transform of one run, for image files: a data module's declared
    :class:`~distill.data.ImageFileForm` (channels, size, mean, std) with what turns a file into the network's input.
    """

    def loader(self) -> ImageLoader:
        """Decode one file to uint8 ``(C, H, W)`` (raises :class:`~distill.data.DataError` naming the file)."""
        h, w = self.size
        return ImageLoader(mode=MODES[self.channels], size=(w, h), resize=True)

    def transform(self) -> v2.Compose:
        """uint8 ``(C, H, W)`` -> the normalised float tensor the network takes."""
        return build_transform(AugmentSpec(mean=self.mean, std=self.std), self.size, augment=False)

    def load(self, path: str | os.PathLike) -> torch.Tensor:
        """One image file as the network's input ``(C, H, W)``."""
        return self.transform()(self.loader()(path))

    def pretrained_cfg(self) -> dict[str, Any]:
        """timm's preprocessing keys: what ``timm.data.resolve_data_config`` reads."""
        return {"input_size": [self.channels, *self.size], "interpolation": "bilinear", "mean": list(self.mean),
                "std": list(self.std), "crop_pct": 1.0, "crop_mode": "center"}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str) -> Preprocess:
        """Read it back from an exported ``config.json`` (its ``pretrained_cfg``)."""
        cfg = config.get("pretrained_cfg") or {}
        try:
            channels, h, w = (int(v) for v in cfg["input_size"])
            return cls(channels, (h, w), tuple(float(m) for m in cfg["mean"]), tuple(float(s) for s in cfg["std"]))
        except (KeyError, TypeError, ValueError):
            raise PreprocessError(f"{where} has no pretrained_cfg with input_size, mean and std") from None


def preprocess_of(dm: DistillDataModule) -> Preprocess:
    """The evaluation transform of a run's data module, for image files (its declared
    :meth:`~distill.data.DistillDataModule.image_file_form`).

    Raises:
        PreprocessError: a data module whose inputs are not images read from files.
    """
    form = dm.image_file_form()
    if form is None:
        raise PreprocessError(f"dataset {dm.name!r} ({type(dm).__name__}) does not read image files, so its inputs "
                              "have no image-file preprocessing to export or predict with")
    return Preprocess(form.channels, tuple(form.size), tuple(form.mean), tuple(form.std))
