"""The one atomic write: a temporary file beside the target, fsynced, then renamed over it; and sha256 of a file.

A leaf module (imports nothing of ours). Every artifact a later step trusts -- checkpoints, cache arrays and
manifests, summaries, test logits, sweep and inspection outputs -- is written through :func:`atomic_writer` (or,
for a file filled in place such as the cache's memory-mapped ``logits.npy.partial``, :func:`commit`), so a crash, a
full disk or kill -9 leaves either the old file or the new one, never a half-written file that later passes as valid.
The rename is atomic on POSIX file systems when both names are in one directory, which the temporary name
guarantees. A directory filled as a whole (an extracted archive) goes through :func:`atomic_directory`, and a file
set aside (a damaged checkpoint) through :func:`move_aside`: this module is the only place that renames artifacts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "atomic_writer",
           "commit", "move_aside", "sha256_file"]


def _new_file(path: Path) -> Path:
    """Create an empty file with a fresh hidden name beside ``path`` (``.STEM.RANDOM.tmpSUFFIX``), mode 0o666 less
    the umask (``tempfile.mkstemp`` would make it private to the owner)."""
    while True:
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def commit(tmp: str | Path, path: str | Path) -> None:
    """Make the finished file ``tmp`` durable (fsync) and rename it over ``path`` (same directory: atomic)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success fsync it and rename it over ``path``.

    For writers that take a file name (``np.save``, ``torch.save``, ``fig.savefig``): the temporary name keeps the
    target's suffix, so such writers do not append their own. The file gets the permissions a plain ``open(path,
    "w")`` would give it (0o666 less the umask). On any exception the temporary file is removed and ``path`` is left
    as it was.
    """
    path = Path(path)
    tmp = _new_file(path)
    try:
        yield tmp
        commit(tmp, path)
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


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a new temporary directory beside ``path`` to fill; on success rename it to ``path``.

    The rename fails (``OSError``) when ``path`` exists meanwhile and is not empty -- for instance when a concurrent
    process finished first; the caller decides whether that is an error. The temporary directory is removed
    whatever happens, so ``path`` is either absent or complete.
    """
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def move_aside(path: str | Path, suffix: str) -> Path:
    """Rename ``path`` to ``path`` + ``suffix`` (replacing an older one), e.g. a damaged checkpoint kept for a
    post-mortem; return the new path."""
    path = Path(path)
    aside = path.with_name(path.name + suffix)
    os.replace(path, aside)
    return aside
