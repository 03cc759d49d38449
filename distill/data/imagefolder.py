"""Image folders: ``root/{train,test}/<class>/<image>`` (optional ``root/val/``), any format PIL reads.

``cifar10_jpeg`` is the shared CIFAR-10 JPEG copy as an image folder: without ``root`` it extracts
``data_root()/cifar10-jpeg.tar.gz`` once into ``cache_dir`` (default ``~/.cache/distill/cifar10-jpeg``) and reads it
from there; :func:`distill.data.locate.ensure_cifar10_jpeg` does the same for recipes that prefer
``name: imagefolder`` with an explicit ``root``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from distill.data.base import DATASETS, DataError, DataNotFoundError
from distill.data.image import ImageDataModule
from distill.data.locate import ensure_cifar10_jpeg
from distill.data.sources import ImageLoader, Split, probe_size
from distill.data.torchvision_sets import CIFAR10_CLASSES

MODES = {1: "L", 3: "RGB"}


def image_extensions() -> frozenset[str]:
    """Lower-case file suffixes PIL can open (``.jpg``, ``.png``, ...); other files in class folders are ignored."""
    return frozenset(ext.lower() for ext in Image.registered_extensions())


@dataclass(frozen=True)
class FolderLayout:
    """What :func:`scan_imagefolder` found: class names and, per split, ``(files, labels)``."""

    root: Path
    classes: list[str]
    splits: dict[str, tuple[tuple[str, ...], list[int]]]


def _list_split(folder: Path, classes: list[str], exts: frozenset[str]) -> tuple[tuple[str, ...], list[int]]:
    index = {c: i for i, c in enumerate(classes)}
    files: list[str] = []
    labels: list[int] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        if entry.name not in index:
            raise DataError(f"{folder / entry.name} is a class missing from train/ (train classes: {len(classes)})")
        names = sorted(e.name for e in os.scandir(entry.path)
                       if not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in exts)
        if not names and folder.name == "train":  # a class the model would have to predict but never sees
            raise DataError(f"{entry.path} holds no images: every train/ class folder needs images (remove the "
                            "folder to drop the class)")
        files += [os.path.join(entry.path, n) for n in names]
        labels += [index[entry.name]] * len(names)
    if not files:
        raise DataError(f"{folder} holds no images (expected {folder}/<class>/<image>)")
    return tuple(files), labels


def scan_imagefolder(root: str | os.PathLike) -> FolderLayout:
    """List ``root/{train,val,test}/<class>/<image>``; classes are the sorted folder names of ``train/``.

    Raises:
        DataNotFoundError: ``root``, ``root/train`` or ``root/test`` is missing.
        DataError: fewer than two class folders, a train/ class folder without images, a split without images, or
            a test/val class unknown to train/.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(f"imagefolder root not found: {root}")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataNotFoundError(f"{root} has no {split}/ folder (expected {root}/{split}/<class>/<image>)")
    classes = sorted(e.name for e in os.scandir(root / "train") if e.is_dir() and not e.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root / 'train'} has {len(classes)} class folder{'s' * (len(classes) != 1)}"
                        f"{': ' + classes[0] if classes else ''}; classification needs at least two")
    exts = image_extensions()
    splits = {s: _list_split(root / s, classes, exts) for s in ("train", "val", "test") if (root / s).is_dir()}
    return FolderLayout(root=root, classes=classes, splits=splits)


