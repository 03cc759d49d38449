"""The data errors: a leaf module, so every data module (and the defaults table) can raise them without importing
the data contract in :mod:`distill.data.base`."""

from __future__ import annotations

from distill.errors import UserError


class DataError(UserError, ValueError):
    """Bad data input (corrupt image, wrong layout, bad option value); the message is one line naming the culprit.

    Raised in a DataLoader worker, PyTorch re-raises it in the main process with the worker's traceback as message;
    ``str()`` then gives just the original message (the traceback's last line), so it stays one line.
    """

    def __str__(self) -> str:
        text = super().__str__()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) > 1 and ": " in lines[-1] and lines[-1].split(": ", 1)[0].endswith("Error"):
            return lines[-1].split(": ", 1)[1]
        return text


class DataNotFoundError(DataError, FileNotFoundError):
    """A data root, folder or file is missing; both a :class:`ValueError` and a :class:`FileNotFoundError`."""
