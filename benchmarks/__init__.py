"""Measurements of distill and the generated parts of its documentation.

Run every script as a module from the repository root, e.g. ``python -m benchmarks.quickstart``. One mechanism writes
every number in README.md and docs/:

* a measuring script ``benchmarks/NAME.py`` runs the real thing and writes its results, with the machine, date and
  commit, to a JSON file in ``docs/data/`` (:func:`benchmarks.pages.publish`);
* a renderer beside it, ``benchmarks/NAME_page.py``, turns that JSON into Markdown: pure functions, nothing measured;
* the table :data:`benchmarks.sections.SECTIONS` (data) says which renderer fills which marked section of which page
  from which JSON;
* ``python -m benchmarks.pages`` re-renders every section from the JSON on disk (``--check`` only compares), and
  ``tests/test_pages.py`` checks that every section is exactly what its JSON renders to and that no number outside
  the sections of those pages was typed in by hand.

Prose that is not a number lives in the Markdown pages; a sentence whose wording depends on the measured data (a
verdict) is rendered, decided from the JSON.
"""

from __future__ import annotations

from pathlib import Path

#: the repository root (pages and JSON paths in the section table are relative to it)
ROOT = Path(__file__).resolve().parents[1]
