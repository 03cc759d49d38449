"""``distill sweep RECIPE --key KEY ...``: one recipe key over values, each trial a full ``distill run`` (see
:mod:`distill.sweep`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from distill.commands.base import COMMANDS, check_recipe_command, register_command


def build_parser() -> argparse.ArgumentParser:
    """The ``distill sweep`` argument parser (the recipe's own ``--KEY VALUE`` overrides pass through it)."""
    p = argparse.ArgumentParser(prog="distill sweep", description="Sweep one recipe key; each trial is a full "
                                "`distill run` into OUT/trials/; writes sweep.csv, sweep.png, best.yaml after every "
                                "trial.",
                                epilog="Other --KEY VALUE arguments override the recipe in every trial. Running the "
                                "same command again resumes the study (finished trials are kept; more --values may be "
                                "added). Exit codes: 0 every trial finished, 1 a trial of --values failed (the others "
                                "ran; sweep.csv gives its reason), 2 bad input.")
    p.add_argument("recipe", help="the recipe YAML")
    p.add_argument("--key", required=True, help="dotted recipe key, e.g. backbone.init_args.prompt.length")
    p.add_argument("--values", help="comma-separated values (a list sweep, each value an enqueued Optuna trial)")
    p.add_argument("--order", default="ascending", help="ascending (smallest first) or given (as written)")
    p.add_argument("--patience", type=int, help="stop after P values in a row without a better objective")
    p.add_argument("--low", type=float, help="continuous range start (TPE sampler)")
    p.add_argument("--high", type=float, help="continuous range end")
    p.add_argument("--log", action="store_true", help="sample the range on a log scale")
    p.add_argument("--trials", type=int, default=10, help="TPE trials for a continuous range (default 10)")
    p.add_argument("--metric", default="val", choices=("val", "test"),
                   help="objective: last generation's final val/acc (default; needs a validation split) or test acc")
    p.add_argument("--out", help="sweep directory (default: runs/sweep-<recipe>-<key>)")
    p.add_argument("--storage", help="Optuna storage: a database URL (default: sqlite:///OUT/study.db; "
                   "postgresql://user@host:port/db for several machines) or journal:PATH (a file, no server)")
    p.add_argument("--study", help="study name (default: sweep-<key>)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--retry-failed", action="store_true", help="run the trials that failed before again")
    p.add_argument("--force", action="store_true", help="OUT holds a study of another recipe, overrides, key, metric "
                   "or range: start a new study beside it (in OUT/<study>-<n>/) instead of refusing")
    return p


@register_command("sweep")
def sweep_command(argv: list[str]) -> int:
    """``distill sweep RECIPE --key KEY --values ... [options] [--KEY VALUE ...]``: every value is checked before
    the first trial; each trial runs the registered ``run`` command. Exit code 1 when a trial failed."""
    try:
        args, overrides = build_parser().parse_known_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    from distill.sweep import SweepSpec, open_study, run_study, write_outputs
    from distill.sweep_trial import parse_values, run_objective

    spec = SweepSpec(args.key, parse_values(args.values) if args.values else None, args.order, args.patience,
                     args.low, args.high, args.log, args.trials, args.seed)
    question = _check(args, overrides, spec)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is reported below, as one line
    out = Path(args.out or Path("runs") / f"sweep-{Path(args.recipe).stem}-{args.key}")
    study, where = open_study(spec, out, args.storage, args.study, question=question, force=args.force)
    metric = f"{args.metric}/acc"
    objective = run_objective(args.recipe, overrides, args.key, args.metric, COMMANDS.get("run"))
    waiting = WaitLine(Console(stderr=True, highlight=False, soft_wrap=True), study, args.key)
    run_study(spec, objective, study, where, args.retry_failed, lambda s: write_outputs(s, args.key, where, metric),
              waiting=waiting)
    return _report(study, args.key, where, args.metric, spec.values)


class WaitLine:
    """What a worker with nothing left to claim shows while other workers finish their trials (the ``waiting``
    callback of :func:`distill.sweep.run_study`): on a terminal, a live status line (rich's spinner, on stderr)
    naming each trial it waits on (number, value, worker) and the seconds waited, redrawn as they finish; elsewhere
    (a log file, a pipe), a plain line each time that set changes. Either way one line for each trial that finished
    (complete with its objective, failed with its reason, or given back by a worker that died)."""

    def __init__(self, console: Console, study: Any, key: str) -> None:
        self.console, self.study, self.key = console, study, key
        self.waited_on: dict[int, str] = {}  # trial number -> what it is, of the trials waited on now
        self.status: Status | None = None
        self.since = 0.0

    def __call__(self, running: list[Any]) -> None:
        """Show ``running`` (the trials waited on; [] once the wait is over)."""
        now = {t.number: f"#{t.number} {self.key}={t.user_attrs.get('value', '?')} on "
                         f"{t.user_attrs.get('worker', '?')}" for t in running}
        gone = sorted(self.waited_on.keys() - now.keys())
        if gone:
            trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}
            for number in gone:
                self.console.print(f"{escape(self.waited_on[number])}: {escape(self._outcome(trials.get(number)))}")
        changed, self.waited_on = now != self.waited_on, now
        if not now:
            if self.status is not None:
                self.status.stop()
                self.status = None
            return
        text = f"waiting for trials other workers are running: {'; '.join(now.values())}"
        if not self.console.is_terminal:
            if changed:
                self.console.print(escape(text))
            return
        if self.status is None:
            self.since = time.monotonic()
            self.status = self.console.status("")
            self.status.start()
        self.status.update(f"{escape(text)} ({time.monotonic() - self.since:.0f} s)")

    @staticmethod
    def _outcome(trial: Any) -> str:
        """How a trial that was running ended, in words."""
        from distill.sweep import COMPLETE, FAIL

        if trial is not None and trial.state == COMPLETE:
            return f"complete, objective {trial.value:.4f}"
        if trial is not None and trial.state == FAIL:
            reason = trial.user_attrs.get("reason")
            return f"failed: {reason}" if reason else "its worker stopped; the value runs again"
        return f"ended ({trial.state.name.lower() if trial is not None else 'gone'})"


