"""``export_run``: one generation (or the ensemble) of a finished run as a self-describing folder.

The folder holds the format's file (``model.safetensors``, ``model.onnx`` or ``model.pt``), timm's ``config.json``
(architecture, classes, label names, preprocessing; a ``distill`` section says which run, generation and format,
and what the check measured) and a ``README.md`` model card. It is built in a temporary folder beside ``out`` and
renamed into place only after the exported file, read back by its own runtime, matched PyTorch on real test images
of the run: an export that fails or differs leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from distill import __version__
from distill.export import onnx, timm_folder, torchscript  # noqa: F401  (register the formats)
from distill.export.card import model_card
from distill.export.formats import FORMATS, Check, ExportError, ExportFormat, compare
from distill.export.source import RunNetwork, open_run
from distill.export.timm_folder import timm_config
from distill.io import atomic_directory, atomic_write_json, atomic_write_text

__all__ = ["CONFIG", "CARD", "ExportResult", "check_out", "export_config", "export_run"]

CONFIG, CARD = "config.json", "README.md"
MIN_SAMPLES = 3  # the check runs a batch of another size than the export's example batch of 2


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote and measured.

    Attributes:
        out: the export folder.
        format: the format's name.
        label: the network (``gen-2``, ``ensemble 0..2``).
        check: the exported file against PyTorch on real test images.
        recorded_same: of those images, how many the rebuilt network assigns the class the run recorded.
        files: the folder's files.
    """

    out: Path
    format: str
    label: str
    check: Check
    recorded_same: int
    files: tuple[str, ...]


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not an empty folder (an export never mixes with other files)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"--out {out} exists and is not empty; give a new folder")


def _plain_permissions(folder: Path) -> None:
    """A temporary folder is private (0o700): give the export a plain folder's permissions (0o777 less the umask),
    its files a plain file's (0o666 less the umask), as ``mkdir`` and ``open`` would have."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def export_config(run: RunNetwork, exporter: type[ExportFormat], check: Check | None = None) -> dict[str, Any]:
    """timm's ``config.json`` of the export, plus a ``distill`` section (which run and network, which file)."""
    config = timm_config(run.backbones, run.network, run.selection.ensemble, run.class_names,
                         run.preprocess.pretrained_cfg())
    config["distill"] = {
        "format": exporter.name, "file": exporter.filename, "run": str(run.root.resolve()),
        "recipe": run.summary["recipe"], "network": run.selection.label, "generations": list(run.selection.members),
        "ensemble": run.selection.ensemble, "task": run.members[-1].task, "backbones": [s.label for s in run.members],
        "version": __version__, **({"check": check.as_dict()} if check is not None else {}),
    }
    return config


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "timm", generation: str | int | None = None,
               samples: int = 64, tolerance: float = 1e-4) -> ExportResult:
    """Export a finished run's generation (default: the last) or ensemble into the new folder ``out``.

    Args:
        run_dir: the run directory.
        out: the export folder (absent or empty).
        fmt: ``timm``, ``onnx`` or ``torchscript``.
        generation: ``K``, ``"ensemble"`` (0..last) or ``"ensemble:K"``; default the last generation.
        samples: test images of the run the export is checked on (at least 3).
        tolerance: the largest difference of a probability accepted between the export and PyTorch.

    Raises:
        ExportError: an unknown format or one whose packages are missing, an ``out`` in use, a generation the run
            lacks or has not finished, an export over the tolerance (one line; nothing is written).
    """
    exporter = FORMATS.get(fmt)
    exporter.require()
    out = Path(out)
    check_out(out)
    if samples < MIN_SAMPLES:
        raise ExportError(f"--samples must be at least {MIN_SAMPLES} (the check runs another batch size than the "
                          f"export's), got {samples}")
    if not tolerance > 0:
        raise ExportError(f"--tolerance must be > 0, got {tolerance}")
    run = open_run(run_dir, generation)
    indices = run.test_indices(samples)
    inputs = run.test_inputs(indices)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_directory(out) as folder:
            atomic_write_json(folder / CONFIG, export_config(run, exporter))  # timm's loader reads it
            exporter.write(run.network, inputs[:2], folder)
            check = compare(run.network, exporter.load(folder), inputs, tolerance, fmt)
            if not check.passed:
                raise ExportError(check.describe(fmt) + ": over the tolerance, nothing written")
            with torch.no_grad():
                predicted = run.network(inputs).argmax(-1)
            recorded_same = int((run.recorded_test_logits()[torch.as_tensor(indices)].argmax(-1) == predicted).sum())
            atomic_write_json(folder / CONFIG, export_config(run, exporter, check))
            atomic_write_text(folder / CARD, model_card(run, exporter, check, recorded_same, out.name))
            files = tuple(sorted(p.name for p in folder.iterdir()))
            _plain_permissions(folder)
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        raise ExportError(f"--out {out} was filled by someone else while exporting; nothing written") from None
    return ExportResult(out, fmt, run.selection.label, check, recorded_same, files)
