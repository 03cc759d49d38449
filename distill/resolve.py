"""Resolve a parsed recipe into a frozen :class:`~distill.spec.RunSpec`: one checked
:class:`~distill.spec.GenerationSpec` per generation, with its loss resolved once into a
:class:`~distill.spec.LossSpec` (the class and every constructor argument, defaults read from its signature here).

Every mistake that depends on a generation's merged settings -- an unknown name, a loss argument the loss does
not take or a required one missing, a number out of range, a feature loss on a cache that cannot serve features, a
callback that would break resume, a teacher file that is not there -- is a :class:`~distill.config.RecipeError` with
one line, raised here, before any data is loaded or any directory is made. (Values only a loss's constructor judges,
such as malformed layer pairs, fail when the run builds the loss, first thing in preflight: also one line, also
before any data is loaded.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from distill.arguments import ArgumentsError, accepted_kwargs, check_kwargs, import_class, object_spec
from distill.cache.replay import CACHE_MODES
from distill.config import RecipeError, build_parser, generation_config, one_line, parse_recipe
from distill.losses import (
    LOSSES,
    TEACHER_BANK,
    TEACHER_EMBEDDINGS,
    TEACHER_FEATURES,
    CrossEntropy,
    DistillLoss,
    loss_arguments,
)
from distill.models.factory import check_backbone
from distill.optim import OPTIMIZERS, SCHEDULERS, OptimizerConfig
from distill.registry import RegistryError
from distill.spec import (
    CacheConfig,
    GenerationSpec,
    KDConfig,
    LoadSpec,
    LossSpec,
    RunSpec,
    backbone_label,
    freeze,
    generation_seed,
    thaw,
)
from distill.speed import SpeedConfig, steps_per_call_conflict
from distill.tasks import TASKS

LOGGER_MODULES = ("lightning.pytorch.loggers",)
CALLBACK_MODULES = ("lightning.pytorch.callbacks",)


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe (``cfg``, for printing and saving it) and the run resolved from it."""

    cfg: Namespace
    run: RunSpec

    @property
    def specs(self) -> tuple[GenerationSpec, ...]:
        """The generations' resolved specs."""
        return self.run.generations


def load_recipe(recipe: str | None, overrides: list[str], parser: ArgumentParser | None = None) -> Recipe:
    """Parse a recipe file plus dotted overrides and resolve the run (all checks happen here)."""
    parser = parser or build_parser()
    cfg = parse_recipe(recipe, overrides, parser)
    return Recipe(cfg, resolve_run(cfg, parser))


def resolve_run(cfg: Namespace, parser: ArgumentParser | None = None) -> RunSpec:
    """The :class:`RunSpec` of a parsed recipe: seed, data, speed and every generation (raises
    :class:`RecipeError`)."""
    speed = SpeedConfig(**cfg.speed.as_dict()) if "speed" in cfg else SpeedConfig()
    specs = resolve_specs(cfg, parser)
    for spec in specs:
        conflict = steps_per_call_conflict(speed.steps_per_call, spec.trainer)
        if conflict:
            raise RecipeError(f"{_where(cfg, spec.index)}{conflict}")
    return RunSpec(seed=cfg.seed, data=freeze(cfg.data), speed=speed, generations=specs)


def resolve_specs(cfg: Namespace, parser: ArgumentParser | None = None) -> tuple[GenerationSpec, ...]:
    """One :class:`GenerationSpec` per generation 0..N of ``cfg``, each checked (raises :class:`RecipeError`)."""
    parser = parser or build_parser()
    specs = []
    for k in range(cfg.generations + 1):
        where = _where(cfg, k)
        try:
            g = generation_config(cfg, k, parser)
        except Exception as e:  # the merged recipe failed to parse: report it against the override
            raise RecipeError(f"{where}{one_line(e)}") from None
        specs.append(_resolve(cfg, g, k, where))
    return tuple(specs)


def _override(cfg: Namespace, k: int) -> dict[str, Any]:
    return next((o for o in (cfg.per_generation or []) if o.get("generation") == k), {})


def _where(cfg: Namespace, k: int) -> str:
    for i, override in enumerate(cfg.per_generation or []):
        if override.get("generation") == k:
            return f"per_generation[{i}]: "
    return ""


