"""The CLI's help texts for docs/cli.md: ``python -m benchmarks.cli_reference`` captures them from the live parsers
into ``docs/data/cli.json`` and renders the page's sections (``benchmarks/cli_reference_page.py``).

Derived, not measured, but the same mechanism as every measured page: ``tests/test_docs.py`` fails when the JSON and
the parsers disagree, ``tests/test_pages.py`` when the page and the JSON do.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from unittest import mock

from benchmarks.cli_reference_page import COMMANDS
from benchmarks.pages import publish
from distill.cli import main as distill

DATA = "docs/data/cli.json"
COLUMNS = 120  # the same wrapping wherever it is generated


def _help(argv: list[str]) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), mock.patch.dict(os.environ, {"COLUMNS": str(COLUMNS)}):
        try:
            distill(argv)
        except SystemExit:  # argparse's --help exits after printing
            pass
    return buf.getvalue().rstrip()


def help_texts() -> dict[str, str]:
    """Every command's ``--help`` as the parsers print it, at :data:`COLUMNS` columns."""
    return {title: _help(argv) for title, argv in COMMANDS.items()}


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help, nothing else
    print("rendered:", ", ".join(publish(DATA, {"columns": COLUMNS, "help": help_texts()})))


if __name__ == "__main__":
    main()
