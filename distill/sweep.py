"""``distill sweep``: one recipe key over a list of values (or a range), each trial a full ``distill run``, on Optuna.

Strategies:

* an ordered list, ``--order ascending --patience P``: shortest (smallest) value first; stop after ``P`` values in a
  row that do not beat the best validation accuracy so far (the notes' "search lengths starting with the
  shortest");
* a fixed list, ``--order given``: every value in the order written (``--patience`` still applies if set);
* a continuous key (``--low A --high B [--log] --trials N``): Optuna's TPE sampler.

Lists run as Optuna trials enqueued in order (:meth:`optuna.Study.enqueue_trial`), one value each.
The study lives in ``--storage`` (default ``sqlite:///OUT/study.db``): running the same command again resumes it --
finished trials are reused, a trial killed mid-run (no heartbeat for a minute) is marked failed and its run
directory continued with ``distill run --resume``; several machines can share one study through an RDB URL, and
``optuna-dashboard`` reads it.
Each trial is a ``distill run`` into ``OUT/trials/<key>=<value>`` (TPE: ``OUT/trials/trial-<n>``). The sweep writes
``sweep.csv``, ``sweep.png`` (validation accuracy against the value) and ``best.yaml`` (the best trial's recipe).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from distill.errors import UserError
from distill.io import atomic_write_bytes, atomic_write_json, atomic_writer

Objective = Callable[[Any, Path], dict[str, Any]]  # (value, trial run directory) -> {"objective": float, ...}
ORDERS = ("ascending", "given")


class SweepError(UserError, ValueError):
    """A sweep option that cannot work (one line naming it)."""


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


def trial_dir(out: Path, key: str, value: Any, number: int | None = None) -> Path:
    """``OUT/trials/<key>=<value>`` (list sweeps) or ``OUT/trials/trial-<n>`` (continuous)."""
    name = f"trial-{number:03d}" if number is not None else f"{key}={value}"
    return out / "trials" / name.replace("/", "_")


def storage_for(url: str, heartbeat: float = 20.0) -> optuna.storages.RDBStorage:
    """An RDB storage (SQLite, PostgreSQL, MySQL URL) whose running trials send a heartbeat every ``heartbeat``
    seconds: a trial silent for three heartbeats (its process was killed) is marked failed when a sweep (re)starts,
    while the live trials of other machines sharing the study keep beating and are left alone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
        return optuna.storages.RDBStorage(url, heartbeat_interval=max(1, int(heartbeat)),
                                          grace_period=max(1, int(3 * heartbeat)))


def _done(study: optuna.Study, key: str) -> dict[Any, optuna.trial.FrozenTrial]:
    return {t.params[key]: t for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if key in t.params}


def run_sweep(spec: SweepSpec, objective: Objective, out: Path, storage: str | None = None,
              study_name: str | None = None, heartbeat: float = 20.0) -> optuna.Study:
    """Run (or resume) the sweep; each trial calls ``objective(value, run_dir)``, which returns the trial's result.

    The study maximises ``result["objective"]``; the other entries are kept as trial attributes.
    """
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = study_name or f"sweep-{spec.key}"
    if spec.values is not None:
        # Every value is enqueued in order (below), so the sampler never chooses; GridSampler's own bookkeeping
        # would fail on enqueued trials (KeyError 'grid_id' once one grid point is left, Optuna 5).
        sampler = optuna.samplers.RandomSampler(seed=spec.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=spec.seed)
    study = optuna.create_study(study_name=name, storage=storage_for(storage, heartbeat), sampler=sampler,
                                direction="maximize", load_if_exists=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # trials of a killed sweep: run again

    def trial_objective(trial: optuna.Trial) -> float:
        if spec.values is not None:
            value = trial.suggest_categorical(spec.key, list(spec.values))
            where = trial_dir(out, spec.key, value)
        else:
            value = trial.suggest_float(spec.key, spec.low, spec.high, log=spec.log)
            where = trial_dir(out, spec.key, value, trial.number)
        result = objective(value, where)
        for k, v in result.items():
            trial.set_user_attr(k, v)
        trial.set_user_attr("run_dir", str(where))
        return float(result["objective"])

    if spec.values is None:
        left = spec.trials - len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        if left > 0:
            study.optimize(trial_objective, n_trials=left)
        return study
    best, since = -math.inf, 0
    for value in spec.ordered():
        done = _done(study, spec.key)
        if value not in done:
            study.enqueue_trial({spec.key: value})
            study.optimize(trial_objective, n_trials=1)
            done = _done(study, spec.key)
        score = done[value].value if value in done else -math.inf
        if score > best:
            best, since = score, 0
        else:
            since += 1
        if spec.patience is not None and since >= spec.patience:
            break
    return study


def results(study: optuna.Study, key: str) -> list[dict[str, Any]]:
    """The finished trials, in the order of their value: value, objective and the objective's extra results."""
    rows = [{"value": t.params[key], "objective": t.value, **t.user_attrs}
            for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) if key in t.params]
    return sorted(rows, key=lambda r: r["value"])


