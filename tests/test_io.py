"""distill.io, the one atomic write: a failed write leaves the old file and no temporary behind."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from distill.callbacks import AtomicCheckpointIO
from distill.io import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    atomic_writer,
    commit,
    move_aside,
    sha256_file,
)


def test_atomic_writer_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path) -> None:
    path = tmp_path / "a.npy"
    atomic_write_text(path, "old")
    with atomic_writer(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".npy" and tmp != path  # writers that add a suffix do not
        tmp.write_text("new")
    assert path.read_text() == "new"
    with pytest.raises(RuntimeError, match="disk"), atomic_writer(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def test_an_atomic_file_has_the_permissions_of_a_plain_one(tmp_path) -> None:
    (tmp_path / "plain.csv").write_text("x")
    atomic_write_text(tmp_path / "atomic.csv", "x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "atomic.csv").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "atomic.csv").stat().st_mode == (tmp_path / "plain.csv").stat().st_mode


def test_atomic_write_json_ends_with_a_newline(tmp_path) -> None:
    atomic_write_json(tmp_path / "x.json", {"a": float("nan")}, indent=None, default=str)
    assert (tmp_path / "x.json").read_text() == '{"a": NaN}\n'


def test_commit_moves_a_file_filled_in_place(tmp_path) -> None:
    partial, final = tmp_path / "logits.npy.partial", tmp_path / "logits.npy"
    partial.write_bytes(b"rows")
    commit(partial, final)
    assert final.read_bytes() == b"rows" and not partial.exists()


def test_atomic_directory_appears_complete_or_not_at_all(tmp_path) -> None:
    dest = tmp_path / "extracted"
    with pytest.raises(ValueError), atomic_directory(dest) as tmp:
        (tmp / "half").write_text("x")
        raise ValueError("corrupt archive")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(dest) as tmp:
        (tmp / "train").mkdir()
    assert [p.name for p in dest.iterdir()] == ["train"]
    with pytest.raises(OSError), atomic_directory(dest) as tmp:  # another process finished first
        (tmp / "test").mkdir()
    assert [p.name for p in dest.iterdir()] == ["train"] and [p.name for p in tmp_path.iterdir()] == ["extracted"]


def test_move_aside_keeps_the_newest(tmp_path) -> None:
    last = tmp_path / "last.ckpt"
    for content in ("first", "second"):
        last.write_text(content)
        assert move_aside(last, ".damaged") == tmp_path / "last.ckpt.damaged"
    assert not last.exists() and (tmp_path / "last.ckpt.damaged").read_text() == "second"


def test_sha256_file_reads_in_chunks(tmp_path) -> None:
    data = os.urandom(10_000)
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f", chunk=4096) == hashlib.sha256(data).hexdigest()


def test_a_failed_checkpoint_save_leaves_the_last_good_one(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}

    def half_written(self, checkpoint, target, storage_options=None) -> None:
        with open(target, "wb") as f:
            f.write(b"PK\x03")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", half_written)
    with pytest.raises(OSError, match="No space"):
        io.save_checkpoint({"step": 2}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
