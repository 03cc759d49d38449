"""``distill sweep``: one recipe key over a list of values (or a range), each trial a full ``distill run``, on Optuna.

Strategies:

* an ordered list, ``--order ascending --patience P``: shortest (smallest) value first; stop after ``P`` values in a
  row that do not beat the best validation accuracy so far (the notes' "search lengths starting with the
  shortest");
* a fixed list, ``--order given``: every value in the order written (``--patience`` still applies if set);
* a continuous key (``--low A --high B [--log] --trials N``): Optuna's TPE sampler.

A sweep is a study that outlives its trials. It lives in ``--storage`` (default ``sqlite:///OUT/study.db``; a
PostgreSQL URL or ``journal:PATH`` for several machines) and records the question it answers (the resolved recipe,
the key, the metric, the range) and every value list it was given; running it again with another question is refused
naming the difference (``force``: a new study beside it, in ``OUT/<study>/``).

Any number of workers (the same command, on one machine or many) share a study: the values are enqueued as WAITING
trials (the value a user attribute, so a later, longer list never meets Optuna's fixed categorical choices) and each
worker claims one through the storage and runs it (:mod:`distill.sweep_claim`), so each value runs once. A trial that
fails (:class:`TrialFailed`: the run exited non-zero, the objective is not finite) is recorded as failed with its
reason and the sweep goes on; it is tried again only with ``retry_failed``. A trial whose worker was killed is
continued by that worker restarted with the same command (``distill run --resume``), or failed after three silent
heartbeats and claimed again by any worker. Each trial is a run into ``OUT/trials/<key>=<value>`` (one live trial per
value, so workers sharing one ``OUT`` never meet in a directory; TPE: ``OUT/trials/trial-<n>``). ``sweep.csv``
(every value, complete or failed with its reason, the host and directory it ran in), ``sweep.png``, ``best.yaml``
(the best trial's recipe, kept on the trial) and ``best.json`` are written from the study, so every worker writes the
same complete outputs once nothing is left running.
"""

from __future__ import annotations

import contextlib
import csv
import math
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from distill.io import atomic_write_bytes, atomic_write_json, atomic_writer
from distill.state import config_diff
from distill.sweep_claim import beating, claim_waiting, fail_stale, own, owned, worker_id
from distill.sweep_plot import plot_sweep
from distill.sweep_storage import SweepError, storage_for

Objective = Callable[[Any, Path], dict[str, Any]]  # (value, trial run directory) -> {"objective": float, ...}
AfterTrial = Callable[[optuna.Study], None]
# the trials other workers are running, while this worker waits for them; called with [] once the wait is over
Waiting = Callable[[list[optuna.trial.FrozenTrial]], None]
ORDERS = ("ascending", "given")
TrialState = optuna.trial.TrialState
COMPLETE, FAIL, RUNNING, WAITING = TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING


class TrialFailed(Exception):
    """A trial ran and failed (its run exited non-zero, its objective is not finite): recorded with this reason as a
    failed trial, and the sweep goes on."""


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep varies and how.

    Attributes:
        key: the dotted recipe key (``backbone.init_args.prompt.length``, ``kd.temperature``...).
        values: the list of values (None for a continuous range).
        order: ``ascending`` (values sorted, smallest first) or ``given``.
        patience: stop after this many values without improvement (None: try every value).
        low, high, log, trials: the continuous range and its number of TPE trials.
        seed: sampler seed.
    """

    key: str
    values: tuple[Any, ...] | None = None
    order: str = "ascending"
    patience: int | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    trials: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.order not in ORDERS:
            raise SweepError(f"--order must be one of {', '.join(ORDERS)}, got {self.order!r}")
        if (self.values is None) == (self.low is None or self.high is None):
            raise SweepError("give either --values V1,V2,... or --low A --high B (a continuous range)")
        if self.values is not None and not self.values:
            raise SweepError("--values is empty")
        if self.patience is not None and self.patience < 1:
            raise SweepError(f"--patience must be >= 1, got {self.patience}")
        if self.values is None and not (self.low < self.high and (not self.log or self.low > 0)):
            raise SweepError(f"--low {self.low} --high {self.high}: need low < high (and low > 0 with --log)")

    def ordered(self) -> list[Any]:
        """The values in the order they are tried."""
        if self.order == "ascending":
            try:
                return sorted(self.values)
            except TypeError:
                raise SweepError(f"--order ascending needs comparable values, got {list(self.values)}") from None
        return list(self.values)

    def question(self, config: str = "") -> dict[str, Any]:
        """What the study answers (a value list may grow; anything here may not): ``config`` is the resolved recipe
        with every override, before the swept key is set."""
        space = "values" if self.values is not None else [self.low, self.high, "log" if self.log else "linear"]
        return {"key": self.key, "space": space, "config": config}


def trial_dir(out: Path, key: str, value: Any, number: int | None = None) -> Path:
    """``OUT/trials/<key>=<value>`` (list sweeps) or ``OUT/trials/trial-<n>`` (continuous)."""
    name = f"trial-{number:03d}" if number is not None else f"{key}={value}"
    return out / "trials" / name.replace("/", "_")


def question_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two studies' questions, as ``key: old -> new`` strings (recipe keys by name)."""
    changed = [f"--{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
               if k != "config" and old.get(k) != new.get(k)]
    return changed + config_diff(old.get("config") or "", new.get("config") or "")


