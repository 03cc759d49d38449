"""Where the data lives: one setting (``DISTILL_DATA``) for tests, recipes and benchmarks, plus the CIFAR-10 JPEG cache.

Nothing here copies data into the repository: the default data root is the ``shared/data`` folder *next to* the
repository, and archives are extracted into a user cache directory.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from distill.data.base import DataError, DataNotFoundError
from distill.io import atomic_directory

DATA_ENV = "DISTILL_DATA"
CIFAR10_JPEG_TARBALL = "cifar10-jpeg.tar.gz"


def data_root() -> Path:
    """The shared data folder: ``$DISTILL_DATA`` when set, else ``<repository>/../shared/data``.

    Returns:
        The folder (it may not exist; callers report what they looked for).
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def cache_dir() -> Path:
    """The user cache folder of the project: ``$XDG_CACHE_HOME/distill`` (default ``~/.cache/distill``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "distill"


def ensure_cifar10_jpeg(dest: str | os.PathLike | None = None, tarball: str | os.PathLike | None = None) -> Path:
    """Extract the CIFAR-10 JPEG tarball once and return its ImageFolder root (``<dest>/cifar10``).

    Extraction goes into a temporary sibling of ``dest`` that is renamed into place only when complete, so an
    interrupted or concurrent extraction never leaves a half-filled ``dest``: later calls return at once.

    Args:
        dest: cache folder to extract into (default ``cache_dir() / "cifar10-jpeg"``).
        tarball: the archive (default ``data_root() / "cifar10-jpeg.tar.gz"``).

    Returns:
        The folder holding ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``.

    Raises:
        DataNotFoundError: the tarball is missing and nothing was extracted before.
        DataError: the archive is unreadable or lacks the ``cifar10/{train,test}`` layout.
    """
    dest = Path(dest).expanduser() if dest is not None else cache_dir() / "cifar10-jpeg"
    root = dest / "cifar10"
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root
    if dest.exists():
        raise DataError(f"{dest} exists but holds no cifar10/train and cifar10/test; remove it to re-extract")
    src = Path(tarball).expanduser() if tarball is not None else data_root() / CIFAR10_JPEG_TARBALL
    if not src.is_file():
        raise DataNotFoundError(f"CIFAR-10 JPEG archive not found: {src} (set {DATA_ENV} to the folder holding it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_directory(dest) as tmp:
            try:
                with tarfile.open(src, "r:*") as tf:
                    tf.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError) as e:
                raise DataError(f"cannot extract {src}: {e}") from None
            if not ((tmp / "cifar10" / "train").is_dir() and (tmp / "cifar10" / "test").is_dir()):
                raise DataError(f"{src} does not contain cifar10/train and cifar10/test")
    except OSError:
        if not (root / "train").is_dir():  # not a lost race with another extraction: a real failure
            raise
    return root