def _check(args: argparse.Namespace, overrides: list[str], spec: Any) -> dict[str, Any]:
    """Every value (both ends of a range) makes a valid recipe, the options can work; the study's question.

    Raises:
        UserError: naming the value, key or option (before anything is written).
    """
    from distill.config import dump_config
    from distill.resolve import construct_loss, load_recipe
    from distill.sweep import SweepError
    from distill.sweep_trial import key_override

    check_recipe_command(args.recipe, "run")  # a sweep's trials are runs
    base = load_recipe(args.recipe, overrides)
    section, _, arg = args.key.partition(".init_args.")
    if section == "backbone" and arg:  # an argument the backbone does not take would be dropped or fail every trial
        from distill.models.factory import check_init_arg

        try:
            check_init_arg(base.cfg.backbone, arg.split(".")[0])
        except ValueError as e:
            raise SweepError(f"--key {args.key}: {e}") from None
    # values in the order written (a value of the wrong type gets the parser's error, not "not comparable")
    recipes = []
    for value in spec.values if spec.values is not None else (args.low, args.high):
        recipe = load_recipe(args.recipe, [*overrides, *key_override(args.recipe, overrides, args.key, value)])
        for generation in recipe.specs:  # values only a loss's constructor refuses, too
            construct_loss(generation)
        recipes.append((value, recipe))
    if spec.values is not None:
        spec.ordered()
    if args.metric == "val" and not float(base.cfg.data.get("val_fraction") or 0):
        raise SweepError("--metric val needs a validation split: set data.val_fraction (datasets that take it) "
                         "or sweep on --metric test")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise SweepError(f"--out {out} exists and is not a directory")
    if args.storage and args.storage.startswith("journal:"):
        journal = Path(args.storage.removeprefix("journal:"))
        if not journal.name or not journal.parent.is_dir():
            raise SweepError(f"--storage {args.storage}: the journal file's folder {journal.parent} does not exist")
    elif args.storage:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(args.storage)
        except ArgumentError:
            raise SweepError(f"--storage {args.storage!r} is not a database URL (e.g. sqlite:///study.db, "
                             "postgresql://user@host/db) nor journal:PATH") from None
    _preflight(recipes, args.key, base)
    return {**spec.question(dump_config(base.cfg)), "metric": args.metric}


