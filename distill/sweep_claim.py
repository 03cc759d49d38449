"""How sweep workers share one study: who a worker is, how it claims a trial, how it shows it is alive, and how the
trial of a worker that died is given back (the sweep around them is :mod:`distill.sweep`).

A trial is claimed through the storage, never by looking first and acting after: a WAITING trial becomes RUNNING
with :meth:`~optuna.storages.BaseStorage.set_trial_state_values`, which PostgreSQL (a row lock) and the journal
storage (a file lock) grant to exactly one caller, as :meth:`optuna.Study.ask` does; SQLite, whose row locks lock
nothing, with the claims taken in turn under a lock file beside the database (:func:`claim_lock`). The claiming
worker writes its id on the trial (``worker``: host, ``--out`` and a slot) and a heartbeat (a system attribute, the
time) every ``heartbeat`` seconds while the trial runs; a RUNNING trial whose heartbeat is older than three beats is
marked failed by whichever worker sees it (its value is claimed again). A worker restarted with the same command
gets the same id back and continues the trial it owned instead of waiting for the grace to pass.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna

TrialState = optuna.trial.TrialState
RUNNING, WAITING = TrialState.RUNNING, TrialState.WAITING
BEAT = "distill:heartbeat"


@contextlib.contextmanager
def worker_id(out: Path) -> Iterator[str]:
    """This process's worker id, ``HOST:OUT#K``, held for the duration: ``K`` is the lowest slot whose lock file
    (``OUT/.workers/HOST-K.lock``) no live process holds, so two workers sharing one ``--out`` on one host get two
    ids, and a worker restarted after a kill gets its old one back (the kernel drops a dead process's lock)."""
    host = socket.gethostname()
    folder = out / ".workers"
    folder.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        f = open(folder / f"{host}-{slot}.lock", "a")  # noqa: SIM115 - held open while the worker runs
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            slot += 1
            continue
        break
    try:
        yield f"{host}:{out.resolve()}#{slot}"
    finally:
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The study's storage (Optuna keeps it as ``_storage``; claiming needs its trial-state primitive)."""
    return study._storage


def _rdb(storage: optuna.storages.BaseStorage) -> optuna.storages.RDBStorage | None:
    """The RDB storage under ``storage``: a study loaded or created from an :class:`~optuna.storages.RDBStorage` keeps
    it wrapped in Optuna's trial cache (``_CachedStorage``, whose backend is ``_backend``); None for other storages."""
    if isinstance(storage, optuna.storages._CachedStorage):
        storage = storage._backend
    return storage if isinstance(storage, optuna.storages.RDBStorage) else None


def claim_lock(storage: optuna.storages.BaseStorage) -> Path | None:
    """The lock file a claim in this storage is taken under: ``DB.claim-lock`` beside a SQLite file, whose ``SELECT
    ... FOR UPDATE`` locks nothing (two processes could both read a trial WAITING and both switch it to RUNNING;
    SQLite's database is local to one machine, where ``flock`` works). None for PostgreSQL (a row lock), the journal
    (a file lock) and in-memory SQLite (one process)."""
    rdb = _rdb(storage)
    url = rdb.engine.url if rdb is not None else None
    if url is None or url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(f"{url.database}.claim-lock")


@contextlib.contextmanager
def _exclusive(storage: optuna.storages.BaseStorage) -> Iterator[None]:
    """Hold :func:`claim_lock` (when the storage needs one) around a claim."""
    lock = claim_lock(storage)
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def claim_waiting(study: optuna.Study, worker: str) -> optuna.Trial | None:
    """Claim one WAITING trial (lowest number first) for ``worker``: the storage hands each to one caller only.
    None when no trial is waiting."""
    storage = storage_of(study)
    with _exclusive(storage):
        for t in study.get_trials(deepcopy=False, states=(WAITING,)):
            try:
                if not storage.set_trial_state_values(t._trial_id, state=RUNNING):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            break
        else:
            return None
    return own(study, t._trial_id, worker)


def own(study: optuna.Study, trial_id: int, worker: str) -> optuna.Trial:
    """Write ``worker`` and a first heartbeat on a RUNNING trial; the trial to run."""
    storage = storage_of(study)
    storage.set_trial_user_attr(trial_id, "worker", worker)
    storage.set_trial_system_attr(trial_id, BEAT, time.time())
    return optuna.Trial(study, trial_id)


def owned(study: optuna.Study, worker: str) -> optuna.Trial | None:
    """A RUNNING trial this worker id claimed in an earlier life (a worker killed and restarted with the same
    command), to continue; None when there is none."""
    for t in study.get_trials(deepcopy=False, states=(RUNNING,)):
        if t.user_attrs.get("worker") == worker:
            return own(study, t._trial_id, worker)
    return None


def fail_stale(study: optuna.Study, heartbeat: float) -> list[int]:
    """Mark failed (without a reason: killed) every RUNNING trial whose last heartbeat (or start) is older than
    three heartbeats; the numbers of the trials failed. Clocks of the machines sharing a study must agree to within
    the grace."""
    grace, now, failed = 3 * heartbeat, time.time(), []
    storage = storage_of(study)
    for t in study.get_trials(deepcopy=False, states=(RUNNING,)):
        last = t.system_attrs.get(BEAT) or (t.datetime_start.timestamp() if t.datetime_start else now)
        if now - float(last) > grace:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                failed.append(t.number)
    return failed


@contextlib.contextmanager
def beating(study: optuna.Study, trial_id: int, heartbeat: float) -> Iterator[None]:
    """Write the trial's heartbeat every ``heartbeat`` seconds while the body runs (a thread; it stops when the
    trial is finished, by this worker or by another that found it stale, and outlives a write the storage refuses
    once)."""
    storage, stop = storage_of(study), threading.Event()

    def beat() -> None:
        while not stop.wait(heartbeat):
            try:
                storage.set_trial_system_attr(trial_id, BEAT, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                return
            except (optuna.exceptions.StorageInternalError, OSError):
                continue  # a beat the storage could not take now (SQLite busy, a dropped connection): the next one
                # counts, and the trial is failed only after three silent beats, not after one lost write

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

