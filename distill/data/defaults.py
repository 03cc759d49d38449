"""The one table of per-dataset normalisation and augmentation defaults, and how recipe keys override it.

Recipe keys ``mean``, ``std``, ``crop_padding`` and ``hflip`` override the table entry of the dataset; whatever is left
unset comes from here. Augmentation is always "random crop of the original size from the zero-padded image, then an
optional horizontal flip", the same in the in-memory and the torchvision pipelines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from distill.data.errors import DataError


@dataclass(frozen=True)
class DataDefaults:
    """One table entry.

    Attributes:
        mean: per-channel mean of pixels scaled to [0, 1] (one value broadcasts to every channel).
        std: per-channel standard deviation, same convention.
        crop_padding: zero padding of the random crop in pixels; ``None`` means ``image size // 8``.
        hflip: random horizontal flip with probability 1/2.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int | None
    hflip: bool


@dataclass(frozen=True)
class AugmentSpec:
    """Resolved augmentation and normalisation of one data module (what both pipelines apply).

    Attributes:
        mean: per-channel mean, one value per channel.
        std: per-channel standard deviation, one value per channel.
        crop_padding: zero padding of the random crop (0 disables cropping).
        hflip: random horizontal flip with probability 1/2.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 0
    hflip: bool = False

    @property
    def augments(self) -> bool:
        """Whether the training view differs from the un-augmented one at all."""
        return self.crop_padding > 0 or self.hflip

    def describe(self) -> str:
        """Short text of the augmentation (for logs and manifests)."""
        parts = [f"random_crop(padding={self.crop_padding})"] if self.crop_padding > 0 else []
        parts += ["hflip(0.5)"] if self.hflip else []
        return ", ".join(parts) or "none"


_CIFAR10 = DataDefaults((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 4, True)

#: Defaults by registered dataset name. Statistics are of pixels scaled to [0, 1] over the training set.
DEFAULTS: dict[str, DataDefaults] = {
    "digits": DataDefaults((0.3053,), (0.3760,), 0, False),  # 8x8: a shift already changes the digit (digits.py)
    "mnist": DataDefaults((0.1307,), (0.3081,), 2, False),  # a flipped digit is another glyph: crop only
    "fashion_mnist": DataDefaults((0.2860,), (0.3530,), 2, True),
    "cifar10": _CIFAR10,
    "cifar10_jpeg": _CIFAR10,
    "cifar100": DataDefaults((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 4, True),
    "imagefolder": DataDefaults((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), None, True),  # ImageNet statistics
}


def _per_channel(values: Sequence[float], channels: int, what: str) -> tuple[float, ...]:
    """One value per channel: as given, one value repeated, or (grey images) the mean of RGB values."""
    vals = tuple(float(v) for v in values)
    if len(vals) == channels:
        return vals
    if len(vals) == 1:
        return vals * channels
    if channels == 1:
        return (sum(vals) / len(vals),)
    raise DataError(f"{what} has {len(vals)} values but the images have {channels} channels")


def resolve_spec(name: str, channels: int, image_size: int, mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None, crop_padding: int | None = None,
                 hflip: bool | None = None) -> AugmentSpec:
    """Table entry of ``name`` with the recipe's overrides applied.

    Args:
        name: key of :data:`DEFAULTS`.
        channels: image channels (1 or 3).
        image_size: the smaller image side in pixels (for the ``size // 8`` padding default).
        mean: override of the per-channel mean (a number or one value per channel).
        std: override of the per-channel standard deviation.
        crop_padding: override of the crop padding (0 disables cropping).
        hflip: override of the horizontal flip.

    Raises:
        DataError: unknown name, wrong number of values, a non-positive std or a negative padding.
    """
    if name not in DEFAULTS:
        raise DataError(f"no normalisation defaults for dataset {name!r} (known: {', '.join(sorted(DEFAULTS))})")
    d = DEFAULTS[name]
    as_seq = (lambda v: (v,) if isinstance(v, (int, float)) else v)  # noqa: E731
    m = _per_channel(as_seq(mean) if mean is not None else d.mean, channels, "mean")
    s = _per_channel(as_seq(std) if std is not None else d.std, channels, "std")
    if min(s) <= 0:
        raise DataError(f"std must be positive, got {s}")
    pad = crop_padding if crop_padding is not None else d.crop_padding
    pad = image_size // 8 if pad is None else int(pad)
    if pad < 0:
        raise DataError(f"crop_padding must be >= 0, got {pad}")
    return AugmentSpec(mean=m, std=s, crop_padding=pad, hflip=bool(d.hflip if hflip is None else hflip))
