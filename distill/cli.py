"""``distill`` command line: the usage text and the entry point; the commands live in their own modules.

Each command module registers its command into :data:`~distill.commands.base.COMMANDS` when imported
(:func:`~distill.commands.base.register_command`); :data:`COMMAND_MODULES` lists them, so a new command is a new
module added there, and :func:`main` turns every :class:`~distill.errors.UserError` into one line and exit code 2.
"""

from __future__ import annotations

import sys

from distill.analysis import command as inspect_command
from distill.commands import run as run_command
from distill.commands import sweep as sweep_command
from distill.commands.base import COMMANDS, fail
from distill.errors import UserError
from distill.export import command as export_commands
from distill.meta import command as meta_command

#: The modules whose import registers the commands (``distill run``, ``inspect``, ``meta``, ``sweep``, ``export``,
#: ``predict``).
COMMAND_MODULES = (run_command, inspect_command, meta_command, sweep_command, export_commands)

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
  export RUN --out DIR [--format timm|onnx|torchscript] [--generation K|ensemble]
        a generation (or the ensemble) as a timm folder, ONNX or TorchScript, checked, with a model card
  predict SOURCE INPUTS... [--top-k K] [--out FILE.csv|.jsonl]
        classify image files with a run or an exported folder (see `distill predict --help`)

`distill COMMAND --help` lists the options of a command (for run: every recipe key and its default)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``distill`` console script: the command's exit code, or 2 after one ``error:`` line for a
    user mistake (a :class:`~distill.errors.UserError`, from the command line to the data). Any other exception is a
    bug and keeps its traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    try:
        return COMMANDS.get(argv[0])(argv[1:])
    except UserError as e:
        return fail(e.one_line())


if __name__ == "__main__":
    sys.exit(main())
