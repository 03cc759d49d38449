"""A CSV training log that a resumed run continues instead of replacing.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its writer starts, so a resumed run would keep only the rows
of its last session. :class:`ResumedCSVLogger` reads the earlier rows first and writes them back before the first new
row, dropping the rows at or after that row's step: they were logged by the killed session after its last
checkpoint and are logged again now. What cannot be made atomic: the file is appended as training goes (a crash can
leave a partial last line, which the next session drops with the rows after the checkpoint).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only


class ResumedCSVLogger(CSVLogger):
    """``CSVLogger`` (same arguments) that keeps the rows an earlier session of the run wrote."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._earlier: list[dict[str, str]] | None = None

    @property
    def experiment(self) -> Any:
        """The writer (started by Lightning, which deletes the file; its rows were read just before)."""
        if self._earlier is None:
            self._earlier = _rows(Path(self.log_dir) / "metrics.csv")
        with warnings.catch_warnings():  # "Previous log files ... will be deleted": their rows are written back
            warnings.filterwarnings("ignore", ".*Previous log files in this directory will be deleted.*")
            return super().experiment

    @rank_zero_only  # as CSVLogger's own: under DDP only global rank 0 writes the file
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Log ``metrics``; the first time, write the earlier session's rows before ``step`` back first."""
        writer = self.experiment
        if self._earlier:
            kept = [r for r in self._earlier if step is None or _step(r) < step]
            keys = sorted({k for r in kept for k in r})
            if kept:
                with open(writer.metrics_file_path, "w", newline="") as f:
                    out = csv.DictWriter(f, fieldnames=keys)
                    out.writeheader()
                    out.writerows(kept)
                writer.metrics_keys = keys
        self._earlier = []
        super().log_metrics(metrics, step)


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if None not in r and None not in r.values() and _step(r) >= 0]  # a torn line: dropped


def _step(row: dict[str, str]) -> int:
    try:
        return int(float(row.get("step") or -1))
    except ValueError:
        return -1