def open_study(spec: SweepSpec, out: Path, storage: str | None = None, study_name: str | None = None,
               question: dict[str, Any] | None = None, force: bool = False) -> tuple[optuna.Study, Path]:
    """The study in ``storage`` that answers ``question`` (created when there is none) and the directory its trials
    and outputs go to: ``out`` for the first study, ``out/<name>`` for one ``force`` started beside it.

    Raises:
        SweepError: the storage holds a study of another question and ``force`` is not set (names the difference).
    """
    rdb = storage_for(storage) if storage else None  # a server that cannot be reached: before any folder
    out.mkdir(parents=True, exist_ok=True)
    rdb = rdb or storage_for(f"sqlite:///{(out / 'study.db').resolve()}")
    question = question or spec.question()
    base = study_name or f"sweep-{spec.key}"
    existing = set(optuna.get_all_study_names(rdb))
    sampler = (optuna.samplers.RandomSampler(seed=spec.seed) if spec.values is not None  # values are enqueued
               else optuna.samplers.TPESampler(seed=spec.seed))
    name, seen, changed = base, base, []
    for n in range(1, len(existing) + 2):
        name = base if n == 1 else f"{base}-{n}"
        if name not in existing:
            break
        seen = name
        study = optuna.load_study(study_name=name, storage=rdb, sampler=sampler)
        changed = question_diff(study.user_attrs.get("question", question), question)
        if not changed:
            return _asked(study, spec, question), out if name == base else out / name
    if changed and not force:
        raise SweepError(f"{out} holds the study {seen!r} of another command: {'; '.join(changed)}; run the same "
                         "command as before, or add --force to start a new study beside it")
    study = optuna.create_study(study_name=name, storage=rdb, sampler=sampler, direction="maximize",
                                load_if_exists=True)  # another worker started at the same moment may create it too
    study = _asked(study, spec, question)
    if question_diff(study.user_attrs["question"], question):
        raise SweepError(f"another command created the study {name!r} at the same moment: run it again")
    return study, out if name == base else out / name


def _asked(study: optuna.Study, spec: SweepSpec, question: dict[str, Any]) -> optuna.Study:
    """Record the question (once) and this invocation's value list (or trial count) among the ones the study was
    given."""
    if "question" not in study.user_attrs:
        study.set_user_attr("question", question)
    asked = {"values": list(spec.values) if spec.values is not None else None, "order": spec.order,
             "patience": spec.patience, "trials": spec.trials if spec.values is None else None}
    history = study.user_attrs.get("asked", [])
    if not history or history[-1] != asked:
        study.set_user_attr("asked", [*history, asked])
    return study


def value_of(trial: optuna.trial.FrozenTrial, key: str) -> Any:
    """The value a trial tried (a user attribute; a parameter in studies of earlier versions)."""
    return trial.user_attrs.get("value", trial.params.get(key))


def outcomes(study: optuna.Study, key: str) -> dict[Any, optuna.trial.FrozenTrial]:
    """Each value's outcome: its complete trial, else its latest failed one. A trial killed mid-run (failed
    without a reason) is no outcome: the value runs again."""
    found: dict[Any, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False, states=(COMPLETE, FAIL)):
        value = value_of(t, key)
        if value is None or (t.state == FAIL and "reason" not in t.user_attrs):
            continue
        if value not in found or found[value].state != COMPLETE:
            found[value] = t
    return found


