"""The one family of user-facing errors: every mistake a user can make raises a :class:`UserError`.

A leaf module (imports nothing of ours). The entry point catches :class:`UserError` once and prints it as one line
with exit code 2, so a new error type only has to derive from it: no list of exception classes to extend anywhere
(Lightning's ``MisconfigurationException`` plays this role for Lightning).

Subclasses usually also derive from the built-in exception that describes them (``ValueError``, ``KeyError``,
``FileNotFoundError``), so callers that catch those keep working.
"""

from __future__ import annotations

import pickle
from pathlib import Path

__all__ = ["UnsafeCheckpointError", "UsageError", "UserError"]


class UserError(Exception):
    """Bad input (a command's options, a recipe, data, a checkpoint, a cache, a run directory), not a bug.

    The message is the whole report: one line naming the key or file and what is wrong with it.
    """

    def one_line(self) -> str:
        """The message with its whitespace (line breaks included) collapsed, as the entry point prints it."""
        return " ".join(str(self).split())


class UsageError(UserError):
    """A command-line mistake: an unknown option, a missing value, a flag that needs another."""


class UnsafeCheckpointError(UserError, pickle.UnpicklingError):
    """A checkpoint that ``torch.load(..., weights_only=True)`` refuses: loading it would run code (or build objects
    other than tensors and plain values). Nothing in it was executed; the message names the file."""

    @classmethod
    def of(cls, path: str | Path, error: pickle.UnpicklingError) -> UnsafeCheckpointError:
        """The error for ``path`` from torch's refusal ``error`` (its reason kept, its advice to load the file
        unsafely dropped)."""
        text = str(error)
        reason = text.partition("WeightsUnpickler error:")[2].partition("Check the documentation")[0] or text
        return cls(f"checkpoint {path} is refused: loading it would run code or build objects other than tensors "
                   f"({' '.join(reason.split())}); nothing in it was executed")