def _report(study: Any, key: str, where: Path, metric: str, values: tuple[Any, ...] | None) -> int:
    """Write the outputs once more (every value the study holds), print the best value and every failed one of
    ``values`` (this command's ``--values``; None: a range, every trial); 1 when one of those failed. A failed value
    of an earlier command that this one no longer asks for stays in ``sweep.csv`` and is named in a note only."""
    from distill.sweep import results, write_outputs

    best = write_outputs(study, key, where, f"{metric}/acc")
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    failed = [r for r in results(study, key) if r["state"] == "failed"]
    asked = [r for r in failed if values is None or r["value"] in values]
    for row in asked:
        console.print(f"[bold red]error:[/] trial {escape(key)}={escape(str(row['value']))} failed: "
                      f"{escape(str(row['reason']))}")
    if len(asked) < len(failed):
        others = ", ".join(str(r["value"]) for r in failed if r not in asked)
        console.print(f"note: {escape(key)}={escape(others)} failed in an earlier command and is not in --values; "
                      "sweep.csv keeps its row")
    if best is None:
        console.print(f"[bold red]error:[/] no trial finished; {escape(str(where))}/sweep.csv lists the failures")
        return 1
    retry = f"; {len(asked)} trial(s) failed (add --retry-failed to run them again)" if asked else ""
    Console().print(f"best {key} = {best['value']} ({metric} acc {100 * best['objective']:.2f}%); "
                    f"{where}/sweep.csv, sweep.png, best.yaml{retry}")
    return 1 if asked else 0


def _preflight(recipes: list[tuple[Any, Any]], key: str, base: Any) -> None:
    """Each value's run checked as ``distill run`` checks it before training (its data, every generation's network
    built and run on one sample, the loss's features, the trainer settings), one data module shared while the values
    leave ``data`` alone: a value no trial could run (a prompt of 0 tokens, a backbone argument out of range) is
    refused in one line before the sweep's folder exists, not recorded as a failed trial. A refusal the recipe
    without the swept value (``base``) earns as well is the recipe's, and named without a value.

    Raises:
        UserError: the recipe's own refusal; SweepError: naming the key, the value and what its run refused.
    """
    import logging
    import tempfile

    from distill.errors import UserError
    from distill.generations import BornAgainRun, build_datamodule
    from distill.sweep import SweepError

    last: list[Any] = [None, None]  # the data section and its module, rebuilt when a value changes it (one at a
    # time: a module holds its whole dataset)

    def check(recipe: Any, nowhere: str) -> None:
        if last[1] is None or last[0] != recipe.run.data:
            last[:] = [recipe.run.data, build_datamodule(recipe.run.data)]
        BornAgainRun(recipe.run, Path(nowhere) / "run", "preflight", Console(quiet=True), dm=last[1]).preflight()

    lightning_log = logging.getLogger("lightning.pytorch")  # the trainer check's GPU/TPU lines: warnings only, as
    level = lightning_log.level  # in a run
    lightning_log.setLevel(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as nowhere:  # preflight writes nothing in the run directory it is given
            for value, recipe in recipes:
                try:
                    check(recipe, nowhere)
                except UserError as e:
                    try:  # the recipe without the value refused the same way: the recipe's fault, not the value's
                        check(base, nowhere)
                    except UserError as own:
                        if str(own) == str(e):
                            raise
                    raise SweepError(f"--key {key} = {value}: {e}") from None
    finally:
        lightning_log.setLevel(level)
