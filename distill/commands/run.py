"""``distill run RECIPE``: generation 0 and the born-again students of a recipe, into a run directory."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from distill.commands.base import RECIPE_KEYS, RunRequest, fail, register_command, writing_to
from distill.errors import UsageError

if TYPE_CHECKING:
    from distill.resolve import Recipe

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
RECIPE_KEYS["run"] = frozenset({"generations", "task", "backbone", "load", "kd", "cache", "speed", "optimizer",
                                "per_generation"})


@register_command("run")
def run_command(argv: list[str]) -> int:
    """``distill run RECIPE [--out DIR] [--resume [--force]] [--print_config] [overrides]``.

    The recipe is parsed and, with ``--print_config``, printed before anything it names is opened; only a run
    resolves its generations (which checks the files, names and values they use).
    """
    from distill.config import build_parser, dump_config, parse_recipe
    from distill.distributed import env_is_global_zero
    from distill.resolve import Recipe, resolve_run

    parser = build_parser()
    prepared = RunRequest.prepare(argv, parser, RUN_HELP, partial(parse_recipe, parser=parser),
                                  partial(dump_config, parser=parser))
    if isinstance(prepared, int):
        return prepared
    request, cfg, resolved = prepared
    recipe = Recipe(cfg, resolve_run(cfg, parser))
    name = Path(request.recipe).stem if request.recipe else "recipe"
    run_dir = Path(request.out) if request.out else _default_run_dir(name)
    if request.resume:
        name = _recipe_name(run_dir, name)
    request.check_run_dir(run_dir, resolved, fresh_check=env_is_global_zero())
    return _train(recipe, run_dir, name, resolved)


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


def _train(recipe: Recipe, run_dir: Path, name: str, resolved: str) -> int:
    """Preflight, write the recipe, train every generation; print the summary. Exit code 0, or 1 when a loss became
    non-finite (one line); a user mistake raises."""
    from distill import distributed
    from distill.callbacks import NonFiniteLossError
    from distill.generations import BornAgainRun
    from distill.io import atomic_write_text
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
        with writing_to(run_dir):
            run = BornAgainRun(recipe.run, run_dir, name, console)
            run.preflight()  # data and backbones are checked before the run directory is touched
            if zero:
                run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(run_dir / "config.yaml", resolved)
                atomic_write_text(run_dir / "recipe-name", name + "\n")
            summary = run.run()
            distributed.finish()  # under DDP: every rank is done before rank 0 exits
    except NonFiniteLossError as e:
        fail(f"{e}; the last good checkpoint is kept: lower optimizer.lr and rerun with --resume --force")
        return 1
    finally:
        if inherited is None:
            os.environ.pop(RUN_DIR_ENV, None)
        else:
            os.environ[RUN_DIR_ENV] = inherited
    console.print(summary_table(summary))
    console.print(f"run directory: {run_dir}  (summary.json, config.yaml, gen-*/, cache/gen-*/)")
    return 0
