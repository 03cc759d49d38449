"""The checks a run makes before any training (:meth:`distill.generations.BornAgainRun.preflight`): each raises one
line (a :class:`~distill.errors.UserError`) naming what cannot work, before hours of earlier generations run.

Pure functions of the run's generation specs, its data module and the networks preflight built; they import nothing
of the loop, so the loop imports them.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from lightning.pytorch.callbacks import Callback
from torch import nn

from distill.cache.formats import build_format
from distill.cache.replay import CACHE_MODES, require_replay
from distill.config import RecipeError
from distill.data import DistillDataModule
from distill.losses import DistillLoss
from distill.models import check_output
from distill.outputs import check_features
from distill.spec import GenerationSpec
from distill.tasks import TASKS
from distill.user_logs import check_monitors

__all__ = ["check_cache_settings", "check_generation", "check_teacher_inputs", "same_inputs"]


def same_inputs(specs: Sequence[GenerationSpec], dm: DistillDataModule, spec: GenerationSpec) -> bool:
    """Whether generation ``spec`` and all its teachers read the same inputs (text: the same tokenizer)."""
    mine = dm.generation_inputs(spec)
    return all(dm.generation_inputs(specs[j]) == mine for j in spec.members)


def check_teacher_inputs(specs: Sequence[GenerationSpec], dm: DistillDataModule, spec: GenerationSpec) -> None:
    """Refuse a teacher served online that reads other inputs than its student (text: another tokenizer): it would
    be run on the student's batches. Through the cache (read by sample index) any serves."""
    if CACHE_MODES.get(spec.cache.mode).online and not same_inputs(specs, dm, spec):
        theirs = sorted({str(dm.generation_inputs(specs[j])) for j in spec.members})
        raise RecipeError(f"generation {spec.index} reads inputs of {dm.generation_inputs(spec)}, its teacher "
                          f"those of {', '.join(theirs)}: a teacher with another tokenizer cannot be served "
                          "online; use cache.mode clean (the cache is read by sample index)")


def check_generation(spec: GenerationSpec, dm: DistillDataModule, network: nn.Module, teacher: nn.Module | None,
                     loss: DistillLoss | None, callbacks: Sequence[Callback]) -> None:
    """What generation ``spec`` needs of its network, its teacher's (when both read the same inputs), its loss, the
    user's callbacks and its trainer settings, checked on one sample of ``dm`` (prepared for this generation)."""
    sample = dm.cache_set[0][0]
    check_output(network, sample, dm.num_classes, spec.label)
    TASKS.get(spec.task).check_network(spec, network)  # what the task itself needs of it, as a RecipeError
    if loss is not None and teacher is not None:  # the features its loss reads exist in both and fit it
        check_features(loss, network, teacher, sample.unsqueeze(0), f"kd.init_args.pairs (generation {spec.index}")
    if spec.load is None:  # a monitor the generation does not log every epoch
        check_monitors(callbacks, TASKS.get(spec.task).monitorable_metrics(dm.has_val), spec.index)
    try:  # Lightning validates accelerator/devices/strategy/precision when a Trainer is made
        trainer = L.Trainer(**{**spec.trainer_kwargs(), "logger": False, "enable_checkpointing": False,
                               "enable_progress_bar": False})
    except Exception as e:  # any rejection of the user's trainer settings, in one line
        raise RecipeError(f"trainer (generation {spec.index}): {type(e).__name__}: {e}") from None
    if spec.cache.embeddings and trainer.world_size > 1:
        raise RecipeError(f"cache.embeddings (generation {spec.index}) is built by one process for now; "
                          f"this trainer runs {trainer.world_size}: build the cache with trainer.devices 1")


def check_cache_settings(specs: Sequence[GenerationSpec], dm: DistillDataModule) -> None:
    """Fail when a ``cache`` section cannot work with the data (DataError / CacheError / RecipeError)."""
    for c in {spec.cache for spec in specs}:
        if CACHE_MODES.get(c.mode).replay:
            require_replay(dm)
        build_format(c.format, dm.num_classes, c.dtype, c.topk)
    for spec in specs:
        c, cached = spec.cache, not CACHE_MODES.get(spec.cache.mode).online
        if spec.members and cached and c.format == "topk" and c.topk < dm.num_classes \
                and spec.loss.cls.full_distribution:
            raise RecipeError(f"kd.variant {spec.kd.variant!r} reads the teacher's whole non-target distribution, "
                              f"which cache.format topk with topk={c.topk} < {dm.num_classes} classes does "
                              "not keep (use cache.format full, or topk equal to the class count)")
