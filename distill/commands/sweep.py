"""``distill sweep RECIPE --key KEY ...``: one recipe key over values, each trial a full ``distill run`` (see
:mod:`distill.sweep`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from distill.commands.base import COMMANDS, register_command


def build_parser() -> argparse.ArgumentParser:
    """The ``distill sweep`` argument parser (the recipe's own ``--KEY VALUE`` overrides pass through it)."""
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
    return p


@register_command("sweep")
def sweep_command(argv: list[str]) -> int:
    """``distill sweep RECIPE --key KEY --values ... [options] [--KEY VALUE ...]``: every value is checked before
    the first trial; each trial runs the registered ``run`` command."""
    try:
        args, overrides = build_parser().parse_known_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from distill.resolve import construct_loss, load_recipe
    from distill.sweep import SweepError, SweepSpec, key_override, parse_values, run_objective, run_sweep, write_outputs

    spec = SweepSpec(args.key, parse_values(args.values) if args.values else None, args.order, args.patience,
                     args.low, args.high, args.log, args.trials, args.seed)
    # every value (both ends of a range) must make a valid recipe before the first trial starts
    for value in spec.ordered() if spec.values is not None else (args.low, args.high):
        recipe = load_recipe(args.recipe, [*overrides, *key_override(args.recipe, overrides, args.key, value)])
        for generation in recipe.specs:  # values only a loss's constructor refuses, too
            construct_loss(generation)
    if args.metric == "val" and not float(recipe.cfg.data.get("val_fraction") or 0):
        raise SweepError("--metric val needs a validation split: set data.val_fraction (datasets that take it) "
                         "or sweep on --metric test")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported below, as one line
    out = Path(args.out or Path("runs") / f"sweep-{Path(args.recipe).stem}-{args.key}")
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} exists and is not a directory")
    if args.storage:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(args.storage)
        except ArgumentError:
            raise SweepError(f"--storage {args.storage!r} is not a database URL (e.g. sqlite:///study.db, "
                             "postgresql://user@host/db)") from None
    objective = run_objective(args.recipe, overrides, args.key, args.metric, COMMANDS.get("run"))
    study = run_sweep(spec, objective, out, args.storage, args.study)
    best = write_outputs(study, args.key, out, f"{args.metric}/acc")
    Console().print(f"best {args.key} = {best['value']} ({args.metric} acc {100 * best['objective']:.2f}%); "
                    f"{out}/sweep.csv, sweep.png, best.yaml")
    return 0
