"""What a generation trains: a registered *task* (:class:`~distill.tasks.base.Task`), a LightningModule class the loop
builds from a generation's spec.

The contract (the class methods the loop calls) is :mod:`distill.tasks.base`; importing this package registers the
project's tasks, ``born_again`` (:mod:`~distill.tasks.born_again`), ``prompted`` (:mod:`~distill.tasks.prompted`) and
``prompted_lm`` (:mod:`~distill.tasks.prompted_lm`).
A new task is one file that registers a :class:`~distill.tasks.base.Task` subclass (see ``born_again.py``).
"""

from distill.tasks import born_again, prompted, prompted_lm  # noqa: F401  (register the three tasks)
from distill.tasks.base import TASKS, Task, TaskContext, parameter_counts

__all__ = ["TASKS", "Task", "TaskContext", "parameter_counts"]
