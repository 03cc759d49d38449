"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 through torchvision's dataset classes (``root``, ``download``).

Fashion-MNIST without ``root`` reads the gzip idx files of the shared data folder directly
(``data_root()/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``), no extraction needed.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from distill.data.base import DATASETS, DataError, DataNotFoundError
from distill.data.image import ImageDataModule
from distill.data.locate import DATA_ENV, data_root
from distill.data.sources import Split

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
CIFAR100_CLASSES = """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man
maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain
plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake
spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
wardrobe whale willow_tree wolf woman worm""".split()


def read_idx_gz(path: Path) -> np.ndarray:
    """Read a gzip-compressed idx file (uint8 data, as in (Fashion-)MNIST) into an array of its shape.

    Raises:
        DataNotFoundError: the file is missing.
        DataError: not a gzip idx file of uint8, or truncated.
    """
    if not path.is_file():
        raise DataNotFoundError(f"idx file not found: {path} (set {DATA_ENV} or the dataset root)")
    try:
        with gzip.open(path, "rb") as f:
            buf = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(buf) < 4 or buf[:2] != b"\0\0" or buf[2] != 0x08:
        raise DataError(f"{path} is not a uint8 idx file")
    ndim = buf[3]
    dims = struct.unpack(f">{ndim}I", buf[4:4 + 4 * ndim])
    data = np.frombuffer(bytearray(buf), dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} holds {data.size} values, its header says {dims}")
    return data.reshape(dims)


def to_nchw(data: Any) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` array/tensor -> contiguous uint8 ``(N, C, H, W)`` tensor."""
    t = torch.as_tensor(np.asarray(data), dtype=torch.uint8)
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.contiguous()


class TorchvisionDataModule(ImageDataModule):
    """A dataset held in memory as arrays by a ``torchvision.datasets`` class named by ``tv_class``.

    Args:
        root: the torchvision root (e.g. ``<root>/MNIST/raw``, ``<root>/cifar-10-batches-py``); default
            ``data_root()``.
        download: let torchvision download into ``root`` when the files are missing (tests never do).
        **kwargs: forwarded to :class:`ImageDataModule` (``val_fraction``, ``pipeline``, ``device``, ``seed``,
            ``mean``, ``std``, ``crop_padding``, ``hflip``, ``batch_size``, ``eval_batch_size``, ``num_workers``,
            ``train_subset``).
    """

    tv_class: str = ""

    def __init__(self, root: str | None = None, download: bool = False, **kwargs: Any) -> None:
        super().__init__(root=root, **kwargs)
        self.download = bool(download)
        _ = self.spec  # bad mean/std/padding fail here, not at setup

    def _tv_root(self) -> Path:
        return Path(self.root).expanduser() if self.root is not None else data_root()

    def _tv_split(self, train: bool) -> Split:
        root = self._tv_root()
        try:
            ds = getattr(torchvision.datasets, self.tv_class)(str(root), train=train, download=self.download)
        except RuntimeError as e:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
            raise DataNotFoundError(f"{self.name}: {str(e).splitlines()[0]} (looked under {root})") from None
        return Split(labels=torch.as_tensor(np.asarray(ds.targets), dtype=torch.long), images=to_nchw(ds.data))

    def _load_splits(self) -> tuple[Split, Split | None, Split]:
        return self._tv_split(True), None, self._tv_split(False)


@DATASETS.register("mnist")
class MNISTDataModule(TorchvisionDataModule):
    """MNIST (60,000 + 10,000 28x28 grey digits); augmentation: random crop (padding 2), no flip."""

    name, tv_class, num_classes, in_chans, image_hw = "mnist", "MNIST", 10, 1, (28, 28)
    class_names = [str(i) for i in range(10)]


@DATASETS.register("fashion_mnist")
class FashionMNISTDataModule(TorchvisionDataModule):
    """Fashion-MNIST (60,000 + 10,000 28x28 grey); augmentation: random crop (padding 2) + flip.

    Without ``root`` the gzip idx files in ``data_root()/fashion-mnist`` are read directly; with ``root`` torchvision's
    ``FashionMNIST`` reads ``<root>/FashionMNIST/raw``.
    """

    name, tv_class, num_classes, in_chans, image_hw = "fashion_mnist", "FashionMNIST", 10, 1, (28, 28)
    class_names = FASHION_CLASSES

    def _gz_split(self, prefix: str) -> Split:
        folder = data_root() / "fashion-mnist"
        images = read_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz")
        return Split(labels=torch.from_numpy(labels.astype(np.int64)), images=to_nchw(images))

    def _load_splits(self) -> tuple[Split, Split | None, Split]:
        if self.root is not None:
            return super()._load_splits()
        return self._gz_split("train"), None, self._gz_split("t10k")


@DATASETS.register("cifar10")
class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 (50,000 + 10,000 32x32 RGB, ``<root>/cifar-10-batches-py``); augmentation: crop (padding 4) + flip."""

    name, tv_class, num_classes, in_chans, image_hw = "cifar10", "CIFAR10", 10, 3, (32, 32)
    class_names = CIFAR10_CLASSES


@DATASETS.register("cifar100")
class CIFAR100DataModule(TorchvisionDataModule):
    """CIFAR-100 (50,000 + 10,000 32x32 RGB, ``<root>/cifar-100-python``); augmentation: crop (padding 4) + flip."""

    name, tv_class, num_classes, in_chans, image_hw = "cifar100", "CIFAR100", 100, 3, (32, 32)
    class_names = CIFAR100_CLASSES
