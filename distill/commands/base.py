"""Plumbing every ``distill`` command shares and none owns: the registry, the failure path, the run request.

A command is a function ``argv -> exit code`` registered with :func:`register_command` (as timm's
``@register_model``: importing its module registers it, nothing else happens at import). A user mistake anywhere
below a command raises a :class:`~distill.errors.UserError`; the entry point (:func:`distill.cli.main`) catches it
once and prints it with :func:`fail`: one line, exit code 2. Commands return other codes themselves (``1`` for a
training that failed).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape

from distill.errors import UsageError, UserError
from distill.registry import Registry
from distill.state import config_diff

__all__ = ["COMMANDS", "RECIPE_KEYS", "Command", "OutputError", "RunRequest", "check_recipe_command", "fail",
           "pop_option", "register_command", "writing_to"]

Command = Callable[[list[str]], int]
COMMANDS: Registry[Command] = Registry("command")
# command -> the top-level recipe keys only its recipes have (filled where each command is registered)
RECIPE_KEYS: dict[str, frozenset[str]] = {}


def register_command(name: str) -> Callable[[Command], Command]:
    """Decorator that registers ``fn(argv) -> exit code`` as ``distill NAME``.

    Example:
        >>> @register_command("hello")
        ... def hello(argv: list[str]) -> int:
        ...     return 0
    """
    return COMMANDS.register(name)


def fail(message: str) -> int:
    """Print ``error: MESSAGE`` as one line on stderr (rich markup in it is escaped) and return exit code 2."""
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return 2


def pop_option(args: list[str], name: str, takes_value: bool) -> str | bool | None:
    """Remove ``--name [value]`` / ``--name=value`` from ``args`` and return its value (True for a flag).

    Raises:
        UsageError: ``--name`` takes a value and none follows.
    """
    for i, arg in enumerate(args):
        if arg == name:
            del args[i]
            if not takes_value:
                return True
            if i >= len(args):
                raise UsageError(f"{name} needs a value")
            return args.pop(i)
        if takes_value and arg.startswith(name + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


def check_recipe_command(recipe: str | None, command: str, run_dir: str | None = None) -> None:
    """Refuse a recipe (or, with ``run_dir``, the run directory whose ``config.yaml`` it is) made for another
    command than ``command`` (``run`` for a sweep, whose trials are runs), naming that command; anything unreadable is
    left to the recipe parser.

    Raises:
        UsageError: "RUN was made by `distill meta`; use ...", "R.yaml is a `distill run` recipe ...".
    """
    import yaml

    try:
        keys = set(yaml.safe_load(Path(recipe).read_text()) or {}) if recipe else set()
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError):
        return
    if keys & RECIPE_KEYS.get(command, frozenset()):
        return
    for other, marks in RECIPE_KEYS.items():
        if other != command and keys & marks:
            if run_dir is not None:
                raise UsageError(f"{run_dir} was made by `distill {other}`; use `distill {other} --out {run_dir} "
                                 "--resume`")
            raise UsageError(f"{recipe} is a `distill {other}` recipe (it sets {', '.join(sorted(keys & marks))}), "
                             f"not a `distill {command}` one: use `distill {other} {recipe}`")


class CommandParser(argparse.ArgumentParser):
    """argparse that raises :class:`~distill.errors.UsageError` instead of printing usage and exiting, so a mistake
    in a command's options is one ``error:`` line (exit 2) like every other user error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def checked(kind: Callable[[str], Any], ok: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    """An argparse ``type`` that converts with ``kind`` and accepts only values where ``ok`` holds; otherwise the
    error names ``rule`` (e.g. ``checked(int, lambda v: v >= 1, "an integer >= 1")``)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
        return value

    return parse


class OutputError(UserError, OSError):
    """A run's output cannot be written (disk full, read-only or missing directory): the message names the file."""


@contextlib.contextmanager
def writing_to(run_dir: Path) -> Iterator[None]:
    """Report an ``OSError`` inside the block as :class:`OutputError` ("cannot write FILE: reason", the file
    defaulting to ``run_dir``); a :class:`~distill.errors.UserError` that is also an ``OSError`` (a missing data
    file) passes unchanged."""
    try:
        yield
    except UserError:
        raise
    except OSError as e:
        raise OutputError(f"cannot write {e.filename or run_dir}: {e.strerror or e}") from None


@dataclass
class RunRequest:
    """What ``distill run`` and ``distill meta`` take besides recipe overrides: where, and whether to resume.

    Attributes:
        recipe: the recipe path (a resumed run's own ``config.yaml`` when none is given).
        overrides: the remaining ``--KEY VALUE`` arguments.
        out: ``--out``; print_config, resume, force: the flags.
    """

    recipe: str | None
    overrides: list[str]
    out: str | None
    print_config: bool
    resume: bool
    force: bool

    @classmethod
    def parse(cls, argv: list[str]) -> RunRequest:
        """Pop the options from ``argv``.

        Raises:
            UsageError: ``--resume`` without ``--out``, or with an ``--out`` that is not a run directory.
        """
        args = list(argv)
        out = pop_option(args, "--out", True)
        print_config = bool(pop_option(args, "--print_config", False))
        resume, force = bool(pop_option(args, "--resume", False)), bool(pop_option(args, "--force", False))
        recipe = args.pop(0) if args and not args[0].startswith("-") else None
        if resume:
            if not out:
                raise UsageError("--resume needs --out RUN, the run directory to continue")
            if not (Path(out) / "config.yaml").is_file():
                raise UsageError(f"--resume: {out} is not a run directory (no config.yaml)")
            recipe = recipe or str(Path(out) / "config.yaml")
        return cls(recipe, args, out, print_config, resume, force)

    @classmethod
    def prepare(cls, argv: list[str], parser: Any, help_text: str, parse: Callable[[str | None, list[str]], Any],
                dump: Callable[[Any], str], command: str = "run") -> tuple[RunRequest, Any, str] | int:
        """Help, options, the parsed recipe (``parse(recipe, overrides)``) and its YAML (``dump``); or exit code 0
        after ``--help`` or ``--print_config``.

        ``--print_config`` prints the parsed recipe as it is, before anything it names is opened (a
        ``load.checkpoint`` that does not exist yet, a dataset): resolving it is the caller's next step, as
        LightningCLI prints without instantiating. A recipe or run directory of another command than ``command`` is
        named as such.

        Raises:
            UserError: a bad option or recipe (one line).
        """
        if any(a in ("-h", "--help") for a in argv):
            print(help_text)
            parser.print_help()
            return 0
        request = cls.parse(argv)
        check_recipe_command(request.recipe, command, request.out if request.resume else None)
        parsed = parse(request.recipe, request.overrides)
        resolved = dump(parsed)
        if request.print_config:
            sys.stdout.write(resolved)
            return 0
        return request, parsed, resolved

    def check_run_dir(self, run_dir: Path, resolved: str, fresh_check: bool = True) -> None:
        """Check that ``run_dir`` may be used: a resumed run's recipe is unchanged (or ``--force``), a fresh run's
        directory is empty or absent (checked only where ``fresh_check``: rank 0).

        Raises:
            UsageError: naming the changed keys, or the directory that is in use.
        """
        if self.resume:
            changed = config_diff((run_dir / "config.yaml").read_text(), resolved)
            if changed and not self.force:
                raise UsageError(f"the recipe differs from {run_dir}/config.yaml: {'; '.join(changed)} "
                                 "(add --force to continue with the new values)")
        elif fresh_check and run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise UsageError(f"output directory {run_dir} exists and is not empty; choose another --out or add "
                             "--resume")
