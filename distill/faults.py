"""Fault injection for crash-recovery tests: ``DISTILL_FAULT=<point>`` makes the process SIGKILL itself there.

Points (k = generation): ``fit:k:step:S`` (after training step S, mid-epoch), ``fit:k:epoch:E`` (after epoch E's
checkpoint), ``fitted:k`` (fit finished and marked in the run state, metrics not written), ``trained:k`` (checkpoint
and metrics written, cache not built), ``cache:k:batch:B`` (mid cache build, just after batch B's rows were written to
the array: the writer stores a batch when the next one arrives, so this fires while batch B + 1 is being predicted),
``cached:k`` (cache complete, next generation not started), ``meta:step:S`` / ``meta:epoch:E`` (``distill meta``).
Unset in normal use; reading an environment variable is the only cost.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "DISTILL_FAULT"


def fault_point(point: str) -> None:
    """Kill this process with SIGKILL (no cleanup, like a power cut) when ``$DISTILL_FAULT == point``."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
