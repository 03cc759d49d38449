"""Where episodes come from: any dataset of the toolkit (``DATASETS``), Omniglot or the built-in sinusoid.

``data: {name: NAME, ...}`` in a meta recipe. For a toolkit dataset the un-augmented samples of all its splits
(train, val and test) are pooled: a few-shot class split cuts across the dataset's own sample split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Subset

from distill.data import DATASETS
from distill.data.base import DataError, dataset_labels
from distill.registry import Registry


@dataclass(frozen=True)
class LabelledImages:
    """Every sample of an episode source in memory.

    Attributes:
        images: float ``(N, C, H, W)``, normalised as the dataset normalises them.
        labels: ``(N,)`` class ids ``0..len(class_names)-1``.
        class_names: the name of every class.
        groups: the group of every class, split together (Omniglot: the character of each rotation), or None.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    groups: list[int] | None = None

    @property
    def in_chans(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])


SOURCES: Registry[Callable[..., LabelledImages]] = Registry("episode source")


@SOURCES.register("omniglot")
def omniglot_source(root: str, sets: list[str] | None = None, rotations: bool = True, download: bool = False,
                    size: int = 28) -> LabelledImages:
    """Omniglot under ``root`` (``<root>/omniglot-py/...``); ``download: true`` fetches it through torchvision.
    Its classes are grouped by character: a split's counts are characters, each with its rotations."""
    from distill.meta.omniglot import download_omniglot, load_omniglot

    if download:
        download_omniglot(root)
    loaded = load_omniglot(root, tuple(sets or ("background", "evaluation")), size=size, rotations=rotations)
    return LabelledImages(loaded.images, loaded.labels, loaded.class_names, loaded.groups)


def _collect(ds: Any, per_class: int | None, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.as_tensor(dataset_labels(ds))
    keep = torch.arange(len(labels))
    if per_class is not None:
        keep = torch.cat([torch.nonzero(labels == c).flatten()[:per_class] for c in labels.unique()]).sort().values
    xs, ys = [], []
    for batch in DataLoader(Subset(ds, keep.tolist()), batch_size=batch_size, shuffle=False):
        xs.append(batch[0].cpu())
        ys.append(batch[1].cpu())
    return torch.cat(xs), torch.cat(ys)


def dataset_source(name: str, per_class: int | None = None, **kwargs: Any) -> LabelledImages:
    """A toolkit data module's un-augmented samples (train + val + test pooled; at most ``per_class`` of each class
    from each of its splits, the first ones in index order; image modules then decode only those)."""
    from distill.data.image import ImageDataModule

    cls = DATASETS.get(name)
    if per_class is not None and issubclass(cls, ImageDataModule):
        kwargs.setdefault("pipeline", "torchvision")  # decode only the samples kept, not the whole dataset first
    dm = cls(**kwargs)
    dm.setup("fit")
    sets = [s for s in (dm.cache_set, dm.val_set, dm.test_set) if s is not None and len(s) > 0]
    parts = [_collect(s, per_class) for s in sets]
    images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    names = list(dm.class_names) or [str(i) for i in range(dm.num_classes)]
    return LabelledImages(images.float(), labels.long(), names)


def load_source(data: dict[str, Any]) -> LabelledImages:
    """The images of ``data`` (a registered episode source or a toolkit dataset name plus its keyword arguments)."""
    data = dict(data)
    name = data.pop("name", None)
    if not name:
        raise DataError("data.name is required")
    if name in SOURCES:
        try:
            return SOURCES.get(name)(**data)
        except TypeError as e:
            raise DataError(f"data: {e} (source {name!r})") from None
    if name not in DATASETS:
        raise DataError("data.name: " + DATASETS.unknown_message(name, sorted({*DATASETS.names(), *SOURCES.names(),
                                                                                "sinusoid"})))
    return dataset_source(name, **data)
