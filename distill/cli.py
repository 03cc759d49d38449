"""``distill`` command line: thin wrappers that parse, call the library and turn user mistakes into exit code 2."""

from __future__ import annotations

import logging
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Callable

from rich.console import Console

from distill.registry import Registry

COMMANDS: Registry[Callable[[list[str]], int]] = Registry("command")
USAGE = """usage: distill COMMAND [ARGS]

Knowledge distillation and Born-Again Networks on PyTorch Lightning.

commands:
  run RECIPE.yaml [--out DIR] [--print_config] [--KEY VALUE ...]
        train generation 0 and the born-again students of a recipe; e.g.
        distill run recipes/digits-ban.yaml --generations 1 --trainer.max_epochs 2 --kd.temperature 2
  inspect RUN   dark-knowledge inspection of a finished run (see `distill inspect --help`)

`distill COMMAND --help` lists the options of a command (for run: every recipe key and its default)."""


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def _fail(message: str) -> int:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return 2


def _pop_option(args: list[str], name: str, takes_value: bool) -> str | bool | None:
    """Remove ``--name [value]`` / ``--name=value`` from ``args`` and return its value (True for a flag)."""
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


@COMMANDS.register("run")
def run_command(argv: list[str]) -> int:
    """``distill run RECIPE [--out DIR] [--print_config] [overrides]``."""
    from distill.config import RecipeError, build_parser, dump_config, parse_recipe

    parser = build_parser()
    if any(a in ("-h", "--help") for a in argv):
        parser.print_help()
        return 0
    args = list(argv)
    out = _pop_option(args, "--out", True)
    print_config = _pop_option(args, "--print_config", False)
    recipe = args.pop(0) if args and not args[0].startswith("-") else None
    try:
        cfg = parse_recipe(recipe, args, parser)
    except RecipeError as e:
        return _fail(str(e))
    if print_config:
        sys.stdout.write(dump_config(cfg, parser))
        return 0
    name = Path(recipe).stem if recipe else "recipe"
    run_dir = Path(out) if out else Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    if run_dir.exists() and any(run_dir.iterdir()):
        return _fail(f"output directory {run_dir} exists and is not empty; choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(dump_config(cfg, parser))
    except OSError as e:
        return _fail(f"cannot write the run directory {run_dir}: {e.strerror}")
    return _train(cfg, run_dir, name)


def _train(cfg, run_dir: Path, name: str) -> int:
    from distill.cache import CacheError
    from distill.generations import BornAgainRun
    from distill.summary import summary_table

    console = Console(width=None if sys.stdout.isatty() else 120)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")  # in-memory data needs no workers
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # we print our own per-generation headers
    try:
        summary = BornAgainRun(cfg, run_dir, name, console).run()
    except (CacheError, FileNotFoundError) as e:
        return _fail(str(e))
    console.print(summary_table(summary))
    console.print(f"run directory: {run_dir}  (summary.json, config.yaml, gen-*/, cache/gen-*/)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``distill`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        return _fail(COMMANDS.unknown_message(argv[0], COMMANDS.names()))
    try:
        return COMMANDS.get(argv[0])(argv[1:])
    except UsageError as e:
        return _fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
