"""Where labelled texts come from, and the fixed split of them.

* ``countryinfo`` -- the ``countryinfo`` package's countries (those with a name, a capital and a region: 250 of the
  256 it ships); ``task: region`` (5 classes) or ``subregion`` labels each country's name. :func:`country_records`
  and :func:`country_split` give the records with their capitals, for the capital question.
* a ``.csv`` or ``.jsonl`` file with a ``text`` and a ``label`` column (labels are read as strings and numbered in
  sorted order, by value when every label is an integer: :func:`distill.text.data.class_order`).

The split (:func:`stratified_split`) is a pure function of the texts and labels: within each class the examples are
ordered by the sha256 of their text and the first ``test_fraction`` (then ``val_fraction``) of them held out, so every
run and every seed sees the same split.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.data.errors import DataError, DataNotFoundError
from distill.registry import Registry

__all__ = ["COUNTRY_TASKS", "FILE_READERS", "SPLITS", "TEXT_SOURCES", "Example", "country_records", "country_split",
           "read_source", "stratified_split"]

SPLITS = ("train", "val", "test")
COUNTRY_TASKS = ("region", "subregion")


@dataclass(frozen=True)
class Example:
    """One labelled text: ``text`` goes where the template says ``{input}``; ``label`` is a class name."""

    text: str
    label: str


def country_records() -> list[dict[str, str]]:
    """``[{country, capital, region, subregion}]`` of every ``countryinfo`` country with a name, a capital and a
    region, sorted by country name.

    Raises:
        DataError: ``countryinfo`` is not installed (``pip install 'distill[text]'``).
    """
    try:
        countryinfo = importlib.import_module("countryinfo")  # an optional dependency: the text extra
    except ImportError:
        raise DataError("data.source countryinfo needs the countryinfo package: pip install 'distill[text]'") from None
    records = []
    for country in countryinfo.all_countries():
        info = country.info()
        record = {key: _text(info.get(field)) for key, field in
                  (("country", "name"), ("capital", "capital"), ("region", "region"), ("subregion", "subregion"))}
        if record["country"] and record["capital"] and record["region"]:
            records.append(record)
    return sorted(records, key=lambda r: r["country"])


def _text(value: Any) -> str:
    """A countryinfo field as text; a list (Vatican City State's capital, ``['Vatican City']``) gives its first
    entry, not the list's printed form."""
    if isinstance(value, list | tuple):
        value = value[0] if value else ""
    return str(value or "").strip()


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def stratified_split(examples: Sequence[Example], test_fraction: float, val_fraction: float = 0.0) -> list[str]:
    """Each example's split (``train``, ``val`` or ``test``), the same on every call.

    Within each class, examples ordered by (sha256 of the text, position) go ``round(n * test_fraction)`` to test,
    then ``round(n * val_fraction)`` to validation, the rest to training; a class of one example stays in training.
    """
    by_label: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        by_label.setdefault(example.label, []).append(i)
    split = ["train"] * len(examples)
    for members in by_label.values():
        if len(members) < 2:
            continue
        ordered = sorted(members, key=lambda i: (_text_key(examples[i].text), i))
        n_test = round(len(members) * test_fraction)
        n_val = min(round(len(members) * val_fraction), len(members) - n_test - 1)
        for i in ordered[:n_test]:
            split[i] = "test"
        for i in ordered[n_test:n_test + max(n_val, 0)]:
            split[i] = "val"
    return split


def country_split(test_fraction: float = 0.3, val_fraction: float = 0.0,
                  task: str = "region") -> dict[str, list[dict[str, str]]]:
    """:func:`country_records` in the splits the ``countryinfo`` source uses for ``task`` (stratified by it)."""
    records = country_records()
    split = stratified_split([Example(r["country"], r[task]) for r in records], test_fraction, val_fraction)
    return {name: [r for r, s in zip(records, split, strict=True) if s == name] for name in SPLITS}


TEXT_SOURCES: Registry[Callable[[str | None], list[Example]]] = Registry("text source")


@TEXT_SOURCES.register("countryinfo")
def countryinfo_examples(task: str | None) -> list[Example]:
    """Countries labelled by ``task`` (``region``, the default, or ``subregion``)."""
    task = task or "region"
    if task not in COUNTRY_TASKS:
        raise DataError(f"data.task {task!r} is not a countryinfo task (tasks: {', '.join(COUNTRY_TASKS)})")
    return [Example(r["country"], r[task]) for r in country_records() if r[task]]


def _rows_csv(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: the byte-order mark Excel writes is no column
        reader = csv.DictReader(f)
        rows = []
        for row in reader:
            if None in row:  # more fields than the header: an unquoted comma would shift the label
                raise DataError(f"{path}:{reader.line_num} has {len(row) - 1 + len(row[None])} fields, the header "
                                f"{len(reader.fieldnames or [])}: put a text that contains a comma in double quotes")
            rows.append(row)
        return list(reader.fieldnames or []), rows


def _rows_jsonl(path: Path) -> tuple[list[str], list[dict]]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{number} is not a JSON object: {e}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number} is not a JSON object")
        rows.append(row)
    columns = sorted({key for row in rows for key in row})
    return columns, rows


FILE_READERS: Registry[Callable[[Path], tuple[list[str], list[dict]]]] = Registry("text file suffix")
FILE_READERS.register(".csv")(_rows_csv)
FILE_READERS.register(".jsonl")(_rows_jsonl)


def _file_examples(path: Path) -> list[Example]:
    if not path.is_file():
        raise DataNotFoundError(f"data.source {str(path)!r}: no such file")
    try:
        columns, rows = FILE_READERS.get(path.suffix.lower())(path)
    except UnicodeDecodeError as e:
        raise DataError(f"data.source {str(path)!r} is not UTF-8 text (byte {e.object[e.start:e.start + 1].hex()} at "
                        f"offset {e.start}); save it as UTF-8") from None
    missing = [c for c in ("text", "label") if c not in columns]
    if not rows:
        raise DataError(f"data.source {str(path)!r} holds no rows")
    if missing:
        raise DataError(f"data.source {str(path)!r} has no {' and no '.join(repr(m) for m in missing)} column "
                        f"(columns: {', '.join(columns) or 'none'})")
    examples = []
    for number, row in enumerate(rows, 1):
        text, label = row.get("text"), row.get("label")
        if text is not None and not isinstance(text, str) or isinstance(label, bool) \
                or label is not None and not isinstance(label, str | int):
            raise DataError(f"data.source {str(path)!r}: row {number} has text {text!r} and label {label!r}; a text "
                            "is a string, a label a string or an integer")
        if text is None or not str(text).strip() or label is None or not str(label).strip():
            raise DataError(f"data.source {str(path)!r}: row {number} has an empty text or label")
        examples.append(Example(str(text), str(label).strip()))
    return examples


def read_source(source: str, task: str | None = None) -> list[Example]:
    """The examples of ``source``: a registered name (``countryinfo``) or a ``.csv`` / ``.jsonl`` file.

    Raises:
        DataError: unknown source, missing file, an empty or label-less file, an unknown task; one line.
    """
    if source in TEXT_SOURCES:
        return TEXT_SOURCES.get(source)(task)
    path = Path(source).expanduser()
    if path.suffix.lower() not in FILE_READERS:
        raise DataError(f"data.source {source!r} is neither a text source ({', '.join(TEXT_SOURCES.names())}) nor a "
                        f"{' or '.join(FILE_READERS.names())} file")
    if task is not None:
        raise DataError(f"data.task {task!r} applies to the named sources; a file's labels are its 'label' column")
    return _file_examples(path)
