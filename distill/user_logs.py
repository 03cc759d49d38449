"""The user's own loggers and callbacks (``trainer.logger``, ``trainer.callbacks``), and what the run tells them.

Lightning's loggers see what a module logs while it trains (``train/*``, ``val/*``). The numbers that decide a
generation are measured after training, outside any trainer: :func:`report` hands them to the same loggers (test
accuracy, NLL and ECE, the ensemble's accuracy and NLL, the training and cache build times), so ``metrics.json`` and
the user's TensorBoard, CSV, MLflow, ... hold the same numbers; :func:`log_recipe` gives every logger the
generation's recipe as its hyper-parameters (TensorBoard's HParams tab), with no placeholder ``hp_metric``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger

from distill.arguments import ArgumentsError, build_object
from distill.config import RecipeError
from distill.resolve import CALLBACK_MODULES, LOGGER_MODULES
from distill.spec import GenerationSpec, RunSpec, thaw

__all__ = ["check_monitors", "log_recipe", "recipe_params", "report", "scalars", "user_objects"]


def user_objects(spec: GenerationSpec, gen_dir: str) -> tuple[list[Logger], list[Callback]]:
    """Generation ``spec.index``'s own instances of the user's loggers and callbacks.

    A logger's ``save_dir`` defaults to ``gen_dir`` (``gen-k/``).
    """
    try:
        loggers = [build_object(e, "trainer.logger", LOGGER_MODULES, {"save_dir": gen_dir})
                   for e in thaw(spec.loggers)]
        callbacks = [build_object(e, "trainer.callbacks", CALLBACK_MODULES) for e in thaw(spec.callbacks)]
    except ArgumentsError as e:
        raise RecipeError(str(e)) from None
    return loggers, callbacks


def check_monitors(callbacks: Iterable[Callback], logged: frozenset[str] | None, generation: int) -> None:
    """Refuse, before training, an ``EarlyStopping`` or ``ModelCheckpoint`` of ``trainer.callbacks`` whose
    ``monitor`` names a metric the generation does not log every epoch (Lightning would stop the run with a traceback
    at the end of an epoch, after the run directory exists). ``logged`` is what the task logs per epoch (its
    :meth:`~distill.tasks.base.Task.monitorable_metrics`); None accepts any name.
    """
    if logged is None:
        return
    for callback in callbacks:
        if isinstance(callback, EarlyStopping | ModelCheckpoint) and callback.monitor is not None \
                and callback.monitor not in logged:
            raise RecipeError(f"trainer.callbacks (generation {generation}): {type(callback).__name__} monitors "
                              f"{callback.monitor!r}, which this generation does not log every epoch; it can monitor "
                              f"{', '.join(sorted(logged))}")


def recipe_params(run: RunSpec, spec: GenerationSpec) -> dict[str, Any]:
    """Generation ``spec.index``'s recipe as plain nested values: run seed, data, and the generation's resolved
    settings (per-generation overrides applied, the loss with its complete arguments)."""
    def plain(config: Any) -> dict[str, Any]:
        return {f.name: thaw(getattr(config, f.name)) for f in dataclasses.fields(config)}

    return {"seed": run.seed, "data": thaw(run.data), "generation": spec.index, "generation_seed": spec.seed,
            "task": spec.task, "backbone": spec.label, "teacher": spec.teacher_label or "labels",
            "source": spec.load.describe() if spec.load else "trained",
            "loss": {"name": spec.loss.name, **thaw(spec.loss.kwargs)}, "kd": plain(spec.kd),
            "cache": plain(spec.cache), "optimizer": plain(spec.optimizer), "speed": plain(run.speed),
            "trainer": thaw(spec.trainer)}


def log_recipe(loggers: Iterable[Logger], params: Mapping[str, Any]) -> None:
    """Give each logger ``params`` as its hyper-parameters, before training.

    Not a TensorBoardLogger: hyper-parameters without metrics make it write ``hp_metric = -1`` (unless
    ``default_hp_metric: false``); it gets them with the generation's real metrics in :func:`report` instead.
    """
    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(dict(params))


def scalars(metrics: Mapping[str, Any], ensemble: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The numbers of a generation's ``metrics.json`` (and of the ensemble of generations 0..k) as logger scalars:
    ``test/acc``, ``test/nll``, ``test/ece`` (``test/top5``), ``train_set/acc`` and ``train_set/nll`` (the
    un-augmented training set), ``ensemble/test_acc``, ``ensemble/test_nll``, ``time/train_seconds`` and
    ``time/cache_seconds`` (when the generation built a cache)."""
    out = {f"test/{name}": float(v) for name, v in metrics["test"].items()}
    out.update({f"train_set/{name}": float(v) for name, v in metrics["train"].items()})
    out.update({f"ensemble/test_{name}": float(v) for name, v in (ensemble or {}).get("test", {}).items()})
    out["time/train_seconds"] = float(metrics["train_seconds"])
    if metrics.get("cache_seconds") is not None:
        out["time/cache_seconds"] = float(metrics["cache_seconds"])
    return out


def report(loggers: Iterable[Logger], values: Mapping[str, float], step: int, params: Mapping[str, Any]) -> None:
    """Log ``values`` at ``step`` to each logger and write them out (``save`` and ``finalize``: the run may end
    next, and a logger that Lightning already finalized after ``fit`` reopens its files to take them).

    TensorBoard's HParams tab shows only the metrics written together with the hyper-parameters, so a
    TensorBoardLogger gets ``params`` again with ``values`` as their metrics (its one API that takes both).
    """
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(dict(params), metrics=dict(values), step=step)
        else:
            logger.log_metrics(dict(values), step)
        logger.save()
        logger.finalize("success")
