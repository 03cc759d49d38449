"""Generated page sections: every measured number in README.md and docs/ is rendered from a JSON a script wrote.

A page holds a section between two markers::

    <!-- generated: NAME from docs/data/FILE.json by benchmarks/SCRIPT.py; do not edit -->
    ...
    <!-- end generated: NAME -->

The measuring scripts (``benchmarks/quickstart.py``, ``benchmarks/results.py``, ``benchmarks/backbones.py``,
``benchmarks/meta_results.py``, ``benchmarks/meta_ksweep.py``, ``benchmarks/meta_sinusoid.py``,
``benchmarks/prompt_results.py``, ``docs/gen_teacher_example.py``) write the JSON,
with the machine, date and commit it was measured on, then call :func:`render`. ``python benchmarks/pages.py``
re-renders every section from the JSON on disk (``--check`` only compares); ``tests/test_pages.py`` checks that each
page's section is exactly what its JSON renders to, so a number typed into a page by hand fails the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Section:
    """One generated section: where it goes, what it is rendered from, and how."""

    name: str
    page: str
    data: str
    script: str
    render: Callable[[dict[str, Any]], str]

    def begin(self) -> str:
        return f"<!-- generated: {self.name} from {self.data} by {self.script}; do not edit -->"

    def end(self) -> str:
        return f"<!-- end generated: {self.name} -->"


SECTIONS: dict[str, Section] = {}


def section(name: str, page: str, data: str, script: str) -> Callable:
    """Register ``render(data) -> markdown`` as section ``name`` of ``page`` (names are unique)."""
    def wrap(fn: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
        if name in SECTIONS:
            raise ValueError(f"section {name!r} is already registered")
        SECTIONS[name] = Section(name, page, data, script, fn)
        return fn
    return wrap


def provenance() -> dict[str, Any]:
    """Machine, load, date and commit (with a dirty flag) of a measurement, stored with its numbers."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "load_average": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": torch.get_num_threads(),
            "date": str(date.today()), "commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def stamp(p: dict[str, Any]) -> str:
    """One sentence naming the machine, load, date and commit of a measurement."""
    commit = p["commit"] + (" with uncommitted changes" if p.get("dirty") else "")
    threads = f"; {p['torch_threads']} torch thread(s) per process" if "torch_threads" in p else ""
    return (f"{p['cpu']}, {p['cores']} cores, {p['gpu'] or 'no GPU'}; load average at the start "
            f"{', '.join(map(str, p['load_average']))}{threads}; {p['date']}, commit `{commit}`")


def _pattern(s: Section) -> re.Pattern:
    return re.compile(re.escape(s.begin()) + r"\n(.*?)" + re.escape(s.end()), re.S)


def current(s: Section) -> str | None:
    """The section's text as it is in its page (None when the page has no such section)."""
    m = _pattern(s).search((ROOT / s.page).read_text())
    return m.group(1) if m else None


def rendered(s: Section) -> str:
    """What the section's JSON renders to (ends with a newline)."""
    return s.render(json.loads((ROOT / s.data).read_text())).rstrip("\n") + "\n"


def render(names: list[str] | None = None) -> list[str]:
    """Write each named section (all whose JSON exists) into its page; return the names written."""
    _load_renderers()
    done = []
    for s in SECTIONS.values():
        if (names is not None and s.name not in names) or not (ROOT / s.data).is_file():
            continue
        page = ROOT / s.page
        text = page.read_text()
        if current(s) is None:
            raise SystemExit(f"{s.page}: no markers for section {s.name!r}; add the two lines\n{s.begin()}\n{s.end()}")
        replacement = f"{s.begin()}\n{rendered(s)}{s.end()}"
        page.write_text(_pattern(s).sub(lambda _m, r=replacement: r, text, count=1))
        done.append(s.name)
    return done


def mismatches() -> list[str]:
    """Sections whose page text is not what their JSON renders to (or whose JSON or markers are missing)."""
    _load_renderers()
    bad = []
    for s in SECTIONS.values():
        if not (ROOT / s.data).is_file():
            bad.append(f"{s.name}: {s.data} missing (run {s.script})")
        elif current(s) is None:
            bad.append(f"{s.name}: no markers in {s.page}")
        elif current(s) != rendered(s):
            bad.append(f"{s.name}: {s.page} differs from what {s.data} renders to (run python benchmarks/pages.py)")
    return bad


def _load_renderers() -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import page_sections  # noqa: F401  (registers the renderers)
        import page_sections_guides  # noqa: F401
        import page_sections_meta  # noqa: F401
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def main() -> None:
    parser = argparse.ArgumentParser(description="Re-render every generated page section from its JSON.")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a section differs")
    args = parser.parse_args()
    if args.check:
        bad = mismatches()
        print("\n".join(bad) or "every generated section matches its JSON")
        raise SystemExit(1 if bad else 0)
    print("rendered:", ", ".join(render()) or "nothing")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import pages as _registry  # the renderers register into the importable module, not into __main__
    _registry.main()
