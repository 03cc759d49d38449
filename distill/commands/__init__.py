"""The ``distill`` subcommands and their shared plumbing.

:mod:`distill.commands.base` holds what every command uses and none owns: the command registry
(:data:`~distill.commands.base.COMMANDS`, filled by :func:`~distill.commands.base.register_command`), the failure
path (:func:`~distill.commands.base.fail`), option popping and the run request of ``run`` / ``meta``. The command
modules -- :mod:`distill.commands.run`, :mod:`distill.commands.sweep`, :mod:`distill.analysis.command` (``inspect``)
and :mod:`distill.meta.command` (``meta``) -- each register their command when imported and import only the
plumbing, never each other nor :mod:`distill.cli`. This package's ``__init__`` imports nothing.
"""
