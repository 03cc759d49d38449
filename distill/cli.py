"""``distill`` command line: thin wrappers that parse, call the library and turn user mistakes into exit code 2."""

from __future__ import annotations

import logging
import os
import pickle
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape

from distill.cache.manifest import atomic_write_text
from distill.registry import Registry

COMMANDS: Registry[Callable[[list[str]], int]] = Registry("command")
USAGE = """usage: distill COMMAND [ARGS]

Knowledge distillation and Born-Again Networks on PyTorch Lightning.

commands:
  run RECIPE.yaml [--out DIR] [--resume [--force]] [--print_config] [--KEY VALUE ...]
        train generation 0 and the born-again students of a recipe; e.g.
        distill run recipes/digits-ban.yaml --generations 1 --trainer.max_epochs 2 --kd.temperature 2
  inspect RUN   dark-knowledge inspection of a finished run (see `distill inspect --help`)
  meta RECIPE.yaml [--out DIR] [--resume] [--KEY VALUE ...]
        meta-learning (MAML, first-order MAML, ANIL) on N-way K-shot episodes (see `distill meta --help`)
  sweep RECIPE.yaml --key KEY (--values V1,V2,... | --low A --high B) [--order ascending --patience P]
        one recipe key over values, each trial a full run, on Optuna (see `distill sweep --help`)

`distill COMMAND --help` lists the options of a command (for run: every recipe key and its default)."""


RUN_HELP = """usage: distill run RECIPE.yaml [--out DIR] [--resume [--force]] [--print_config] [--KEY VALUE ...]

  --out DIR       run directory (default: runs/<recipe>-<timestamp>); must be new unless --resume
  --resume        continue the run in --out DIR: finished generations and valid caches are reused
  --force         with --resume: accept a recipe that differs from the run's config.yaml
  --print_config  print the fully resolved recipe and exit
  --KEY VALUE     override any recipe key below, e.g. --kd.alpha 0.5 --trainer.max_epochs 3

exit codes: 0 done, 1 training failed (non-finite loss), 2 bad input (recipe, data, cache, directory)
"""


# The run directory, handed to the processes Lightning's DDP launcher starts (they re-run the command line, and a
# default ``runs/<recipe>-<timestamp>`` would differ by the seconds in between).
RUN_DIR_ENV = "DISTILL_RUN_DIR"


class UsageError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def _fail(message: str) -> int:
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
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
    def parse(cls, argv: list[str]) -> RunRequest | int:
        """Pop the options from ``argv``; an exit code (after one error line) when ``--resume`` has no run."""
        args = list(argv)
        out = _pop_option(args, "--out", True)
        print_config = bool(_pop_option(args, "--print_config", False))
        resume, force = bool(_pop_option(args, "--resume", False)), bool(_pop_option(args, "--force", False))
        recipe = args.pop(0) if args and not args[0].startswith("-") else None
        if resume:
            if not out:
                return _fail("--resume needs --out RUN, the run directory to continue")
            if not (Path(out) / "config.yaml").is_file():
                return _fail(f"--resume: {out} is not a run directory (no config.yaml)")
            recipe = recipe or str(Path(out) / "config.yaml")
        return cls(recipe, args, out, print_config, resume, force)

    @classmethod
    def prepare(cls, argv: list[str], parser: Any, help_text: str, load: Callable[[str | None, list[str]], Any],
                dump: Callable[[Any], str]) -> tuple[RunRequest, Any, str] | int:
        """Help, options, the loaded recipe (``load(recipe, overrides)``) and its YAML (``dump``), or an exit code:
        0 after ``--help`` or ``--print_config``, 2 after one error line."""
        from distill.config import RecipeError

        if any(a in ("-h", "--help") for a in argv):
            print(help_text)
            parser.print_help()
            return 0
        request = cls.parse(argv)
        if isinstance(request, int):
            return request
        try:
            loaded = load(request.recipe, request.overrides)
        except RecipeError as e:
            return _fail(str(e))
        resolved = dump(loaded)
        if request.print_config:
            sys.stdout.write(resolved)
            return 0
        return request, loaded, resolved

    def check_run_dir(self, run_dir: Path, resolved: str, fresh_check: bool = True) -> int | None:
        """None when ``run_dir`` may be used: a resumed run's recipe is unchanged (or ``--force``), a fresh run's
        directory is empty or absent (checked only where ``fresh_check``: rank 0). Else an exit code after one line."""
        from distill.state import config_diff

        if self.resume:
            changed = config_diff((run_dir / "config.yaml").read_text(), resolved)
            if changed and not self.force:
                return _fail(f"the recipe differs from {run_dir}/config.yaml: {'; '.join(changed)} "
                             "(add --force to continue with the new values)")
        elif fresh_check and run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            return _fail(f"output directory {run_dir} exists and is not empty; choose another --out or add --resume")
        return None


