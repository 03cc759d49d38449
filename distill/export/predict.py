"""Classify image files with a run's generation (or ensemble) or an exported folder, batched, with a progress bar.

The images go through the run's own evaluation transform (:class:`~distill.export.preprocess.Preprocess`: from the
run's data module, or from the export's ``config.json``). An image that cannot be read is reported by name and
skipped; the others are predicted. Results: the top-k classes and their probabilities per image, as a table, a CSV
or a JSON-lines file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from distill.data import DataError
from distill.data.imagefolder import image_extensions
from distill.export.bundle import CONFIG
from distill.export.formats import FORMATS, ExportError, Runtime
from distill.export.preprocess import Preprocess
from distill.export.source import open_run
from distill.io import atomic_writer

__all__ = ["OUTPUT_SUFFIXES", "Prediction", "Predictions", "Predictor", "collect_images", "open_predictor", "predict",
           "predictions_file", "write_predictions"]

OUTPUT_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Predictor:
    """A network ready to classify image files.

    Attributes:
        forward: ``(B, C, H, W)`` normalised float batch -> ``(B, classes)`` logits (or log-probabilities).
        preprocess: the run's evaluation transform.
        class_names: class names in label order.
        source: what predicts, for messages (``runs/x gen-2``, ``export/ (onnx)``).
    """

    forward: Runtime
    preprocess: Preprocess
    class_names: list[str]
    source: str


def open_predictor(source: str | Path, generation: str | int | None = None) -> Predictor:
    """A run directory (its ``generation``, default the last; or ``ensemble``) or an export folder, ready to predict.

    Raises:
        ExportError: neither a run nor an export, ``generation`` given for an export, a format whose packages are
            missing, or what :func:`~distill.export.source.open_run` refuses.
    """
    root = Path(source)
    if (root / "config.yaml").is_file():
        run = open_run(root, generation)
        return Predictor(run.network, run.preprocess, run.class_names, f"{root} {run.selection.label}")
    if not (root / CONFIG).is_file():
        raise ExportError(f"{root} is neither a run directory (config.yaml) nor an exported folder ({CONFIG})")
    if generation is not None:
        raise ExportError(f"--generation picks a generation of a run; {root} is an exported folder (one network)")
    try:
        config = json.loads((root / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read {root / CONFIG}: {e}") from None
    fmt = (config.get("distill") or {}).get("format", "timm")  # a timm folder from elsewhere has no distill section
    exporter = FORMATS.get(fmt)
    exporter.require()
    names = config.get("label_names") or [str(i) for i in range(int(config.get("num_classes") or 0))]
    if not names:
        raise ExportError(f"{root / CONFIG} names no classes (label_names or num_classes)")
    return Predictor(exporter.load(root), Preprocess.from_config(config, str(root / CONFIG)), [str(n) for n in names],
                     f"{root} ({fmt})")


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named or found (recursively, by a suffix PIL reads, hidden files skipped) in ``inputs``.

    Raises:
        ExportError: an input that does not exist, or no image at all.
    """
    exts, files = image_extensions(), []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(f for f in path.rglob("*") if f.suffix.lower() in exts and f.is_file()
                            and not any(part.startswith(".") for part in f.relative_to(path).parts))
        elif path.is_file():  # named explicitly: tried whatever its suffix (an unreadable one is reported)
            files.append(path)
        else:
            raise ExportError(f"input not found: {path}")
    if not files:
        raise ExportError(f"no image files in {', '.join(str(i) for i in inputs)}")
    return files


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one image: their indices and probabilities, most likely first."""

    path: str
    classes: list[int]
    probabilities: list[float]


@dataclass
class Predictions:
    """Everything :func:`predict` did: the predictions (input order) and the images it skipped, with why."""

    class_names: list[str]
    top_k: int
    rows: list[Prediction] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def predict(predictor: Predictor, paths: Sequence[Path], top_k: int = 5, batch_size: int = 64,
            console: Console | None = None, workers: int | None = None) -> Predictions:
    """Top-``top_k`` classes of every image in ``paths``, ``batch_size`` images a forward pass.

    Images are decoded by a thread pool (``workers``, default CPU count + 4, at most 32); a rich progress bar on
    ``console`` (default: stderr) counts them. An unreadable image is skipped and listed in ``skipped``.
    """
    if top_k < 1 or batch_size < 1:
        raise ExportError(f"--top-k and --batch-size must be >= 1, got {top_k} and {batch_size}")
    out = Predictions(predictor.class_names, min(top_k, len(predictor.class_names)))
    loader, transform = predictor.preprocess.loader(), predictor.preprocess.transform()

    def decode(path: Path) -> torch.Tensor | str:
        try:
            return transform(loader(path))
        except DataError as e:  # named by the loader: "cannot read image PATH: ..."
            return str(e)

    columns = (TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    console = console or Console(stderr=True)
    with ThreadPoolExecutor(max_workers=workers or min(32, (os.cpu_count() or 1) + 4)) as pool, \
            Progress(*columns, console=console) as bar:
        task = bar.add_task("predict", total=len(paths))
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start:start + batch_size])
            decoded = list(pool.map(decode, chunk))
            good = [(p, x) for p, x in zip(chunk, decoded, strict=True) if isinstance(x, torch.Tensor)]
            out.skipped += [(str(p), x) for p, x in zip(chunk, decoded, strict=True) if isinstance(x, str)]
            if good:
                with torch.no_grad():
                    probs = predictor.forward(torch.stack([x for _, x in good])).float().softmax(-1)
                values, indices = probs.topk(out.top_k, dim=-1)
                out.rows += [Prediction(str(p), indices[i].tolist(), values[i].tolist())
                             for i, (p, _) in enumerate(good)]
            bar.advance(task, len(chunk))
    return out


def predictions_file(path: str | Path) -> Path:
    """``--out`` must end in ``.csv`` or ``.jsonl`` (checked before any image is read)."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ExportError(f"--out {path}: give a .csv or .jsonl file")
    if path.is_dir():
        raise ExportError(f"--out {path} is a directory; give a .csv or .jsonl file")
    return path


def write_predictions(predictions: Predictions, path: str | Path) -> None:
    """Write ``predictions`` as CSV (``path, label_1, probability_1, ...``) or JSON lines, atomically."""
    path = predictions_file(path)
    names = predictions.class_names
    if path.suffix.lower() == ".csv":
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["path"] + [f"{c}_{i}" for i in range(1, predictions.top_k + 1)
                                    for c in ("label", "probability")])
        for row in predictions.rows:
            writer.writerow([row.path] + [v for c, p in zip(row.classes, row.probabilities, strict=True)
                                          for v in (names[c], f"{p:.6f}")])
        content = text.getvalue()
    else:
        content = "".join(json.dumps({"path": row.path, "top_k": [
            {"label": names[c], "index": c, "probability": p}
            for c, p in zip(row.classes, row.probabilities, strict=True)]}) + "\n" for row in predictions.rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as tmp:
        tmp.write_text(content, encoding="utf-8")