@DATASETS.register("imagefolder")
class ImageFolderDataModule(ImageDataModule):
    """Images from ``root/{train,test}/<class>/*`` (and ``root/val/`` if present); augmentation: crop + flip.

    Class names are the folder names of ``train/`` (sorted); labels are their positions. The default crop padding is
    ``image_size // 8``; normalisation defaults to ImageNet statistics. With ``pipeline: memory`` (auto for small
    sets) every image is decoded once with PIL in a thread pool and kept in memory; nothing is cached on disk.

    Args:
        root: the folder holding ``train/`` and ``test/`` (required).
        image_size: resize every image to ``image_size`` x ``image_size``; default: keep the size of the first
            training image and reject images of another size.
        channels: 3 (convert to RGB) or 1 (convert to grey).
        decode_workers: threads decoding images for the memory pipeline (default: CPU count + 4, at most 32).
        **kwargs: forwarded to :class:`ImageDataModule` (``val_fraction`` (only without ``val/``), ``pipeline``,
            ``device``, ``seed``, ``mean``, ``std``, ``crop_padding``, ``hflip``, ``batch_size``,
            ``eval_batch_size``, ``num_workers``, ``train_subset``).
    """

    name = "imagefolder"

    def __init__(self, root: str | None = None, image_size: int | None = None, channels: int = 3,
                 decode_workers: int | None = None, **kwargs: Any) -> None:
        super().__init__(root=root, **kwargs)
        if channels not in MODES:
            raise DataError(f"channels must be 1 or 3, got {channels}")
        if image_size is not None and int(image_size) < 1:
            raise DataError(f"image_size must be >= 1, got {image_size}")
        self.image_size, self.in_chans, self.decode_workers = image_size, int(channels), decode_workers
        self._layout: FolderLayout | None = None
        if image_size is not None:
            self.image_hw = (int(image_size), int(image_size))
        if self.root is None:
            self._require_root()
        else:
            self._scan(self.root)

    def _require_root(self) -> None:
        raise DataError(f"{self.name} needs data.root: a folder with train/<class>/<image> and test/")

    def _scan(self, root: str | os.PathLike) -> FolderLayout:
        self._layout = scan_imagefolder(root)
        self.class_names, self.num_classes = list(self._layout.classes), len(self._layout.classes)
        if self.image_size is None:
            w, h = probe_size(self._layout.splits["train"][0][0])
            self.image_hw = (h, w)
        _ = self.spec  # bad mean/std/padding fail here, not at setup
        return self._layout

    def _decode_description(self) -> str:
        h, w = self.image_hw
        resize = f", resize to {w}x{h} (bilinear)" if self.image_size is not None else f" ({w}x{h})"
        return f"PIL convert({MODES[self.in_chans]}){resize}"

    def _load_splits(self) -> tuple[Split, Split | None, Split]:
        layout = self._layout or self._scan(self.root)
        h, w = self.image_hw
        loader = ImageLoader(mode=MODES[self.in_chans], size=(w, h), resize=self.image_size is not None)

        def split(key: str) -> Split | None:
            if key not in layout.splits:
                return None
            files, labels = layout.splits[key]
            return Split(labels=torch.tensor(labels, dtype=torch.long), files=files, loader=loader)

        return split("train"), split("val"), split("test")


@DATASETS.register("cifar10_jpeg")
class CIFAR10JpegDataModule(ImageFolderDataModule):
    """The shared CIFAR-10 JPEG copy (32x32, quality 75) as an image folder, extracted on first use.

    Args:
        root: an already extracted ``cifar10`` folder; default: extract the shared tarball into ``cache_dir``.
        cache_dir: where to extract (default ``~/.cache/distill/cifar10-jpeg``); the tarball comes from
            ``data_root()``.
        **kwargs: forwarded to :class:`ImageFolderDataModule` (``image_size`` defaults to 32).
    """

    name, num_classes, in_chans, class_names = "cifar10_jpeg", 10, 3, CIFAR10_CLASSES

    def __init__(self, root: str | None = None, cache_dir: str | None = None, image_size: int | None = 32,
                 **kwargs: Any) -> None:
        self.cache_dir = cache_dir
        super().__init__(root=root, image_size=image_size, **kwargs)
        _ = self.spec

    def _require_root(self) -> None:  # resolved lazily in setup: extraction takes a while
        return None

    def _scan(self, root: str | os.PathLike) -> FolderLayout:
        layout = super()._scan(root)
        if layout.classes != CIFAR10_CLASSES:
            raise DataError(f"{root} is not CIFAR-10: classes {layout.classes}")
        return layout

    def _load_splits(self) -> tuple[Split, Split | None, Split]:
        if self.root is None and self._layout is None:
            self._scan(ensure_cifar10_jpeg(self.cache_dir))
        return super()._load_splits()
