"""Where samples come from (decoded arrays or image files) and the per-sample torchvision path over them.

A :class:`Split` is one labelled split, either already decoded (``images``: uint8 ``(N, C, H, W)``) or a list of
files with the :class:`ImageLoader` that decodes one. Both pipelines start from the same uint8 pixels, so their
un-augmented outputs are equal.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from distill.data.base import DataError, DataNotFoundError
from distill.data.defaults import AugmentSpec


@dataclass(frozen=True)
class ImageLoader:
    """Decode one image file to a uint8 ``(C, H, W)`` tensor (picklable, so DataLoader workers can use it).

    Args:
        mode: PIL mode to convert to (``"RGB"`` or ``"L"``).
        size: ``(width, height)`` every image must have, or be resized to when ``resize``.
        resize: resize (bilinear) images of another size instead of rejecting them.
    """

    mode: str
    size: tuple[int, int]
    resize: bool = False

    def __call__(self, path: str | os.PathLike) -> torch.Tensor:
        try:
            with Image.open(path) as im:
                im = im.convert(self.mode) if im.mode != self.mode else im
                if im.size != self.size:
                    if not self.resize:
                        raise DataError(f"image {path} is {im.size[0]}x{im.size[1]}, expected "
                                        f"{self.size[0]}x{self.size[1]}; set image_size to resize all images")
                    im = im.resize(self.size, Image.Resampling.BILINEAR)
                arr = np.array(im)
        except FileNotFoundError:
            raise DataNotFoundError(f"image file not found: {path}") from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                            ) from None
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def probe_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image from its header; :class:`DataError` naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


@dataclass(frozen=True)
class Split:
    """One labelled split: decoded ``images`` or ``files`` + ``loader``.

    Attributes:
        labels: ``(N,)`` int64 class labels.
        images: uint8 ``(N, C, H, W)`` when the source is already decoded.
        files: image paths when it is not.
        loader: decodes one of ``files``.
    """

    labels: torch.Tensor
    images: torch.Tensor | None = None
    files: tuple[str, ...] | None = None
    loader: ImageLoader | None = None

    def __post_init__(self) -> None:
        n = len(self.images) if self.images is not None else len(self.files or ())
        if n != len(self.labels):
            raise DataError(f"{n} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, idx: torch.Tensor) -> Split:
        """The samples at ``idx``, in that order."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        files = tuple(self.files[i] for i in idx.tolist()) if self.files is not None else None
        images = self.images[idx] if self.images is not None else None
        return replace(self, labels=self.labels[idx], images=images, files=files)

    def image(self, i: int) -> torch.Tensor:
        """uint8 ``(C, H, W)`` of sample ``i``."""
        return self.images[i] if self.images is not None else self.loader(self.files[i])

    def decoded(self, workers: int | None = None) -> torch.Tensor:
        """All images as one uint8 ``(N, C, H, W)`` tensor (files decoded once with a thread pool, nothing cached)."""
        if self.images is not None:
            return self.images
        if not self.files:
            raise DataError("no images to decode")
        first = self.loader(self.files[0])
        out = torch.empty((len(self.files), *first.shape), dtype=torch.uint8)
        out[0] = first

        def work(i: int) -> None:
            out[i] = self.loader(self.files[i])

        pool = ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) + 4))
        try:
            for _ in pool.map(work, range(1, len(self.files))):
                pass
        finally:  # on the first bad file, do not wait for the rest to decode
            pool.shutdown(wait=True, cancel_futures=True)
        return out


def build_transform(spec: AugmentSpec, size: tuple[int, int], augment: bool) -> v2.Compose:
    """Per-sample torchvision transform on a uint8 ``(C, H, W)`` tensor: the same views as the in-memory path.

    Args:
        spec: augmentation and normalisation.
        size: ``(height, width)`` of the images (the crop size).
        augment: include the random crop and flip.
    """
    ops: list = []
    if augment and spec.crop_padding > 0:
        ops.append(v2.RandomCrop(size, padding=spec.crop_padding, fill=0))
    if augment and spec.hflip:
        ops.append(v2.RandomHorizontalFlip())
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(spec.mean), list(spec.std))]
    return v2.Compose(ops)


class PerSampleSet(Dataset):
    """The torchvision path: decode (files) and transform one sample at a time, e.g. in DataLoader workers.

    Args:
        split: the samples.
        transform: applied to each uint8 ``(C, H, W)`` image.
    """

    def __init__(self, split: Split, transform: v2.Compose) -> None:
        self.split, self.transform = split, transform
        self.labels = split.labels

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.transform(self.split.image(i)), self.labels[i], i
