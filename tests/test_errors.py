"""One family of user errors: every UserError ends as one line and exit code 2, a bug keeps its traceback.

Also the command plumbing's shape (no command imports another command or the entry point) and ``--print_config``,
which prints a recipe without opening what it names.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import pickle
import pkgutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli
from rich.console import Console

import distill
import distill.cli
from distill.commands.base import COMMANDS
from distill.errors import UnsafeCheckpointError, UserError
from distill.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = "first line\n   second\tpart  "
ONE_LINE = "error: first line second part"


def _all_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(distill.__path__, "distill.")]
    for name in names:
        importlib.import_module(name)
    return names


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _with_command(monkeypatch: pytest.MonkeyPatch, command) -> None:
    """Make ``command`` the only command main() knows, as ``distill boom`` (the real registry is left alone)."""
    registry = Registry("command")
    registry.register("boom")(command)
    monkeypatch.setattr(distill.cli, "COMMANDS", registry)


def _user_error_classes() -> list[type]:
    _all_modules()
    classes = sorted((c for c in _subclasses(UserError) if c.__module__.startswith("distill.")),
                     key=lambda c: f"{c.__module__}.{c.__qualname__}")
    return [UserError, *classes]


USER_ERRORS = _user_error_classes()


def test_every_module_s_user_errors_are_found() -> None:
    names = {c.__name__ for c in USER_ERRORS}
    # the classes the entry point used to list one by one, the one it forgot, and the ones added since
    assert {"RecipeError", "CacheError", "CacheMismatchError", "DataError", "DataNotFoundError", "BackboneError",
            "RegistryError", "ArgumentsError", "FeatureError", "BaseMismatchError", "SweepError", "InspectError",
            "UsageError", "UnsafeCheckpointError", "OutputError"} <= names


@pytest.mark.parametrize("error", USER_ERRORS, ids=lambda c: c.__name__)
def test_every_user_error_is_one_line_and_exit_2(error: type, monkeypatch, capsys) -> None:
    def boom(argv: list[str]) -> int:
        raise error(MESSAGE)

    _with_command(monkeypatch, boom)
    assert run_cli("boom") == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == ONE_LINE and captured.err.count("\n") == 1
    assert "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize("bug", [RuntimeError, ValueError, KeyError, FileNotFoundError, pickle.UnpicklingError])
def test_a_bug_is_not_turned_into_exit_2(bug: type, monkeypatch, capsys) -> None:
    """Exceptions outside the family propagate out of main(): the console script prints their traceback."""
    def boom(argv: list[str]) -> int:
        raise bug("a bug")

    _with_command(monkeypatch, boom)
    with pytest.raises(bug):
        distill.cli.main(["boom"])
    assert capsys.readouterr().err == ""


def test_unknown_command_is_a_user_error(capsys) -> None:
    assert run_cli("zzz") == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown command 'zzz' (known: export, inspect, meta, predict, run, sweep)"


def test_commands_import_the_plumbing_not_each_other_nor_the_entry_point() -> None:
    command_modules = {m.__name__ for m in distill.cli.COMMAND_MODULES}
    assert set(COMMANDS.names()) == {"run", "inspect", "meta", "sweep", "export", "predict"}
    assert {inspect.getmodule(COMMANDS.get(n)).__name__ for n in COMMANDS.names()} == command_modules
    for name in command_modules:
        tree = ast.parse(Path(sys.modules[name].__file__).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {f"{node.module}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                     and node.module for a in node.names}
        imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert not imported & ({"distill.cli"} | command_modules - {name}), name


def test_only_distill_io_renames_files() -> None:
    """The one atomic-write helper: no other module of the package renames or replaces a file."""
    offenders = []
    for path in sorted((ROOT / "distill").rglob("*.py")):
        if path == ROOT / "distill" / "io.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            if node.func.attr == "rename" or (owner, node.func.attr) in (("os", "replace"), ("shutil", "move")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_print_config_does_not_open_what_the_recipe_names(tmp_path, capsys) -> None:
    missing = tmp_path / "not-yet" / "model.ckpt"
    recipe = tmp_path / "later.yaml"
    recipe.write_text(f"data: {{name: digits}}\ngenerations: 1\nload: {{checkpoint: {missing}}}\n")
    assert run_cli("run", str(recipe), "--print_config") == 0
    out = capsys.readouterr().out
    assert f"checkpoint: {missing}" in out and "generations: 1" in out and "name: digits" in out
    run_dir = tmp_path / "run"
    assert run_cli("run", str(recipe), "--out", str(run_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: load.checkpoint: file not found: {missing}"
    assert not run_dir.exists()


class _Bomb:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if unpickled


def test_a_checkpoint_that_would_run_code_is_named_and_kept(tmp_path) -> None:
    from distill.callbacks import resumable_checkpoint
    from distill.prompts import load_base

    marker, last = tmp_path / "pwned", tmp_path / "last.ckpt"
    last.write_bytes(pickle.dumps({"x": _Bomb(marker)}))
    with pytest.raises(UnsafeCheckpointError, match=f"checkpoint {last} is refused"):
        resumable_checkpoint(last, Console(quiet=True))
    assert last.is_file() and not (tmp_path / "last.ckpt.damaged").exists()  # not moved aside as merely damaged
    with pytest.raises(UnsafeCheckpointError, match=f"checkpoint {last} is refused"):
        load_base("vit_tiny_patch16_224", {"img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 3,
                                           "num_heads": 2}, {"checkpoint": str(last)})
    assert not marker.exists()


BASE_ARGS = {"img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 3, "num_heads": 2}


def _save_base(path: Path, seed: int) -> None:
    """A distill-checkpoint-shaped base for a prompted student (its ``student.*`` tensors), from ``seed``."""
    import timm

    torch.manual_seed(seed)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=7, **BASE_ARGS)
    torch.save({"state_dict": {f"student.{k}": v for k, v in vit.state_dict().items()}}, path)


def test_resume_of_a_prompted_run_whose_base_changed_is_one_line(tmp_path, capsys) -> None:
    """BaseMismatchError on --resume: the base file was replaced after the run was killed mid-generation."""
    base = tmp_path / "base.ckpt"
    _save_base(base, seed=0)
    backbone = {"name": "prompted_vit", "init_args": {"base_args": BASE_ARGS, "source": {"checkpoint": str(base)},
                                                      "prompt": {"kind": "deep", "length": 2}}}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", "recipes/digits-ban.yaml", "--out", str(out),
                           "--task", "prompted", "--backbone", json.dumps(backbone), "--generations", "0",
                           "--trainer.max_epochs", "2", "--data.train_subset", "200",
                           "--trainer.enable_progress_bar", "false"], cwd=ROOT,
                          env={**os.environ, "DISTILL_FAULT": "fit:0:epoch:0"}, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "gen-0" / "checkpoints" / "last.ckpt").is_file()
    _save_base(base, seed=1)  # same path, same shapes, other weights: the recipe is unchanged
    capsys.readouterr()
    assert run_cli("run", "--out", str(out), "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: the resumed checkpoint was trained on base") and "sha256" in err, err
    assert "refusing to load it" in err
