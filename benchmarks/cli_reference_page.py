"""Renderer of docs/cli.md's sections from ``docs/data/cli.json``, which ``python -m benchmarks.cli_reference``
writes from the live parsers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: the page's headings (one section each) -> the arguments that print them
COMMANDS = {"distill --help": ["--help"], "distill run --help": ["run", "--help"],
            "distill inspect --help": ["inspect", "--help"], "distill meta --help": ["meta", "--help"],
            "distill sweep --help": ["sweep", "--help"], "distill export --help": ["export", "--help"],
            "distill predict --help": ["predict", "--help"]}

def usage(command: str) -> Callable[[dict[str, Any]], str]:
    """The renderer of one command's section: its recorded ``--help`` text as a code block."""
    def render(d: dict[str, Any]) -> str:
        return f"```text\n{d['help'][command]}\n```"
    render.__doc__ = f"`{command}` as the parser prints it."
    return render
