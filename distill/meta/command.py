"""``distill meta RECIPE``: meta-train MAML / FOMAML / ANIL on episodes, meta-test, and score the baselines."""

from __future__ import annotations

import logging
import sys
import warnings
from datetime import datetime
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distill.commands.base import RECIPE_KEYS, RunRequest, register_command, writing_to
from distill.errors import UsageError

META_HELP = """usage: distill meta RECIPE.yaml [--out DIR] [--resume [--force]] [--print_config] [--KEY VALUE ...]

Meta-learning on N-way K-shot episodes (or sinusoid regression): MAML, first-order MAML, ANIL, Meta-SGD.

  --out DIR       run directory (default: runs/<recipe>-<timestamp>); must be new unless --resume
  --resume        continue the run in --out DIR from its last end-of-epoch checkpoint
  --force         with --resume: accept a recipe that differs from the run's config.yaml
  --print_config  print the fully resolved recipe and exit
  --KEY VALUE     override any recipe key below, e.g. --inner.steps 5 --episodes.shot 5

exit codes: 0 done, 2 bad input (recipe, data, directory)
"""
RECIPE_KEYS["meta"] = frozenset({"method", "split", "episodes", "inner", "network", "meta_lr", "baselines"})
# what --resume --force may change on a finished run: it is evaluated again, the meta-training is kept
REDONE_ON_A_FINISHED_RUN = ("baselines", "episodes.test_episodes", "inner.eval_steps")


def _table(results: dict) -> Table:
    table = Table(title="meta-test")
    for col in ("method", results["metric"], "95% CI", "s / iteration", "graph MiB"):
        table.add_column(col)
    t = results["test"]
    secs = results["seconds_per_meta_iteration"]
    table.add_row(results["method"], f"{t['mean']:.4f}", f"± {t['ci95']:.4f}", f"{secs:.3f}" if secs else "-",
                  f"{results['graph_mib_per_meta_iteration']:.1f}")
    for name, b in results.get("baselines", {}).items():
        table.add_row(name, f"{b['mean']:.4f}", f"± {b['ci95']:.4f}", f"{b['train_seconds_per_step']:.3f}", "-")
    return table


def _check_finished(run_dir: Path, resolved: str) -> None:
    """A finished run is only evaluated again: ``--force`` may change what that redoes, nothing it trained with.

    Raises:
        UsageError: naming the keys that would need the meta-training again.
    """
    from distill.state import config_diff

    changed = [c for c in config_diff((run_dir / "config.yaml").read_text(), resolved)
               if not c.startswith(REDONE_ON_A_FINISHED_RUN)]
    if changed:
        raise UsageError(f"{run_dir} is a finished run (results.json): {'; '.join(changed)} would need the "
                         f"meta-training again, which --resume does not redo; use a new --out (a finished run may "
                         f"change only {', '.join(REDONE_ON_A_FINISHED_RUN)})")


@register_command("meta")
def meta_main(argv: list[str]) -> int:
    """``distill meta RECIPE [options]`` (see :data:`META_HELP`): exit code 0; a user mistake raises a
    :class:`~distill.errors.UserError`, which the entry point prints as one line with exit code 2."""
    from distill.io import atomic_write_text
    from distill.meta.config import build_meta_parser, dump_meta_config, parse_meta_recipe
    from distill.meta.run import MetaRun

    parser = build_meta_parser()
    prepared = RunRequest.prepare(argv, parser, META_HELP, partial(parse_meta_recipe, parser=parser),
                                  partial(dump_meta_config, parser=parser), command="meta")
    if isinstance(prepared, int):
        return prepared
    request, cfg, resolved = prepared
    recipe = request.recipe
    run_dir = Path(request.out) if request.out else \
        Path("runs") / f"{Path(recipe or 'meta').stem}-{datetime.now():%Y%m%d-%H%M%S}"
    request.check_run_dir(run_dir, resolved)
    if request.resume and (run_dir / "results.json").is_file():
        _check_finished(run_dir, resolved)
    console = Console(width=None if sys.stdout.isatty() else 120)
    for noise in (".*does not have many workers.*", ".*LeafSpec.*", ".*smaller than the logging interval.*"):
        warnings.filterwarnings("ignore", noise)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    run = MetaRun(cfg, run_dir, console)
    with writing_to(run_dir):
        run.preflight()  # data and split are checked before the run directory is touched
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", resolved)
        results = run.run()
    console.print(_table(results))
    split = "" if cfg.data.get("name") == "sinusoid" else "splits.json, "
    console.print(f"run directory: {run_dir}  (results.json, {split}config.yaml, model.ckpt, logs/metrics.csv)")
    return 0
