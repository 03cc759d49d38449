"""A ``distill sweep`` trial: the values read from the command line, the ``distill run`` each value makes, and the
objective read back from its run directory (the study around them is :mod:`distill.sweep`)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.sweep import Objective, SweepError, TrialFailed


def parse_values(text: str) -> tuple[Any, ...]:
    """``1,2,4,8`` -> (1, 2, 4, 8): each item read as YAML (numbers, true/false, strings); an item YAML leaves a
    string but Python reads as a number (``1e9``, YAML 1.1 wants ``1.0e+9``) is that number."""
    import yaml

    items = [s.strip() for s in text.split(",") if s.strip()]
    values = tuple(_number(yaml.safe_load(s)) for s in items)
    for v in values:
        if not isinstance(v, (int, float, str, bool)):
            raise SweepError(f"--values: {v!r} is not a number, string or boolean")
    return values


def _number(value: Any) -> Any:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    return value


def metric_of(run_dir: Path, metric: str) -> float:
    """The trial's objective: the last generation's final ``val/acc`` (``metric: val``) or its test accuracy.

    Raises:
        TrialFailed: no ``val/acc`` was logged.
    """
    summary = json.loads((run_dir / "summary.json").read_text())
    last = summary["generations"][-1]
    if metric == "test":
        return float(last["test"]["acc"])
    log = run_dir / f"gen-{last['generation']}" / "logs" / "metrics.csv"
    values = []
    if log.is_file():
        with open(log) as f:
            values = [float(r["val/acc"]) for r in csv.DictReader(f) if r.get("val/acc")]
    if not values:
        raise TrialFailed(f"{run_dir}: no val/acc logged; give the data a validation split (e.g. --data.val_fraction "
                          "0.1 where the dataset takes it) or sweep on --metric test")
    return values[-1]


def key_override(recipe: str | None, overrides: Sequence[str], key: str, value: Any) -> list[str]:
    """The command-line arguments that set ``key`` to ``value``.

    A key inside a mapping-valued section (``backbone.init_args.prompt.length``, ``data.batch_size``) is written into
    that section as the recipe resolves it and the whole section passed as JSON, so its other entries stay and the
    value keeps its type; any other key is a plain ``--KEY VALUE``.
    """
    from distill.config import parse_recipe

    section, _, rest = key.partition(".")
    current = parse_recipe(recipe, list(overrides)).get(section) if rest else None
    if isinstance(current, str) and rest.startswith("init_args."):  # a backbone given by its name alone
        current = {"name": current}
    if not isinstance(current, dict):
        return [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    updated = json.loads(json.dumps(current, default=str))
    node = updated
    *path, last = rest.split(".")
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SweepError(f"--key {key}: {part} is not a mapping in the recipe")
    node[last] = value
    return [f"--{section}", json.dumps(updated)]


class _Tail(io.TextIOBase):
    """A text stream that passes everything to ``stream`` and keeps the last few thousand characters."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.text = stream, ""

    def write(self, s: str) -> int:
        self.text = (self.text + s)[-4000:]
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()

    def error_line(self) -> str | None:
        """The last ``error: ...`` line written, without its prefix."""
        lines = [line.strip() for line in self.text.splitlines() if line.strip().startswith("error:")]
        return lines[-1].removeprefix("error:").strip() if lines else None


def run_objective(recipe: str | None, overrides: Sequence[str], key: str, metric: str,
                  run: Callable[[list[str]], int]) -> Objective:
    """The objective of a real sweep: ``distill run RECIPE --out DIR OVERRIDES --KEY VALUE`` (resumed when the
    directory holds a killed or failed run of it), scored by :func:`metric_of`. ``run`` is the ``distill run``
    command; a run that exits non-zero or raises a :class:`~distill.errors.UserError` is a :class:`TrialFailed`
    whose reason is the run's own error line."""

    def objective(value: Any, where: Path) -> dict[str, Any]:
        import sys

        args = [*([recipe] if recipe else []), "--out", str(where), *overrides,
                *key_override(recipe, overrides, key, value)]
        resume = (where / "config.yaml").is_file()  # a killed (or failed, retried) run of this trial: continue it
        if not (where / "summary.json").is_file():  # (else finished before the sweep could record it)
            tail = _Tail(sys.stderr)
            try:
                with contextlib.redirect_stderr(tail):
                    code = run([*args, "--resume", "--force"] if resume else args)
            except UserError as e:
                raise TrialFailed(f"distill run: {e.one_line()}") from None
            if code:
                raise TrialFailed(f"distill run exited {code}: {tail.error_line() or 'see ' + str(where)}")
        summary = json.loads((where / "summary.json").read_text())
        last = summary["generations"][-1]
        return {"objective": metric_of(where, metric), "test_acc": last["test"]["acc"],
                "train_seconds": sum(g["train_seconds"] for g in summary["generations"]),
                "trainable": (last.get("parameters") or {}).get("trainable"),
                "config": (where / "config.yaml").read_text()}  # on the trial: best.yaml from any worker

    return objective
