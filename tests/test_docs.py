"""Docs stay true: every `distill` command shown in README.md and docs/ runs, and the CLI reference is current.

Commands that train on the embedded digits data for at most 3 epochs run for real; longer ones are checked with
``--print_config`` (the recipe and every override parse and validate); ``--resume`` commands run against a copy of
a finished run; ``distill inspect`` commands run against a finished digits run.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import run_cli

from benchmarks.cli_reference import COLUMNS, DATA, help_texts
from distill.commands.base import RunRequest
from distill.resolve import load_recipe

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```bash\n(.*?)```", re.S)
CHEAP = ("digits-ban.yaml", "digits-kd-loaded.yaml")  # recipes on the embedded digits data: run for real


def _commands() -> list[tuple[str, str]]:
    found = []
    for path in DOC_FILES:
        for block in FENCE.findall(path.read_text()):
            for line in block.splitlines():
                if "distill " in line and not line.lstrip().startswith("#"):
                    found.append((path.name, line.strip()))
    return found


COMMANDS = _commands()


def test_docs_show_commands():
    assert len(COMMANDS) >= 8


def _split(line: str) -> tuple[Path, list[str]]:
    """Drop `pip install ... &&`, apply `cd DIR &&`, return (cwd, argv after `distill`)."""
    cwd = ROOT
    for part in [p.strip() for p in line.split("&&")]:
        words = shlex.split(part)
        if words[0] == "cd":
            cwd = (cwd / words[1]).resolve()
        elif words[0] == "distill":
            return cwd, words[1:]
    raise AssertionError(f"no distill command in {line!r}")


def _replace_out(argv: list[str], out: Path) -> list[str]:
    argv = list(argv)
    if "--out" in argv:
        argv[argv.index("--out") + 1] = str(out)
    return argv


def _digits_images(folder: Path) -> Path:
    """A few digits as 8x8 grey PNG files (intensities 0..16 saved as 0..255), the inputs of documented predicts."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir(exist_ok=True)
    for i, image in enumerate(load_digits().images[:6]):
        Image.fromarray((image * 255 / 16).round().astype("uint8"), mode="L").save(folder / f"{i}.png")
    return folder


def _epochs(argv: list[str]) -> int | None:
    return int(argv[argv.index("--trainer.max_epochs") + 1]) if "--trainer.max_epochs" in argv else None


@pytest.mark.parametrize("where,line", COMMANDS, ids=[f"{w}:{i}" for i, (w, _) in enumerate(COMMANDS)])
def test_documented_command_runs(where, line, tmp_path, tiny_run, monkeypatch):
    cwd, argv = _split(line)
    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(cwd))
    if argv[:1] == ["meta"]:  # meta runs are tested in test_meta.py; here the recipe and overrides must parse
        argv = _replace_out(argv, tmp_path / "meta") + ([] if "--help" in argv else ["--print_config"])
    elif argv[:1] == ["inspect"]:
        argv = ["inspect", str(tiny_run), *argv[2:]]
        argv = _replace_out(argv, tmp_path / "inspect")
    elif argv[:1] == ["sweep"]:
        argv = _replace_out(argv, tmp_path / "sweep")
    elif argv[:1] in (["export"], ["predict"]):  # against the finished digits run; predict on digits image files
        argv = [argv[0], str(tiny_run), *argv[2:]]
        if argv[0] == "predict":
            n = next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))
            argv = [*argv[:2], str(_digits_images(tmp_path / "digits")), *argv[n:]]
        suffix = Path(argv[argv.index("--out") + 1]).suffix if "--out" in argv else ""
        argv = _replace_out(argv, tmp_path / f"{argv[0]}{suffix}")
    elif "--resume" in argv:
        run = tmp_path / "run"
        shutil.copytree(tiny_run, run)
        argv = _replace_out(argv, run)
    elif argv[:1] == ["run"] and "--help" not in argv:
        recipe = cwd / argv[1] if len(argv) > 1 and argv[1].endswith(".yaml") else None
        if recipe is not None and "\nload:" in recipe.read_text():  # a teacher from an earlier run: the tiny one
            argv = [*argv, "--load", json.dumps({"checkpoint": str(tiny_run / "gen-0" / "model.ckpt")})]
        cheap = any(name in " ".join(argv) for name in CHEAP) and (_epochs(argv) or 99) <= 3
        if "--out" not in argv:  # not runs/<recipe>-<timestamp> in the checkout: two runs may start in one second
            argv = [*argv, "--out", ""]
        argv = _replace_out(argv, tmp_path / "run") + ([] if cheap else ["--print_config"])
    assert run_cli(*argv) == 0, f"{where}: {line}"
    if argv[:1] == ["run"] and "--print_config" in argv:  # printing opens nothing: every generation resolves too
        request = RunRequest.parse(argv[1:])
        load_recipe(request.recipe, request.overrides)


def _normalise(text: str) -> str:
    """typing caches Union[int, float] and Union[float, int] as one object, printed in whichever order a process
    created first; sort the members so the comparison does not depend on import order."""
    return re.sub(r"Union\[([^\[\]]*)\]", lambda m: "Union[" + ", ".join(sorted(m.group(1).split(", "))) + "]", text)


def test_cli_reference_is_current():
    """docs/data/cli.json (docs/cli.md's sections are rendered from it; tests/test_pages.py checks that) holds what the
    parsers print now."""
    recorded = json.loads((ROOT / DATA).read_text())
    assert recorded["columns"] == COLUMNS
    assert {k: _normalise(v) for k, v in recorded["help"].items()} == {
        k: _normalise(v) for k, v in help_texts().items()}, "run: python -m benchmarks.cli_reference"
