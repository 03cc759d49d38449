"""Omniglot (Lake et al.) in the MAML protocol: 28x28 grey characters, each rotation by 90° a class of its own.

torchvision's :class:`~torchvision.datasets.Omniglot` downloads and extracts ``<root>/omniglot-py/images_background``
and ``images_evaluation`` (``download: true``); this module reads that extracted layout
(``<alphabet>/<character>/*.png``) itself, so a folder in that layout works without torchvision's zip checksums.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from distill.data.base import DataError, DataNotFoundError

SETS = {"background": "images_background", "evaluation": "images_evaluation"}
ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class OmniglotImages:
    """Decoded characters: float ``images`` (N, 1, 28, 28) in [0, 1] (ink = 1), ``labels``, class names and the
    character (``groups``) of every class."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    groups: list[int]


def download_omniglot(root: str | Path) -> None:
    """Fetch and extract both sets through torchvision (needs network access)."""
    import torchvision

    for background in (True, False):
        torchvision.datasets.Omniglot(str(root), background=background, download=True)


def character_folders(root: str | Path, sets: tuple[str, ...] = ("background", "evaluation")) -> list[Path]:
    """The character folders of ``sets`` under ``<root>/omniglot-py``, sorted by (set, alphabet, character)."""
    base = Path(root).expanduser() / "omniglot-py"
    folders: list[Path] = []
    for name in sets:
        if name not in SETS:
            raise DataError(f"data.sets: {name!r} is not an Omniglot set (accepted: {', '.join(SETS)})")
        top = base / SETS[name]
        if not top.is_dir():
            raise DataNotFoundError(f"Omniglot {name} set not found: {top} (set data.download: true to fetch it)")
        for alphabet in sorted(p for p in top.iterdir() if p.is_dir()):
            folders += sorted(p for p in alphabet.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"no Omniglot character folders under {base}")
    return folders


def load_omniglot(root: str | Path, sets: tuple[str, ...] = ("background", "evaluation"), size: int = 28,
                  rotations: bool = True) -> OmniglotImages:
    """All characters of ``sets``, resized to ``size`` (Lanczos, as in the MAML code), ink as 1.

    With ``rotations`` every character appears four times, rotated by 0/90/180/270°, as four classes (the MAML
    paper's augmentation: 1,623 characters -> 6,492 classes).
    """
    folders = character_folders(root, sets)
    angles = ROTATIONS if rotations else (0,)
    images, labels, names, groups = [], [], [], []
    for c, folder in enumerate(folders):
        files = sorted(folder.glob("*.png"))
        if not files:
            raise DataError(f"Omniglot character folder without .png files: {folder}")
        base = []
        for f in files:
            try:
                with Image.open(f) as im:
                    arr = np.asarray(im.convert("L").resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32)
            except OSError as e:
                raise DataError(f"cannot read image {f}: {e}") from None
            base.append(1.0 - arr / 255.0)  # the strokes are black on white
        stack = torch.from_numpy(np.stack(base)).unsqueeze(1)
        for r, angle in enumerate(angles):
            images.append(torch.rot90(stack, k=r, dims=(2, 3)))
            labels.append(torch.full((len(files),), c * len(angles) + r, dtype=torch.long))
            names.append(f"{folder.parent.name}/{folder.name}" + (f"@{angle}" if rotations else ""))
            groups.append(c)
    return OmniglotImages(torch.cat(images), torch.cat(labels), names, groups)