def write_outputs(study: optuna.Study, key: str, out: Path, metric: str) -> dict[str, Any]:
    """``sweep.csv``, ``sweep.png`` and ``best.yaml`` (a copy of the best trial's ``config.yaml``); the best row."""
    rows = results(study, key)
    if not rows:
        raise SweepError(f"no trial of {study.study_name} finished")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_writer(out / "sweep.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    numeric = all(isinstance(r["value"], (int, float)) for r in rows)
    xs = [r["value"] for r in rows] if numeric else list(range(len(rows)))
    ax.plot(xs, [100 * r["objective"] for r in rows], "o-")
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log", base=2)
    if not numeric:
        ax.set_xticks(xs, [str(r["value"]) for r in rows])
    ax.set_xlabel(key)
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_writer(out / "sweep.png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    best = max(rows, key=lambda r: r["objective"])
    config = Path(best["run_dir"]) / "config.yaml"
    if config.is_file():
        atomic_write_bytes(out / "best.yaml", config.read_bytes())
    atomic_write_json(out / "best.json", best, default=str)
    return best


def parse_values(text: str) -> tuple[Any, ...]:
    """``1,2,4,8`` -> (1, 2, 4, 8): each item read as YAML (numbers, true/false, strings)."""
    import yaml

    items = [s.strip() for s in text.split(",") if s.strip()]
    values = tuple(yaml.safe_load(s) for s in items)
    for v in values:
        if not isinstance(v, (int, float, str, bool)):
            raise SweepError(f"--values: {v!r} is not a number, string or boolean")
    return values


def metric_of(run_dir: Path, metric: str) -> float:
    """The trial's objective: the last generation's final ``val/acc`` (``metric: val``) or its test accuracy."""
    summary = json.loads((run_dir / "summary.json").read_text())
    last = summary["generations"][-1]
    if metric == "test":
        return float(last["test"]["acc"])
    log = run_dir / f"gen-{last['generation']}" / "logs" / "metrics.csv"
    values = []
    if log.is_file():
        with open(log) as f:
            values = [float(r["val/acc"]) for r in csv.DictReader(f) if r.get("val/acc")]
    if not values:
        raise SweepError(f"{run_dir}: no val/acc logged; give the data a validation split (e.g. --data.val_fraction "
                         "0.1 where the dataset takes it) or sweep on --metric test")
    return values[-1]


def key_override(recipe: str | None, overrides: Sequence[str], key: str, value: Any) -> list[str]:
    """The command-line arguments that set ``key`` to ``value``.

    A key inside a mapping-valued section (``backbone.init_args.prompt.length``, ``data.batch_size``) is written into
    that section as the recipe resolves it and the whole section passed as JSON, so its other entries stay and the
    value keeps its type; any other key is a plain ``--KEY VALUE``.
    """
    from distill.config import parse_recipe

    section, _, rest = key.partition(".")
    current = parse_recipe(recipe, list(overrides)).get(section) if rest else None
    if not isinstance(current, dict):
        return [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    updated = json.loads(json.dumps(current, default=str))
    node = updated
    *path, last = rest.split(".")
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SweepError(f"--key {key}: {part} is not a mapping in the recipe")
    node[last] = value
    return [f"--{section}", json.dumps(updated)]


def run_objective(recipe: str | None, overrides: Sequence[str], key: str, metric: str,
                  run: Callable[[list[str]], int]) -> Objective:
    """The objective of a real sweep: ``distill run RECIPE --out DIR OVERRIDES --KEY VALUE`` (resumed when the
    directory holds a killed run of it), scored by :func:`metric_of`. ``run`` is the ``distill run`` command: an
    exit code, or a :class:`~distill.errors.UserError`, which is raised again naming the trial."""

    def objective(value: Any, where: Path) -> dict[str, Any]:
        args = [*([recipe] if recipe else []), "--out", str(where), *overrides,
                *key_override(recipe, overrides, key, value)]
        resume = (where / "config.yaml").is_file()  # a killed run of this trial: continue it
        if not (where / "summary.json").is_file():  # (else finished before the sweep could record it)
            try:
                code = run([*args, "--resume", "--force"] if resume else args)
            except UserError as e:
                raise SweepError(f"trial {key}={value}: {e.one_line()}") from None
            if code:
                raise SweepError(f"trial {key}={value}: distill run {'--resume ' if resume else ''}exited {code}"
                                 + (f" (see {where})" if resume else ""))
        summary = json.loads((where / "summary.json").read_text())
        last = summary["generations"][-1]
        return {"objective": metric_of(where, metric), "test_acc": last["test"]["acc"],
                "train_seconds": sum(g["train_seconds"] for g in summary["generations"]),
                "trainable": (last.get("parameters") or {}).get("trainable")}

    return objective