def _resolve(cfg: Namespace, g: Namespace, k: int, where: str) -> GenerationSpec:
    kd_args = g.kd.as_dict()
    kd_args["init_args"] = freeze({name: _typed(v) for name, v in (kd_args["init_args"] or {}).items()})
    kd = KDConfig(**kd_args)
    cache = CacheConfig(**g.cache.as_dict())
    optimizer = OptimizerConfig(**g.optimizer.as_dict())
    trainer = dict(g.trainer.as_dict() if isinstance(g.trainer, Namespace) else g.trainer)
    loggers = _objects(trainer.pop("logger", None), "logger", where)
    callbacks = _objects(trainer.pop("callbacks", None), "callbacks", where)
    _check_names(kd, optimizer, where)
    _check_numbers(kd, optimizer, trainer, where)
    members = () if k == 0 else tuple(range(k)) if kd.teacher == "ensemble" else (k - 1,)
    kd, loss = _resolve_loss(kd, cache, where) if members else (kd, LossSpec("cross_entropy", CrossEntropy))
    _check_objects(loggers, "trainer.logger", LOGGER_MODULES, Logger, where)
    _check_objects(callbacks, "trainer.callbacks", CALLBACK_MODULES, Callback, where)
    load = _load_spec(cfg.load) if k == 0 and cfg.load is not None else None
    if load is not None and load.kind == "checkpoint" and where and "backbone" in _override(cfg, k):
        raise RecipeError(f"{where}backbone: generation 0 is loaded from a distill checkpoint, whose own backbone "
                          "is rebuilt; remove this override")
    backbone = load_backbone(load) if load is not None and load.kind == "checkpoint" else g.backbone
    try:
        check_backbone(backbone)
    except (RegistryError, ValueError) as e:
        raise RecipeError(f"{where}backbone: {e}") from None
    if load is not None and load.kind != "checkpoint":
        _check_timm(backbone, load)
    if g.task not in TASKS:
        raise RecipeError(f"{where}task: " + TASKS.unknown_message(g.task, TASKS.names()))
    return GenerationSpec(index=k, seed=generation_seed(cfg.seed, k), task=g.task, backbone=freeze(backbone),
                          label=backbone_label(backbone), kd=kd, loss=loss, members=members, cache=cache,
                          optimizer=optimizer, trainer=freeze(trainer), loggers=freeze(loggers),
                          callbacks=freeze(callbacks), load=load)


def _typed(value: Any) -> Any:
    """A dotted ``--kd.init_args.key VALUE`` arrives as a string: read it as YAML (``10`` -> 10, ``[[a, b]]``)."""
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _objects(value: Any, key: str, where: str) -> tuple[Any, ...]:
    """A logger/callback setting as a tuple of entries (``None``/``False``/``[]``: none)."""
    if value is None or value is False:
        return ()
    if value is True:
        raise RecipeError(f"{where}trainer.{key}: true means the engine's own, which every generation has; give a "
                          "class (e.g. TensorBoardLogger, LearningRateMonitor) to add one of yours")
    return tuple(value) if isinstance(value, list) else (value,)


def _check_names(kd: KDConfig, optimizer: OptimizerConfig, where: str) -> None:
    for registry, name in ((LOSSES, kd.variant), (OPTIMIZERS, optimizer.name), (SCHEDULERS, optimizer.scheduler)):
        if name not in registry:
            raise RecipeError(where + registry.unknown_message(name, registry.names()))


