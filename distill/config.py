"""The recipe schema, parsing (YAML file + dotted overrides, jsonargparse) and validation.

A recipe is YAML with these top-level keys (see ``distill run --help`` for every key and its default):
``seed``, ``generations``, ``data``, ``backbone``, ``kd``, ``cache``, ``speed``, ``optimizer``, ``trainer`` (passed to
:class:`lightning.Trainer`) and ``per_generation`` (overrides of ``backbone``/``kd``/``optimizer``/``trainer`` for one
generation). Mistakes raise :class:`RecipeError` with one line naming the key.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

import lightning as L
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from jsonargparse.typing import ClosedUnitInterval, NonNegativeInt, PositiveFloat, PositiveInt

from distill.data import DATASETS
from distill.losses import LOSSES
from distill.models.factory import check_backbone
from distill.optim import OPTIMIZERS, SCHEDULERS, OptimizerConfig
from distill.registry import RegistryError
from distill.speed import SpeedConfig


class RecipeError(ValueError):
    """A user mistake in a recipe or an override; the message is one line naming the key."""


@dataclass
class KDConfig:
    """How students learn from their teacher.

    Defaults follow Born-Again Networks (Furlanello et al., 2018): teacher-only loss (``alpha = 1``) at ``T = 1``,
    the teacher of generation k being generation k-1.
    """

    temperature: PositiveFloat = 1.0
    alpha: ClosedUnitInterval = 1.0
    variant: str = "standard"
    teacher: Literal["previous", "ensemble"] = "previous"


@dataclass
class CacheConfig:
    """Where the teacher scores come from during student training, and how the soft-label cache stores them.

    ``mode``: ``clean`` reads the previous generation's logits on un-augmented images from the cache (no teacher
    forward pass; default); ``replay`` caches the teacher's scores of ``epochs`` augmented views per sample and the
    student trains on exactly those views (epoch t uses view epoch t % epochs; needs an augmenting in-memory image
    dataset); ``online`` runs the teacher(s) on the student's augmented batch. ``dtype``: float16 halves the size of a
    ``full`` cache; logits need only ~3 significant digits. ``format``: ``full`` logits or ``topk`` (the ``topk``
    largest log-probabilities in float16 + int16 class indices, 4 * topk bytes a view; the rest of the probability
    spread evenly). ``epochs`` (replay only): 10 views per sample by default -- building costs 10 inference passes
    over the training set (about 3-4 training epochs of compute) and 10x the storage of one clean view, while giving
    the student views as varied as 10 epochs of ordinary augmentation; longer students cycle through them.
    """

    mode: Literal["clean", "replay", "online"] = "clean"
    dtype: Literal["float16", "float32"] = "float16"
    format: Literal["full", "topk"] = "full"
    topk: PositiveInt = 10
    epochs: PositiveInt = 10


# Trainer arguments the engine owns: it adds a CSV logger, progress bar and checkpoints per generation.
TRAINER_OWNED = {"logger", "callbacks", "default_root_dir", "enable_checkpointing", "plugins", "profiler"}
OVERRIDABLE = {"backbone", "kd", "optimizer", "trainer"}


def build_parser() -> ArgumentParser:
    """The ``distill run`` parser: every recipe key with its type and default."""
    p = ArgumentParser(prog="distill run", exit_on_error=False, allow_abbrev=False,
                       description="Train generation 0 with cross-entropy, then N born-again students.")
    p.add_argument("--config", action=ActionConfigFile, help="the recipe YAML (given as the positional RECIPE)")
    p.add_argument("--seed", type=int, default=0, help="run seed; generation k uses a seed derived from (seed, k)")
    p.add_argument("--generations", type=NonNegativeInt, default=2, help="number of student generations after gen 0")
    p.add_argument("--data", type=Dict[str, Any], default={"name": "digits"},
                   help="data module: {name: <dataset>, ...its keyword arguments}")
    p.add_argument("--backbone", type=Union[str, Dict[str, Any]], default="small_cnn",
                   help="timm/torchvision/registered name, or {class_path|name: ..., init_args: {...}}")
    p.add_class_arguments(KDConfig, "kd")
    p.add_class_arguments(CacheConfig, "cache")
    p.add_class_arguments(SpeedConfig, "speed")
    p.add_class_arguments(OptimizerConfig, "optimizer")
    p.add_class_arguments(L.Trainer, "trainer", instantiate=False, skip=TRAINER_OWNED)
    p.set_defaults({"trainer.max_epochs": 10, "trainer.enable_model_summary": False, "trainer.log_every_n_steps": 10})
    p.add_argument("--per_generation", type=Optional[List[Dict[str, Any]]], default=None,
                   help="list of {generation: k, backbone|kd|optimizer|trainer: overrides}")
    return p


def one_line(message: str) -> str:
    """Collapse a multi-line parser message into one line."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def parse_recipe(recipe: str | None, overrides: list[str], parser: ArgumentParser | None = None) -> Namespace:
    """Parse a recipe file plus dotted overrides (``--kd.alpha 0.5``) and validate everything.

    Raises:
        RecipeError: missing file, malformed YAML, unknown key, wrong type, out-of-range value, unknown name.
    """
    parser = parser or build_parser()
    args = list(overrides)
    if recipe is not None:
        if Path(recipe).is_dir():
            raise RecipeError(f"recipe {recipe} is a directory, not a YAML file")
        if not Path(recipe).is_file():
            raise RecipeError(f"recipe file not found: {recipe}")
        try:
            empty = not Path(recipe).read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise RecipeError(f"recipe file {recipe} cannot be read as text: {e}") from None
        if empty:
            raise RecipeError(f"recipe file {recipe} is empty")
        args = ["--config", str(recipe), *args]
    try:
        cfg = parser.parse_args(args)
    except Exception as e:  # jsonargparse raises ArgumentError (and others) for user input; make it one line
        raise RecipeError(one_line(e)) from None
    validate(cfg, parser)
    return cfg


