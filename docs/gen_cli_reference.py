"""Regenerate docs/cli.md from the live parsers: `python docs/gen_cli_reference.py` (tests/test_docs.py checks it)."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

HEADER = """# CLI reference

Generated from the parsers by `python docs/gen_cli_reference.py`; `tests/test_docs.py` fails when this page and
the parsers disagree. Recipe keys are explained in [Configuration](configuration.md).
"""


def _help(*argv: str) -> str:
    from distill.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            main(list(argv))
        except SystemExit:  # argparse's --help exits after printing
            pass
    return buf.getvalue().rstrip()


def render() -> str:
    os.environ["COLUMNS"] = "120"  # the same wrapping wherever it is generated
    sections = [("distill --help", ("--help",)), ("distill run --help", ("run", "--help")),
                ("distill inspect --help", ("inspect", "--help")), ("distill meta --help", ("meta", "--help")),
                ("distill sweep --help", ("sweep", "--help"))]
    parts = [HEADER]
    for title, argv in sections:
        parts.append(f"## `{title}`\n\n```text\n{_help(*argv)}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    Path(__file__).with_name("cli.md").write_text(render())