@COMMANDS.register("run")
def run_command(argv: list[str]) -> int:
    """``distill run RECIPE [--out DIR] [--resume [--force]] [--print_config] [overrides]``."""
    from distill.config import build_parser, dump_config
    from distill.distributed import env_is_global_zero
    from distill.resolve import load_recipe

    parser = build_parser()
    prepared = RunRequest.prepare(argv, parser, RUN_HELP,
                                  lambda recipe, overrides: load_recipe(recipe, overrides, parser),
                                  lambda loaded: dump_config(loaded.cfg, parser))
    if isinstance(prepared, int):
        return prepared
    request, recipe_obj, resolved = prepared
    name = Path(request.recipe).stem if request.recipe else "recipe"
    run_dir = Path(request.out) if request.out else _default_run_dir(name)
    if request.resume:
        name = _recipe_name(run_dir, name)
    if (failed := request.check_run_dir(run_dir, resolved, fresh_check=env_is_global_zero())) is not None:
        return failed
    return _train(recipe_obj, run_dir, name, resolved)


@COMMANDS.register("inspect")
def inspect_command(argv: list[str]) -> int:
    """``distill inspect RUN [options]``: dark-knowledge inspection of a finished run."""
    from distill.analysis.command import inspect_main

    return inspect_main(argv)


@COMMANDS.register("meta")
def meta_command(argv: list[str]) -> int:
    """``distill meta RECIPE [options]``: meta-learning on episodes (MAML, FOMAML, ANIL)."""
    from distill.meta.command import meta_main

    return meta_main(argv)


