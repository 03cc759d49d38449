"""The one atomic write: a temporary file beside the target, fsynced, then renamed over it; and sha256 of a file.

A leaf module (imports nothing of ours). Every artifact a later step trusts -- checkpoints, cache arrays and
manifests, summaries, test logits, sweep and inspection outputs -- is written through :func:`atomic_writer`, so a
crash, a full disk or kill -9 leaves either the old file or the new one, never a half-written file that later passes
as valid. The rename is atomic on POSIX file systems when both names are in one directory, which the temporary
name guarantees.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_writer", "sha256_file"]


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success fsync it and rename it over ``path``.

    For writers that take a file name (``np.save``, ``torch.save``, ``fig.savefig``): the temporary name keeps the
    target's suffix, so such writers do not append their own. On any exception the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_writer`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int = 2, **dumps: Any) -> None:
    """:func:`atomic_write_text` of ``obj`` as indented JSON with a final newline (``dumps``: more ``json.dumps``
    keywords, e.g. ``default=str``)."""
    atomic_write_text(path, json.dumps(obj, indent=indent, **dumps) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