def _check_names(cfg: Namespace, where: str = "") -> None:
    checks = [(LOSSES, cfg.kd.variant), (OPTIMIZERS, cfg.optimizer.name), (SCHEDULERS, cfg.optimizer.scheduler)]
    for registry, name in checks:
        if name not in registry:
            raise RecipeError(where + registry.unknown_message(name, registry.names()))
    try:
        check_backbone(cfg.backbone)
    except (RegistryError, ValueError) as e:
        raise RecipeError(f"{where}backbone: {e}") from None


def _check_data(data: dict[str, Any]) -> None:
    if "name" not in data:
        raise RecipeError("data.name is required (one of: " + ", ".join(DATASETS.names()) + ")")
    if data["name"] not in DATASETS:
        raise RecipeError("data.name: " + DATASETS.unknown_message(data["name"], DATASETS.names()))
    accepted = set()
    for klass in DATASETS.get(data["name"]).__mro__:
        if "__init__" in vars(klass):
            accepted |= {n for n, p in inspect.signature(klass.__init__).parameters.items()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "self"}
    unknown = sorted(set(data) - accepted - {"name"})
    if unknown:
        raise RecipeError(f"data.{unknown[0]} is not an option of dataset {data['name']!r} "
                          f"(accepted: {', '.join(sorted(accepted))})")


def _check_epochs(cfg: Namespace, where: str = "") -> None:
    epochs = cfg.trainer.max_epochs
    if not isinstance(epochs, int) or epochs < 1:
        raise RecipeError(f"{where}trainer.max_epochs must be an integer >= 1 (a generation trains for a fixed "
                          f"number of epochs), got {epochs!r}")


def validate(cfg: Namespace, parser: ArgumentParser) -> None:
    """Checks beyond types: registry names, data options, and every per-generation override (merged and re-parsed)."""
    _check_names(cfg)
    _check_epochs(cfg)
    _check_data(cfg.data)
    seen = set()
    for i, override in enumerate(cfg.per_generation or []):
        where = f"per_generation[{i}]"
        gen = override.get("generation")
        if not isinstance(gen, int) or isinstance(gen, bool) or not 0 <= gen <= cfg.generations:
            raise RecipeError(f"{where}.generation must be an integer in [0, {cfg.generations}], got {gen!r}")
        if gen in seen:
            raise RecipeError(f"{where}.generation {gen} appears twice")
        seen.add(gen)
        extra = sorted(set(override) - OVERRIDABLE - {"generation"})
        if extra:
            raise RecipeError(f"{where}.{extra[0]} cannot be overridden per generation "
                              f"(allowed: {', '.join(sorted(OVERRIDABLE))})")
        for section in ("kd", "optimizer", "trainer"):
            if section in override and not isinstance(override[section], dict):
                raise RecipeError(f"{where}.{section} must be a mapping of {section} keys, got {override[section]!r}")
        try:
            merged = generation_config(cfg, gen, parser)
        except Exception as e:  # the merged recipe failed to parse: report it against the override
            raise RecipeError(f"{where}: {one_line(e)}") from None
        _check_names(merged, f"{where}: ")
        _check_epochs(merged, f"{where}: ")


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "backbone":
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def generation_config(cfg: Namespace, generation: int, parser: ArgumentParser | None = None) -> Namespace:
    """The recipe as generation ``generation`` sees it: the base recipe with that generation's override merged in."""
    overrides = [o for o in (cfg.per_generation or []) if o.get("generation") == generation]
    if not overrides:
        return cfg
    parser = parser or build_parser()
    base = cfg.clone().as_dict()
    base.pop("config", None)
    update = {k: v for k, v in overrides[0].items() if k != "generation"}
    return parser.parse_object(_deep_merge(base, update))


def dump_config(cfg: Namespace, parser: ArgumentParser | None = None) -> str:
    """The fully resolved recipe as YAML (loadable again as a recipe)."""
    parser = parser or build_parser()
    cfg = cfg.clone()
    if "config" in cfg:
        del cfg["config"]
    return parser.dump(cfg, skip_none=False)