def _check_numbers(kd: KDConfig, optimizer: OptimizerConfig, trainer: dict[str, Any], where: str) -> None:
    """Values the parser's types admit but training cannot use (they end in a traceback or NaN later)."""
    epochs = trainer.get("max_epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise RecipeError(f"{where}trainer.max_epochs must be an integer >= 1 (a generation trains for a fixed "
                          f"number of epochs), got {epochs!r}")
    checks = [
        ("kd.temperature", kd.temperature, kd.temperature is None or (math.isfinite(kd.temperature)
                                                                      and kd.temperature > 0), "a finite number > 0"),
        ("optimizer.lr", optimizer.lr, math.isfinite(optimizer.lr) and optimizer.lr > 0, "a finite number > 0"),
        ("optimizer.weight_decay", optimizer.weight_decay,
         math.isfinite(optimizer.weight_decay) and optimizer.weight_decay >= 0, "a finite number >= 0"),
        ("optimizer.momentum", optimizer.momentum, 0 <= optimizer.momentum < 1, "in [0, 1)"),
        ("optimizer.gamma", optimizer.gamma, math.isfinite(optimizer.gamma) and optimizer.gamma > 0,
         "a finite number > 0"),
        ("optimizer.warmup_epochs", optimizer.warmup_epochs, 0 <= optimizer.warmup_epochs < epochs,
         f"in [0, trainer.max_epochs={epochs})"),
    ]
    for key, value, ok, expected in checks:
        if not ok:
            raise RecipeError(f"{where}{key} must be {expected}, got {value!r}")


def _resolve_loss(kd: KDConfig, cache: CacheConfig, where: str) -> tuple[KDConfig, LossSpec]:
    """A student's loss: its class and complete arguments (checked against its signature), and ``kd`` with the
    values in force (``alpha``/``temperature`` left unset take the loss's own defaults)."""
    cls = LOSSES.get(kd.variant)
    accepted = accepted_kwargs(cls) or set()
    for key in ("alpha", "temperature"):
        if getattr(kd, key) is not None and key not in accepted:
            raise RecipeError(f"{where}kd.{key} is not used by kd.variant {kd.variant!r}: leave it unset (null)")
    try:
        kwargs = loss_arguments(kd.variant, kd.alpha, kd.temperature, thaw(kd.init_args), kd.standardize)
    except ArgumentsError as e:
        raise RecipeError(f"{where}{e}") from None
    if TEACHER_FEATURES in cls.needs and not CACHE_MODES.get(cache.mode).online:
        raise RecipeError(f"{where}kd.variant {kd.variant!r} needs the teacher's intermediate features, which only "
                          f"a teacher run online serves; cache.mode is {cache.mode!r} (set --cache.mode online)")
    if TEACHER_EMBEDDINGS in cls.needs and not (CACHE_MODES.get(cache.mode).online or cache.embeddings):
        raise RecipeError(f"{where}kd.variant {kd.variant!r} reads the teacher's embeddings, which this cache does not "
                          "store: set --cache.embeddings true (or --cache.mode online)")
    if TEACHER_BANK in cls.needs and CACHE_MODES.get(cache.mode).online:
        raise RecipeError(f"{where}kd.variant {kd.variant!r} draws its negatives from the cached teacher embeddings "
                          "(the memory bank), which cache.mode online has not: use --cache.mode clean or replay with "
                          "--cache.embeddings true")
    if (TEACHER_FEATURES in cls.needs or TEACHER_EMBEDDINGS in cls.needs) and kd.teacher == "ensemble":
        raise RecipeError(f"{where}kd.variant {kd.variant!r} reads one teacher's features; kd.teacher: ensemble has "
                          "several (use kd.teacher: previous)")
    in_force = dataclasses.replace(kd, alpha=kwargs.get("alpha"), temperature=kwargs.get("temperature"))
    return in_force, LossSpec(kd.variant, cls, freeze(kwargs))


def construct_loss(spec: GenerationSpec) -> DistillLoss:
    """A new instance of generation ``spec.index``'s loss from ``spec.loss``; a value its constructor refuses (not
    visible in the signature, e.g. a malformed ``pairs``) is a one-line :class:`RecipeError`.

    The run calls it once per generation; ``distill sweep`` calls it for every value before the first trial.
    """
    try:
        return spec.loss.build()
    except (TypeError, ValueError) as e:
        raise RecipeError(f"kd.init_args for {spec.loss.name!r} (generation {spec.index}): "
                          f"{' '.join(str(e).split())}") from None


def _check_objects(entries: tuple[Any, ...], key: str, modules: tuple[str, ...], base: type, where: str) -> None:
    """Import each logger/callback class and check its init_args, without building it."""
    for i, entry in enumerate(entries):
        at = f"{key}[{i}]" if len(entries) > 1 else key
        try:
            path, init_args = object_spec(entry, at)
            cls = import_class(path, modules, at)
            check_kwargs(cls, init_args, f"{at}.init_args")
        except ArgumentsError as e:
            raise RecipeError(f"{where}{e}") from None
        if getattr(cls, "__module__", "").split(".")[0] == "pytorch_lightning":  # a class, a function: both have one
            same = "lightning.pytorch" + path.removeprefix("pytorch_lightning")
            raise RecipeError(f"{where}{at}: {path!r} is from the standalone pytorch_lightning package, which the "
                              f"engine's lightning.pytorch trainer does not accept; use {same!r}")
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise RecipeError(f"{where}{at}: {path!r} is not a Lightning {base.__name__}")
        if issubclass(cls, ModelCheckpoint):
            raise RecipeError(f"{where}{at}: {path!r} is refused: the engine checkpoints every epoch for --resume and "
                              "saves gen-k/model.ckpt itself, and a second ModelCheckpoint would write into gen-k/ "
                              "beside them (pick checkpoints from gen-k/logs/metrics.csv instead)")


def _load_spec(load: dict[str, Any]) -> LoadSpec:
    """Check the ``load`` section: exactly one of ``pretrained: true``, ``file: PATH``, ``checkpoint: PATH``."""
    keys = sorted(k for k in load if load[k] not in (None, False))
    unknown = sorted(set(load) - {"pretrained", "file", "checkpoint"})
    if unknown:
        raise RecipeError(f"load.{unknown[0]} is not a load option (accepted: checkpoint, file, pretrained)")
    if len(keys) != 1:
        raise RecipeError(f"load needs exactly one of pretrained: true, file: PATH or checkpoint: PATH, got {load!r}")
    kind = keys[0]
    if kind == "pretrained":
        if load["pretrained"] is not True:
            raise RecipeError(f"load.pretrained must be true, got {load['pretrained']!r}")
        return LoadSpec("pretrained")
    path = Path(str(load[kind]))
    if not path.is_file():
        raise RecipeError(f"load.{kind}: file not found: {path}")
    return LoadSpec(kind, str(path.resolve()))


def load_backbone(load: LoadSpec) -> Any:
    """The backbone of a ``load.checkpoint``: recorded in it when it was itself loaded, else its run's recipe's
    (``RUN/config.yaml``, the generation of ``gen-k/``)."""
    path = Path(load.path)
    try:
        recorded = torch.load(path, map_location="cpu", weights_only=True).get("backbone")
    except (RuntimeError, OSError, pickle.UnpicklingError, AttributeError) as e:
        raise RecipeError(f"load.checkpoint {path} cannot be read as a checkpoint: {' '.join(str(e).split())}"
                          ) from None
    if isinstance(recorded, str):
        return json.loads(recorded)
    run, gen_dir = path.parent.parent, path.parent.name
    if not (run / "config.yaml").is_file() or not gen_dir.startswith("gen-") or not gen_dir[4:].isdigit():
        raise RecipeError(f"load.checkpoint {path} is not a distill run's gen-k/model.ckpt (no config.yaml in {run})")
    try:
        other = parse_recipe(str(run / "config.yaml"), [])
    except RecipeError as e:
        raise RecipeError(f"load.checkpoint: {run / 'config.yaml'}: {e}") from None
    k = int(gen_dir[4:])
    if k > other.generations:
        raise RecipeError(f"load.checkpoint {path}: the run's recipe has no generation {k}")
    return generation_config(other, k).backbone


def _check_timm(backbone: Any, load: LoadSpec) -> None:
    import timm

    name = backbone if isinstance(backbone, str) else backbone.get("name")
    if not name or not timm.is_model(name):
        raise RecipeError(f"load.{load.kind} loads through timm, but the generation-0 backbone "
                          f"{backbone_label(backbone)!r} is not a timm model name")
    cfg = timm.models.get_pretrained_cfg(name)
    if load.kind == "pretrained" and not (cfg and (cfg.hf_hub_id or cfg.url or cfg.file)):
        raise RecipeError(f"load.pretrained: timm has no pretrained weights for {name!r} (give load.file or "
                          "load.checkpoint instead)")