@COMMANDS.register("sweep")
def sweep_command(argv: list[str]) -> int:
    """``distill sweep RECIPE --key KEY --values ... [options] [--KEY VALUE ...]``: see :mod:`distill.sweep`."""
    import argparse

    p = argparse.ArgumentParser(prog="distill sweep", description="Sweep one recipe key; each trial is a full "
                                "`distill run` into OUT/trials/; writes sweep.csv, sweep.png, best.yaml.",
                                epilog="Other --KEY VALUE arguments override the recipe in every trial. Running the "
                                "same command again resumes the study (finished trials are kept).")
    p.add_argument("recipe", help="the recipe YAML")
    p.add_argument("--key", required=True, help="dotted recipe key, e.g. backbone.init_args.prompt.length")
    p.add_argument("--values", help="comma-separated values (a list sweep, Optuna's grid sampler)")
    p.add_argument("--order", default="ascending", help="ascending (smallest first) or given (as written)")
    p.add_argument("--patience", type=int, help="stop after P values in a row without a better objective")
    p.add_argument("--low", type=float, help="continuous range start (TPE sampler)")
    p.add_argument("--high", type=float, help="continuous range end")
    p.add_argument("--log", action="store_true", help="sample the range on a log scale")
    p.add_argument("--trials", type=int, default=10, help="TPE trials for a continuous range (default 10)")
    p.add_argument("--metric", default="val", choices=("val", "test"),
                   help="objective: last generation's final val/acc (default; needs a validation split) or test acc")
    p.add_argument("--out", help="sweep directory (default: runs/sweep-<recipe>-<key>)")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    p.add_argument("--study", help="study name (default: sweep-<key>)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    try:
        args, overrides = p.parse_known_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from distill.config import RecipeError
    from distill.resolve import load_recipe
    from distill.sweep import SweepError, SweepSpec, key_override, parse_values, run_objective, run_sweep, write_outputs

    try:
        spec = SweepSpec(args.key, parse_values(args.values) if args.values else None, args.order, args.patience,
                         args.low, args.high, args.log, args.trials, args.seed)
        # every value (both ends of a range) must make a valid recipe before the first trial starts
        for value in spec.ordered() if spec.values is not None else (args.low, args.high):
            recipe = load_recipe(args.recipe, [*overrides, *key_override(args.recipe, overrides, args.key, value)])
        if args.metric == "val" and not float(recipe.cfg.data.get("val_fraction") or 0):
            raise SweepError("--metric val needs a validation split: set data.val_fraction (datasets that take it) "
                             "or sweep on --metric test")
    except (SweepError, RecipeError) as e:
        return _fail(str(e))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported below, as one line
    out = Path(args.out or Path("runs") / f"sweep-{Path(args.recipe).stem}-{args.key}")
    if out.exists() and not out.is_dir():
        return _fail(f"--out {out} exists and is not a directory")
    if args.storage:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(args.storage)
        except ArgumentError:
            return _fail(f"--storage {args.storage!r} is not a database URL (e.g. sqlite:///study.db, "
                         "postgresql://user@host/db)")
    objective = run_objective(args.recipe, overrides, args.key, args.metric, run_command)
    try:
        study = run_sweep(spec, objective, out, args.storage, args.study)
        best = write_outputs(study, args.key, out, f"{args.metric}/acc")
    except SweepError as e:
        return _fail(str(e))
    Console().print(f"best {args.key} = {best['value']} ({args.metric} acc {100 * best['objective']:.2f}%); "
                    f"{out}/sweep.csv, sweep.png, best.yaml")
    return 0


def _default_run_dir(name: str) -> Path:
    """``runs/<recipe>-<timestamp>``, or the directory rank 0 handed down to the DDP processes it launched."""
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 or int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        raise UsageError("give --out DIR when torchrun or srun starts the processes: each process would otherwise "
                         "pick its own timestamped run directory")
    return Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


def _recipe_name(run_dir: Path, default: str) -> str:
    path = run_dir / "recipe-name"
    return path.read_text().strip() if path.is_file() else default


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input (recipe, data, backbone, cache, checkpoint) rather than a bug."""
    from distill.arguments import ArgumentsError
    from distill.cache import CacheError
    from distill.config import RecipeError
    from distill.data.base import DataError
    from distill.models import BackboneError
    from distill.outputs import FeatureError
    from distill.registry import RegistryError

    return (RecipeError, CacheError, DataError, BackboneError, RegistryError, ArgumentsError, FeatureError,
            pickle.UnpicklingError)


def _train(recipe, run_dir: Path, name: str, resolved: str) -> int:
    from distill import distributed
    from distill.callbacks import NonFiniteLossError
    from distill.generations import BornAgainRun
    from distill.summary import summary_table

    zero = distributed.env_is_global_zero()  # under DDP only global rank 0 writes the run directory and prints
    console = Console(width=None if sys.stdout.isatty() else 120, quiet=not zero)
    for noise in (".*does not have many workers.*", ".*validation_step.*val_dataloader.*", ".*LeafSpec.*",
                  ".*module\\(s\\) in eval mode.*"):  # a prompted student's frozen base is in eval on purpose
        warnings.filterwarnings("ignore", noise)  # in-memory data needs no workers; no val split is deliberate
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # we print our own per-generation headers
    inherited = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)  # for the processes a DDP launch starts; restored below
    try:
        run = BornAgainRun(recipe.run, run_dir, name, console)
        run.preflight()  # data and backbones are checked before the run directory is touched
        if zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.yaml", resolved)
            atomic_write_text(run_dir / "recipe-name", name + "\n")
        summary = run.run()
        distributed.finish()  # under DDP: every rank is done before rank 0 exits
    except _user_errors() as e:
        return _fail(" ".join(str(e).split()))
    except NonFiniteLossError as e:
        _fail(f"{e}; the last good checkpoint is kept: lower optimizer.lr and rerun with --resume --force")
        return 1
    except OSError as e:  # disk full, read-only or missing directory: name the file
        return _fail(f"cannot write {e.filename or run_dir}: {e.strerror or e}")
    finally:
        if inherited is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = inherited
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
