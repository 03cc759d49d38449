"""Run state: which generations and caches of a run directory are complete, and recipe comparison for resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from distill.distributed import is_global_zero
from distill.io import atomic_write_json

STATE_NAME = "state.json"


class RunState:
    """``RUN/state.json``: the sha256 of every finished generation's checkpoint and of every finished cache array.

    A generation counts as done only if its checkpoint still has the recorded checksum, so a checkpoint that was
    replaced or damaged after the fact is trained again rather than trusted.

    Under DDP every rank keeps the same state in memory (so all take the same decisions); only global rank 0 saves.
    """

    def __init__(self, root: str | Path) -> None:
        self.path = Path(root) / STATE_NAME
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.generations: dict[str, str] = data.get("generations", {})
        self.caches: dict[str, str] = data.get("caches", {})
        self.train_seconds: dict[str, float] = data.get("train_seconds", {})

    def save(self) -> None:
        """Write ``state.json`` atomically (on global rank 0 only)."""
        if is_global_zero():
            atomic_write_json(self.path, {"generations": self.generations, "caches": self.caches,
                                      "train_seconds": self.train_seconds})

    def mark_generation(self, k: int, checkpoint_sha256: str, train_seconds: float) -> None:
        """Record generation ``k``'s final checkpoint. A (re)trained generation invalidates its own old cache and
        every later generation and cache: those learned from a teacher that no longer exists."""
        for table in (self.generations, self.caches, self.train_seconds):
            for key in [key for key in table if int(key) > k]:
                del table[key]
        self.generations[str(k)] = checkpoint_sha256
        self.train_seconds[str(k)] = train_seconds
        self.caches.pop(str(k), None)
        self.save()

    def mark_cache(self, k: int, array_sha256: str) -> None:
        self.caches[str(k)] = array_sha256
        self.save()

    def generation_sha(self, k: int) -> str | None:
        return self.generations.get(str(k))


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_diff(old_yaml: str, new_yaml: str) -> list[str]:
    """Dotted keys whose values differ between two resolved recipes, as ``key: old -> new`` strings."""
    old, new = _flatten(yaml.safe_load(old_yaml) or {}), _flatten(yaml.safe_load(new_yaml) or {})
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
