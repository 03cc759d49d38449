"""Render and check the generated sections of README.md and docs/ (what goes where: :mod:`benchmarks.sections`).

    python -m benchmarks.pages            # re-render every section from the JSON on disk, measuring nothing
    python -m benchmarks.pages --check    # only compare; exit 1 when a section differs from its JSON's rendering

A measuring script hands its results to :func:`publish`, which writes the JSON atomically and re-renders every
section drawn from it. ``tests/test_pages.py`` checks each section against its JSON, so a number typed into a page
by hand fails the tests.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable
from typing import Any

from benchmarks import ROOT
from benchmarks.sections import SECTIONS, Section
from distill.io import atomic_write_json, atomic_write_text


def _pattern(s: Section) -> re.Pattern:
    return re.compile(re.escape(s.begin()) + r"\n(.*?)" + re.escape(s.end()), re.S)


def body(s: Section, text: str) -> str | None:
    """The section's text in a page's ``text`` (None when the page has no such section)."""
    m = _pattern(s).search(text)
    return m.group(1) if m else None


def current(s: Section) -> str | None:
    """The section's text as it is in its page."""
    return body(s, (ROOT / s.page).read_text())


def rendered(s: Section, data: dict[str, Any] | None = None) -> str:
    """What the section renders to from ``data`` (default: its JSON on disk); ends with a newline."""
    if data is None:
        data = json.loads((ROOT / s.data).read_text())
    return s.render(data).rstrip("\n") + "\n"


def fill(text: str, sections: Iterable[Section], data: dict[str, Any] | None = None) -> str:
    """``text`` (a page) with each of ``sections`` replaced by its rendering (from ``data``, default their JSON)."""
    for s in sections:
        if body(s, text) is None:
            raise ValueError(f"{s.page}: no markers for section {s.name!r}; add the two lines\n{s.begin()}\n{s.end()}")
        replacement = f"{s.begin()}\n{rendered(s, data)}{s.end()}"
        text = _pattern(s).sub(lambda _m, r=replacement: r, text, count=1)
    return text


def render(names: Iterable[str] | None = None) -> list[str]:
    """Write each named section (default: all) whose JSON exists into its page; return the names written."""
    wanted = [s for s in SECTIONS if (names is None or s.name in names) and (ROOT / s.data).is_file()]
    for page in dict.fromkeys(s.page for s in wanted):
        path = ROOT / page
        text = path.read_text()
        new = fill(text, [s for s in wanted if s.page == page])
        if new != text:
            atomic_write_text(path, new)
    return [s.name for s in wanted]


def publish(data: str, result: dict[str, Any]) -> list[str]:
    """Write a measurement's ``result`` to its JSON file ``data`` (relative to the repository root, atomically) and
    re-render every section drawn from it; return their names."""
    names = [s.name for s in SECTIONS if s.data == data]
    if not names:
        raise ValueError(f"no section of benchmarks/sections.py is rendered from {data}")
    (ROOT / data).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ROOT / data, result, indent=1)
    return render(names)


def report(data: str, result: dict[str, Any], dry_run: bool = False) -> None:
    """The end of a measuring script: print ``result`` as JSON (``dry_run``: nothing written) or :func:`publish` it
    and say which sections were rendered."""
    if dry_run:
        print(json.dumps(result, indent=1))
    else:
        print("rendered:", ", ".join(publish(data, result)))


def mismatches() -> list[str]:
    """Sections whose page text is not what their JSON renders to (or whose JSON or markers are missing)."""
    bad = []
    for s in SECTIONS:
        if not (ROOT / s.data).is_file():
            bad.append(f"{s.name}: {s.data} missing (run python -m {s.script})")
        elif (text := current(s)) is None:
            bad.append(f"{s.name}: no markers in {s.page}")
        elif text != rendered(s):
            bad.append(f"{s.name}: {s.page} differs from what {s.data} renders to (run python -m benchmarks.pages)")
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Re-render every generated page section from its JSON.")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a section differs")
    args = parser.parse_args(argv)
    if args.check:
        bad = mismatches()
        print("\n".join(bad) or "every generated section matches its JSON")
        return 1 if bad else 0
    print("rendered:", ", ".join(render()) or "nothing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
