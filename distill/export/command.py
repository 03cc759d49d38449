"""``distill export RUN`` and ``distill predict SOURCE INPUTS...``: thin layers over :mod:`distill.export`.

Both register themselves on import (:func:`~distill.commands.base.register_command`). A mistake -- a bad option,
a run without the generation, an unfinished one, an ``--out`` in use, missing ONNX packages, an export that does not
match PyTorch, an input that does not exist -- is a :class:`~distill.errors.UserError`: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from distill.commands.base import CommandParser, checked, register_command, writing_to
from distill.export.bundle import export_run
from distill.export.formats import FORMATS, ExportError
from distill.export.predict import (
    Predictions,
    collect_images,
    open_predictor,
    predict,
    predictions_file,
    write_predictions,
)

__all__ = ["export_command", "export_parser", "predict_command", "predict_parser"]

GENERATION_HELP = "K (default: the last generation), ensemble (generations 0..last as one module) or ensemble:K"


def export_parser() -> argparse.ArgumentParser:
    """The ``distill export`` argument parser."""
    p = CommandParser(prog="distill export", description="Export a generation (or the ensemble) of a finished run as a "
                "timm folder, ONNX or TorchScript, with its config.json and a README.md model card. The exported "
                "file is read back by its own runtime and compared with PyTorch on real test images of the run "
                "before the folder is kept.",
                epilog="ONNX needs the export extra: pip install 'distill[export]'. exit codes: 0 done, 2 bad input "
                "(run, generation, --out, missing packages, an export over the tolerance: nothing is written)")
    p.add_argument("run", metavar="RUN", help="run directory written by `distill run`")
    p.add_argument("--out", required=True, metavar="DIR", help="export folder (must be new or empty)")
    p.add_argument("--format", default="timm", choices=FORMATS.names(),
                   help="timm: config.json + model.safetensors (timm.create_model('local-dir:DIR')); onnx: "
                        "model.onnx (dynamic batch); torchscript: model.pt (traced). Default: timm")
    p.add_argument("--generation", default=None, metavar="K", help=GENERATION_HELP)
    p.add_argument("--samples", type=checked(int, lambda v: v >= 3, "an integer >= 3"), default=64, metavar="N",
                   help="test images of the run the export is checked on (default: 64)")
    p.add_argument("--tolerance", type=checked(float, lambda v: math.isfinite(v) and v > 0, "a number > 0"),
                   default=1e-4, metavar="T",
                   help="largest difference of a probability accepted between the export and PyTorch (default: 1e-4)")
    return p


def predict_parser() -> argparse.ArgumentParser:
    """The ``distill predict`` argument parser."""
    p = CommandParser(prog="distill predict", description="Classify image files with a run's generation (or ensemble) "
                "or an exported folder, using the run's own evaluation transform; batched, with a progress bar. "
                "Unreadable images are named and skipped.",
                epilog="exit codes: 0 done (skipped images are listed), 2 bad input (source, option, no readable "
                "image)")
    p.add_argument("source", metavar="SOURCE", help="a run directory or a folder written by `distill export`")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--generation", default=None, metavar="K", help=f"with a run: {GENERATION_HELP}")
    p.add_argument("--top-k", type=checked(int, lambda v: v >= 1, "an integer >= 1"), default=5, metavar="K",
                   help="classes reported per image (default: 5)")
    p.add_argument("--batch-size", type=checked(int, lambda v: v >= 1, "an integer >= 1"), default=64,
                   metavar="N", help="images per forward pass (default: 64)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write FILE.csv or FILE.jsonl (default: print a table)")
    return p


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    try:
        return parser.parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)


@register_command("export")
def export_command(argv: list[str]) -> int:
    """``distill export RUN --out DIR [--format F] [--generation K|ensemble] [--samples N] [--tolerance T]``."""
    args = _parse(export_parser(), argv)
    if isinstance(args, int):
        return args
    console = Console()
    with writing_to(Path(args.out)):
        result = export_run(args.run, args.out, args.format, args.generation, args.samples, args.tolerance)
    console.print(escape(result.check.describe(result.format)), highlight=False, soft_wrap=True)
    console.print(f"{result.label} of {escape(str(args.run))} exported to {escape(str(result.out))}: "
                  f"{', '.join(result.files)}", highlight=False, soft_wrap=True)
    return 0


def _table(predictions: Predictions) -> Table:
    names = predictions.class_names
    table = Table("image", *(f"#{i}" for i in range(1, predictions.top_k + 1)))
    for row in predictions.rows:
        table.add_row(escape(row.path), *(f"{escape(names[c])} {100 * p:.1f}%"
                                          for c, p in zip(row.classes, row.probabilities, strict=True)))
    return table


@register_command("predict")
def predict_command(argv: list[str]) -> int:
    """``distill predict SOURCE INPUTS... [--generation K] [--top-k K] [--batch-size N] [--out FILE.csv|.jsonl]``."""
    args = _parse(predict_parser(), argv)
    if isinstance(args, int):
        return args
    out = predictions_file(args.out) if args.out else None  # before any image is read
    predictor = open_predictor(args.source, args.generation)
    paths = collect_images(args.inputs)
    errors = Console(stderr=True)
    predictions = predict(predictor, paths, args.top_k, args.batch_size, console=errors)
    for _, why in predictions.skipped:
        errors.print(f"[yellow]skipped:[/] {escape(why)}", highlight=False, soft_wrap=True)
    if not predictions.rows:
        raise ExportError(f"none of the {len(paths)} images could be read (each is listed above)")
    if out is None:
        Console(width=None if sys.stdout.isatty() else 160).print(_table(predictions))
        return 0
    with writing_to(out):
        write_predictions(predictions, out)
    errors.print(f"{len(predictions.rows)} predictions of {escape(predictor.source)} written to {escape(str(out))}"
                 + (f"; {len(predictions.skipped)} unreadable image(s) skipped" if predictions.skipped else ""),
                 highlight=False, soft_wrap=True)
    return 0
