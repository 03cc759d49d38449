"""The recipe schema, parsing (YAML file + dotted overrides, jsonargparse) and validation.

A recipe is YAML with these top-level keys (see ``distill run --help`` for every key and its default):
``seed``, ``generations``, ``task``, ``data``, ``backbone``, ``load`` (a loaded generation 0), ``kd``, ``cache``,
``speed``, ``optimizer``, ``trainer`` (passed to :class:`lightning.Trainer`, plus the user's ``logger`` and
``callbacks``) and ``per_generation`` (overrides of ``task``/``backbone``/``kd``/``optimizer``/``trainer`` for one
generation). Mistakes raise :class:`RecipeError` with one line naming the key. :mod:`distill.resolve` turns a parsed
recipe into one frozen :class:`~distill.spec.GenerationSpec` per generation.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import lightning as L
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from jsonargparse.typing import NonNegativeInt

from distill.arguments import ArgumentsError, check_kwargs
from distill.data import DATASETS
from distill.errors import UserError
from distill.optim import OptimizerConfig
from distill.spec import CacheConfig, KDConfig
from distill.speed import SpeedConfig


class RecipeError(UserError, ValueError):
    """A user mistake in a recipe or an override; the message is one line naming the key."""


# Trainer arguments the engine owns: it sets each generation's directory, checkpointing and checkpoint I/O. The
# user's ``logger`` and ``callbacks`` are free-form class_path/init_args entries added beside the engine's own.
TRAINER_OWNED = {"logger", "callbacks", "default_root_dir", "enable_checkpointing", "plugins", "profiler"}
OVERRIDABLE = {"task", "backbone", "kd", "optimizer", "trainer"}
# A class name, a {class_path, init_args} mapping, or a list of them, handed over as written -- distill.resolve checks
# them. Not Any: jsonargparse resolves an importable class_path under Any and fills in every default, the options a
# class forwards through **kwargs included (TensorBoardLogger's SummaryWriter ``comment``, ...).
ObjectList = Optional[Union[bool, str, Dict[str, Any], List[Union[str, Dict[str, Any]]]]]


def build_parser() -> ArgumentParser:
    """The ``distill run`` parser: every recipe key with its type and default."""
    p = ArgumentParser(prog="distill run", exit_on_error=False, allow_abbrev=False,
                       description="Train generation 0 with cross-entropy, then N born-again students.")
    p.add_argument("--config", action=ActionConfigFile, help="the recipe YAML (given as the positional RECIPE)")
    p.add_argument("--seed", type=int, default=0, help="run seed; generation k uses a seed derived from (seed, k)")
    p.add_argument("--generations", type=NonNegativeInt, default=2, help="number of student generations after gen 0")
    p.add_argument("--data", type=Dict[str, Any], default={"name": "digits"},
                   help="data module: {name: <dataset>, ...its keyword arguments}")
    p.add_argument("--task", type=str, default="born_again", help="what a generation trains (distill.tasks.TASKS)")
    p.add_argument("--backbone", type=Union[str, Dict[str, Any]], default="small_cnn",
                   help="timm/torchvision/registered name, or {class_path|name: ..., init_args: {...}}")
    p.add_argument("--load", type=Optional[Dict[str, Any]], default=None,
                   help="load generation 0 instead of training it: {pretrained: true} | {file: PATH} | "
                        "{checkpoint: RUN/gen-k/model.ckpt}")
    p.add_class_arguments(KDConfig, "kd")
    p.add_class_arguments(CacheConfig, "cache")
    p.add_class_arguments(SpeedConfig, "speed")
    p.add_class_arguments(OptimizerConfig, "optimizer")
    p.add_class_arguments(L.Trainer, "trainer", instantiate=False, skip=TRAINER_OWNED)
    p.add_argument("--trainer.logger", type=ObjectList, default=None,
                   help="your logger(s) beside the engine's CSV log: a Lightning logger class name or "
                        "{class_path, init_args}, or a list; save_dir defaults to the generation's directory")
    p.add_argument("--trainer.callbacks", type=ObjectList, default=None,
                   help="your callback(s) beside the engine's: a class name or {class_path, init_args}, or a list")
    p.set_defaults({"trainer.max_epochs": 10, "trainer.enable_model_summary": False, "trainer.log_every_n_steps": 10})
    p.add_argument("--per_generation", type=Optional[List[Dict[str, Any]]], default=None,
                   help="list of {generation: k, task|backbone|kd|optimizer|trainer: overrides}")
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
    cfg = parse_with(parser, recipe, overrides)
    validate(cfg, parser)
    return cfg


_OBJECT_KEYS = ("--trainer.logger", "--trainer.callbacks")


def fold_object_options(args: list[str]) -> list[str]:
    """LightningCLI's short form ``--trainer.logger CSVLogger --trainer.logger.save_dir DIR`` (or
    ``--trainer.logger.init_args.save_dir DIR``) as one ``{class_path, init_args}`` value: the parser would otherwise
    replace the class name with ``{save_dir: DIR}``. An option with no class named before it on the command line is
    left as it is (and refused when the recipe is resolved)."""
    out: list[str] = []
    last: dict[str, int] = {}  # option -> index in ``out`` of its value
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=")
        value, step = (inline, 1) if eq else (args[i + 1] if i + 1 < len(args) else None, 2)
        base = next((k for k in _OBJECT_KEYS if name.startswith(k + ".")), None)
        if name in _OBJECT_KEYS and value is not None:
            out += [name, value]
            last[name] = len(out) - 1
            i += step
            continue
        if base is not None and value is not None and base in last:
            key = name[len(base) + 1:]
            key = key[len("init_args."):] if key.startswith("init_args.") else key
            try:
                current = yaml.safe_load(out[last[base]])
            except yaml.YAMLError:
                current = None
            if isinstance(current, str):
                current = {"class_path": current}
            if isinstance(current, dict) and isinstance(current.get("class_path"), str) and "." not in key:
                current.setdefault("init_args", {})
                current["init_args"] = {**(current["init_args"] or {}), key: yaml.safe_load(value)}
                out[last[base]] = json.dumps(current)
                i += step
                continue
        if name.rstrip("+") in _OBJECT_KEYS:  # an appended entry: the short form would not say which one
            last.pop(name.rstrip("+"), None)
        out.append(arg)
        i += 1
    return out


def parse_with(parser: ArgumentParser, recipe: str | None, overrides: list[str]) -> Namespace:
    """``parser`` on a recipe file plus dotted overrides, every file or parse problem as one :class:`RecipeError`
    line (a directory, a missing, unreadable or empty file, malformed YAML, an unknown key, a wrong type)."""
    args = fold_object_options(list(overrides))
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
    return cfg


def _check_data(data: dict[str, Any]) -> None:
    if "name" not in data:
        raise RecipeError("data.name is required (one of: " + ", ".join(DATASETS.names()) + ")")
    if data["name"] not in DATASETS:
        raise RecipeError("data.name: " + DATASETS.unknown_message(data["name"], DATASETS.names()))
    try:
        check_kwargs(DATASETS.get(data["name"]), {k: v for k, v in data.items() if k != "name"}, "data")
    except ArgumentsError as e:
        raise RecipeError(f"{e} (dataset {data['name']!r})") from None


def fold_init_args(value: Any) -> Any:
    """A ``name|class_path`` mapping with keys beside ``init_args`` folded into ``init_args``.

    ``--backbone.init_args.hidden 32`` reaches the parser as ``backbone.hidden``: both spellings mean an init
    argument, as in LightningCLI.
    """
    if not isinstance(value, dict) or not ({"name", "class_path"} & set(value)):
        return value
    extra = {k: v for k, v in value.items() if k not in ("name", "class_path", "init_args")}
    if not extra:
        return value
    head = {k: value[k] for k in ("name", "class_path") if k in value}
    return {**head, "init_args": {**dict(value.get("init_args") or {}), **extra}}


def validate(cfg: Namespace, parser: ArgumentParser) -> None:
    """Checks of the base recipe beyond types: data options and the shape of every per-generation override.

    Everything that depends on a generation's merged settings is checked when it is resolved
    (:func:`distill.resolve.resolve_specs`).
    """
    _check_data(cfg.data)
    cfg.backbone = fold_init_args(cfg.backbone)
    if isinstance(cfg.load, dict):  # recorded absolute in config.yaml, so --resume works from any directory
        cfg.load = {k: str(Path(v).resolve()) if k in ("file", "checkpoint") and isinstance(v, str) else v
                    for k, v in cfg.load.items()}
    seen = set()
    for i, override in enumerate(cfg.per_generation or []):
        where = f"per_generation[{i}]"
        if not isinstance(override, dict):
            raise RecipeError(f"{where} must be a mapping with a generation key, got {override!r}")
        gen = override.get("generation")
        if not isinstance(gen, int) or isinstance(gen, bool) or not 0 <= gen <= cfg.generations:
            raise RecipeError(f"{where}.generation must be an integer in [0, {cfg.generations}], got {gen!r}")
        if gen in seen:
            raise RecipeError(f"{where}.generation {gen} appears twice")
        seen.add(gen)
        if gen == 0 and "kd" in override:
            raise RecipeError(f"{where}.kd: generation 0 learns from the labels with cross-entropy and has no "
                              "teacher, so a kd override there would change nothing; remove it")
        extra = sorted(set(override) - OVERRIDABLE - {"generation"})
        if extra:
            raise RecipeError(f"{where}.{extra[0]} cannot be overridden per generation "
                              f"(allowed: {', '.join(sorted(OVERRIDABLE))})")
        for section in ("kd", "optimizer", "trainer"):
            if section in override and not isinstance(override[section], dict):
                raise RecipeError(f"{where}.{section} must be a mapping of {section} keys, got {override[section]!r}")


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("backbone", "init_args"):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    """A deep copy with jsonargparse Namespaces as dicts: under ``per_generation``'s Any values, a ``class_path``
    mapping (a logger) arrives resolved as a Namespace, which the typed key it merges into does not take."""
    if isinstance(value, Namespace):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return copy.deepcopy(value)


def generation_config(cfg: Namespace, generation: int, parser: ArgumentParser | None = None) -> Namespace:
    """The recipe as generation ``generation`` sees it: the base recipe with that generation's override merged in."""
    overrides = [o for o in (cfg.per_generation or []) if o.get("generation") == generation]
    if not overrides:
        return cfg
    parser = parser or build_parser()
    base = cfg.clone().as_dict()
    base.pop("config", None)
    update = {k: v for k, v in overrides[0].items() if k != "generation"}
    merged = parser.parse_object(_deep_merge(base, update))
    merged.backbone = fold_init_args(merged.backbone)
    return merged


def dump_config(cfg: Namespace, parser: ArgumentParser | None = None) -> str:
    """The fully resolved recipe as YAML (loadable again as a recipe)."""
    parser = parser or build_parser()
    cfg = cfg.clone()
    if "config" in cfg:
        del cfg["config"]
    return parser.dump(cfg, skip_none=False)
