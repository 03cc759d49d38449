"""One small registry type used for every pluggable name in the project (backbones, datasets, losses, ...)."""

from __future__ import annotations

import difflib
import warnings
from typing import Callable, Generic, Iterator, TypeVar

from distill.errors import UserError

T = TypeVar("T")


class RegistryError(UserError, KeyError):
    """Raised for an unknown key; the message lists close matches."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A name -> object mapping with a decorator to fill it and helpful errors.

    Args:
        name: What the registry holds ("backbone", "dataset", ...); used in error messages.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._items: dict[str, T] = {}

    def register(self, key: str | None = None, *, overwrite: bool = False) -> Callable[[T], T]:
        """Decorator that registers an object under ``key`` (default: its ``__name__``).

        Registering a taken key warns and replaces the old entry unless ``overwrite=True`` says it is meant.
        """

        def deco(obj: T) -> T:
            k = key or getattr(obj, "__name__", None)
            if not k:
                raise ValueError(f"cannot infer a {self.name} name for {obj!r}; pass key=")
            if k in self._items and self._items[k] is not obj and not overwrite:
                warnings.warn(f"{self.name} {k!r} was already registered; replacing it", stacklevel=2)
            self._items[k] = obj
            return obj

        return deco

    def get(self, key: str) -> T:
        """Return the entry for ``key`` or raise :class:`RegistryError` with close matches."""
        try:
            return self._items[key]
        except KeyError:
            raise RegistryError(self.unknown_message(key, self.names())) from None

    def unknown_message(self, key: str, candidates: list[str]) -> str:
        """One-line message for an unknown ``key`` with up to three close matches from ``candidates``."""
        close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        known = f" (known: {', '.join(sorted(candidates))})" if 0 < len(candidates) <= 20 else ""
        return f"unknown {self.name} {key!r}{hint}{known}"

    def names(self) -> list[str]:
        """Registered keys, sorted."""
        return sorted(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