def run_sweep(spec: SweepSpec, objective: Objective, out: Path, storage: str | None = None,
              study_name: str | None = None, heartbeat: float = 20.0, *, question: dict[str, Any] | None = None,
              force: bool = False, retry_failed: bool = False, after_trial: AfterTrial | None = None) -> optuna.Study:
    """Run (or resume) the sweep (:func:`open_study`, :func:`run_study`)."""
    study, where = open_study(spec, out, storage, study_name, question, force)
    return run_study(spec, objective, study, where, retry_failed, after_trial, heartbeat)


def run_study(spec: SweepSpec, objective: Objective, study: optuna.Study, out: Path, retry_failed: bool = False,
              after_trial: AfterTrial | None = None, heartbeat: float = 20.0,
              waiting: Waiting | None = None) -> optuna.Study:
    """Run the trials the study still needs, as one of any number of workers sharing it; each calls
    ``objective(value, run_dir)``, which returns the trial's result (the study maximises ``result["objective"]``,
    the other entries are kept as trial attributes) or raises :class:`TrialFailed`. ``after_trial(study)`` runs
    after every trial, failed ones too.

    The worker claims trials through the storage (:mod:`distill.sweep_claim`): first a trial it owned before a
    restart, then a WAITING one; when none waits it enqueues the values still needed (all of them; with
    ``patience``, the next one only, and none once the finished values read in order from the first have had
    ``patience`` in a row without improvement) or, for a range, asks a new TPE trial while the study holds fewer
    than ``spec.trials``. A trial whose value another worker holds under a lower trial number is pruned unrun (two
    workers enqueued it at once). With nothing left to claim the worker waits for the trials others are running
    (``waiting(running)`` each second, ``waiting([])`` once the wait is over; a dead worker's trial is failed after
    the grace and claimed again), then returns: every worker returns with the same, finished study.
    """
    retry = {v for v, t in outcomes(study, spec.key).items() if t.state == FAIL} if retry_failed else set()
    waited = False
    with worker_id(out) as worker:
        while True:
            trial = owned(study, worker)
            if trial is None:
                fail_stale(study, heartbeat)
                trial = claim_waiting(study, worker) or _new_trial(spec, study, worker, retry)
            running = study.get_trials(deepcopy=False, states=(RUNNING,)) if trial is None else []
            if waiting is not None and (running or waited):
                waiting(running)  # [] once the wait is over: a trial to run (a dead worker's), or none left
            waited = bool(running)
            if trial is None and not running:
                return study
            if trial is None:
                time.sleep(min(1.0, heartbeat))
                continue
            if _surplus(spec, study, trial):
                continue
            _run_trial(spec, objective, study, trial, out, heartbeat)
            if after_trial is not None:
                after_trial(study)


def _new_trial(spec: SweepSpec, study: optuna.Study, worker: str, retry: set[Any]) -> optuna.Trial | None:
    """Enqueue the values still needed and claim one, or ask a new TPE trial; None when the study needs none."""
    if spec.values is None:
        counted = [t for t in study.get_trials(deepcopy=False) if _counts(t)]
        return own(study, study.ask()._trial_id, worker) if len(counted) < spec.trials else None
    busy = {value_of(t, spec.key) for t in study.get_trials(deepcopy=False, states=(WAITING, RUNNING))}
    found = outcomes(study, spec.key)
    todo, best, since, prefix = [], -math.inf, 0, True
    for value in spec.ordered():
        trial = found.get(value)
        done = trial is not None and not (trial.state == FAIL and value in retry)
        if done and prefix:  # the finished values read in order from the first: patience reads these
            score = trial.value if trial.state == COMPLETE else -math.inf
            best, since = (score, 0) if score > best else (best, since + 1)
            if spec.patience is not None and since >= spec.patience:
                return None
        if done:
            continue
        prefix = False
        if value not in busy:
            todo.append(value)
    for value in todo[:1] if spec.patience is not None else todo:
        study.enqueue_trial({}, user_attrs={"value": value})
        retry.discard(value)
    return claim_waiting(study, worker) if todo else None


def _counts(trial: optuna.trial.FrozenTrial) -> bool:
    """A TPE trial that counts towards ``--trials``: finished (complete or failed with a reason), running, waiting."""
    return trial.state in (COMPLETE, RUNNING, WAITING) or (trial.state == FAIL and "reason" in trial.user_attrs)


def _surplus(spec: SweepSpec, study: optuna.Study, trial: optuna.Trial) -> bool:
    """Prune ``trial`` unrun when another trial already has its value (a lower-numbered waiting, running or complete
    one: two workers enqueued the value at once) or, for a range, when it is past ``spec.trials`` (two workers
    asked the last one at once). True when pruned."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
    if spec.values is None:
        surplus = sum(map(_counts, trials)) >= spec.trials
    else:
        value = trial.user_attrs.get("value")
        surplus = any(value_of(t, spec.key) == value and t.state in (WAITING, RUNNING, COMPLETE) for t in trials)
    if surplus:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            study.tell(trial, state=TrialState.PRUNED)
    return surplus


def _run_trial(spec: SweepSpec, objective: Objective, study: optuna.Study, trial: optuna.Trial, out: Path,
               heartbeat: float) -> None:
    """Run one claimed trial and record its outcome (a trial another worker failed meanwhile as stale is left)."""
    if spec.values is not None:
        value = trial.user_attrs["value"]  # the value this trial claimed when it was enqueued
        where = trial_dir(out, spec.key, value)  # one live trial per value: never two runs in one directory
    else:
        value = trial.suggest_float(spec.key, spec.low, spec.high, log=spec.log)
        trial.set_user_attr("value", value)
        where = trial_dir(out, spec.key, value, trial.number)
    trial.set_user_attr("run_dir", str(where.resolve()))  # where it ran, whatever the folder this worker started in
    trial.set_user_attr("host", socket.gethostname())
    with beating(study, trial._trial_id, heartbeat), contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        try:
            result = objective(value, where)
            score = float(result["objective"])
            if not math.isfinite(score):
                raise TrialFailed(f"the objective is {score}")
        except TrialFailed as e:
            trial.set_user_attr("reason", str(e))
            study.tell(trial, state=FAIL)
            return
        except BaseException:
            study.tell(trial, state=FAIL)  # interrupted: no reason, the value runs again
            raise
        for k, v in result.items():
            trial.set_user_attr(k, v)
        study.tell(trial, score)


def results(study: optuna.Study, key: str) -> list[dict[str, Any]]:
    """Every value's outcome (:func:`outcomes`) in the order of the values: value, state (``complete`` or
    ``failed``), objective (None when failed), the reason a trial failed and the objective's extra results."""
    rows = [{"value": value, "state": "complete" if t.state == COMPLETE else "failed", "objective": t.value,
             **{k: v for k, v in t.user_attrs.items() if k not in ("value", "config")}}
            for value, t in outcomes(study, key).items()]
    return sorted(rows, key=lambda r: (isinstance(r["value"], str), r["value"] if not isinstance(r["value"], str)
                                       else 0, str(r["value"])))


def write_outputs(study: optuna.Study, key: str, out: Path, metric: str) -> dict[str, Any] | None:
    """``sweep.csv`` (every value), ``sweep.png``, ``best.yaml`` (a copy of the best trial's ``config.yaml``) and
    ``best.json`` from the trials finished so far; the best row (None while none is complete)."""
    rows = results(study, key)
    if not rows:
        return None
    columns = list(dict.fromkeys(["value", "state", "objective", *(k for r in rows for k in r)]))
    out.mkdir(parents=True, exist_ok=True)
    with atomic_writer(out / "sweep.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    complete = [r for r in rows if r["state"] == "complete"]
    if not complete:
        return None
    plot_sweep(complete, [r["value"] for r in rows if r["state"] == "failed"], key, out / "sweep.png", metric)
    best = max(complete, key=lambda r: r["objective"])
    config = outcomes(study, key)[best["value"]].user_attrs.get("config")  # kept on the trial: any worker has it
    if config is None and (Path(best["run_dir"]) / "config.yaml").is_file():  # studies of earlier versions
        config = (Path(best["run_dir"]) / "config.yaml").read_text()
    if config is not None:
        atomic_write_bytes(out / "best.yaml", config.encode())
    atomic_write_json(out / "best.json", best, default=str)
    return best
