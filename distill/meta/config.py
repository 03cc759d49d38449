"""The ``distill meta`` recipe: schema (jsonargparse), parsing and checks that fail before any data is read.

Keys: ``seed``, ``method`` (maml | fomaml | anil), ``data`` (an episode source: a toolkit dataset, ``omniglot`` or
``sinusoid``, with its options), ``split`` (class counts or class-id lists per split), ``episodes`` (N-way, K-shot,
queries, meta-batch, how many per epoch and for evaluation), ``inner`` (steps, lr, Meta-SGD, overrides of the
method), ``network``, ``meta_lr``, ``trainer`` (Lightning Trainer options) and ``baselines`` (the three paradigms,
evaluated on the same meta-test episodes). Mistakes are :class:`~distill.config.RecipeError` with one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Dict, Optional

import lightning as L
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from distill.arguments import accepted_kwargs
from distill.config import RecipeError, parse_with
from distill.meta.baselines import BaselineConfig
from distill.meta.module import ADAPT, METHODS
from distill.meta.networks import NETWORKS

# Trainer arguments the meta run owns: its directory, checkpointing for --resume, and gradients in evaluation.
META_TRAINER_OWNED = {"logger", "callbacks", "default_root_dir", "enable_checkpointing", "plugins", "profiler",
                      "inference_mode"}


@dataclass
class EpisodeConfig:
    """Episodes.

    Args:
        way: classes per episode (N); ignored for sinusoid regression.
        shot: support samples per class (K-shot; for sinusoid: support points).
        query: query samples per class (for sinusoid: query points).
        meta_batch: episodes per meta-iteration (outer step).
        train_episodes: meta-training episodes per epoch (new ones every epoch).
        val_episodes: meta-validation episodes after every epoch (0: no validation).
        test_episodes: meta-test episodes (the standard protocol: 600 or more).
    """

    way: int = 5
    shot: int = 1
    query: int = 15
    meta_batch: int = 4
    train_episodes: int = 400
    val_episodes: int = 100
    test_episodes: int = 600


@dataclass
class InnerConfig:
    """The inner loop.

    Args:
        steps: K, inner SGD steps in meta-training (0: plain multi-task training).
        eval_steps: inner steps at meta-validation and meta-test (default: ``steps``).
        lr: inner learning rate α (the initial value with ``learn_lr``).
        learn_lr: Meta-SGD: learn one inner learning rate per adapted parameter tensor.
        first_order: override the method's first-order switch (null: the method decides).
        adapt: override which parameters adapt: ``all`` or ``head`` (null: the method decides).
    """

    steps: int = 1
    eval_steps: Optional[int] = None
    lr: float = 0.4
    learn_lr: bool = False
    first_order: Optional[bool] = None
    adapt: Optional[str] = None


def build_meta_parser() -> ArgumentParser:
    """The parser of ``distill meta`` recipes."""
    p = ArgumentParser(prog="distill meta", exit_on_error=False, default_env=False)
    p.add_argument("--config", action=ActionConfigFile, help="the recipe file")
    p.add_argument("--seed", type=int, default=0, help="seed of the class split, the episodes and the initialisation")
    p.add_argument("--method", type=str, default="maml", help="maml | fomaml | anil (distill.meta.METHODS)")
    p.add_argument("--data", type=Dict[str, Any], default={"name": "digits"},
                   help="episode source: {name: sinusoid | omniglot | <any distill dataset>, ...its options}")
    p.add_argument("--split", type=Dict[str, Any], default={"train": 5, "val": 0, "test": 5},
                   help="classes per split: a count (seeded draw) or a list of class ids; disjoint")
    p.add_class_arguments(EpisodeConfig, "episodes")
    p.add_class_arguments(InnerConfig, "inner")
    p.add_argument("--network", type=Optional[Dict[str, Any]], default=None,
                   help="{name: conv4 | mlp, ...its keyword arguments} (distill.meta.NETWORKS); null: mlp for "
                        "sinusoid, conv4 with 32 channels for images")
    p.add_argument("--meta_lr", type=float, default=1e-3, help="Adam learning rate of the outer loop")
    p.add_class_arguments(L.Trainer, "trainer", instantiate=False, skip=META_TRAINER_OWNED)
    p.set_defaults({"trainer.max_epochs": 5, "trainer.enable_model_summary": False, "trainer.log_every_n_steps": 10})
    p.add_argument("--baselines", type=Optional[Dict[str, Any]], default=None,
                   help="evaluate the paradigms on the same meta-test episodes: {epochs: E, finetune_steps: K, ...} "
                        "(see distill.meta.baselines.BaselineConfig); null: none")
    return p


def parse_meta_recipe(recipe: str | None, overrides: list[str], parser: ArgumentParser | None = None) -> Namespace:
    """Parse a meta recipe file plus dotted overrides and check it (raises :class:`RecipeError`)."""
    cfg = parse_with(parser or build_meta_parser(), recipe, overrides)
    check_meta(cfg)
    return cfg


def check_meta(cfg: Namespace) -> None:
    """Values the types admit but a run cannot use."""
    if cfg.method not in METHODS:
        raise RecipeError("method: " + METHODS.unknown_message(cfg.method, METHODS.names()))
    name = default_network(cfg.data)["name"] if cfg.network is None else cfg.network.get("name", "conv4")
    if name not in NETWORKS:
        raise RecipeError("network.name: " + NETWORKS.unknown_message(name, NETWORKS.names()))
    _check_network_options(name, cfg.network or {})
    if not (cfg.data or {}).get("name"):
        raise RecipeError("data.name is required (sinusoid, omniglot or a distill dataset)")
    e, i = cfg.episodes, cfg.inner
    least = [("episodes.way", e.way, 2), ("episodes.shot", e.shot, 1), ("episodes.query", e.query, 1),
             ("episodes.meta_batch", e.meta_batch, 1), ("episodes.train_episodes", e.train_episodes, 1),
             ("episodes.val_episodes", e.val_episodes, 0), ("episodes.test_episodes", e.test_episodes, 1),
             ("inner.steps", i.steps, 0), ("trainer.max_epochs", cfg.trainer.max_epochs, 1)]
    if i.eval_steps is not None:
        least.append(("inner.eval_steps", i.eval_steps, 0))
    for key, value, low in least:
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise RecipeError(f"{key} must be an integer >= {low}, got {value!r}")
    if not (i.lr > 0 and i.lr < float("inf")):
        raise RecipeError(f"inner.lr must be a finite number > 0, got {i.lr!r}")
    if not (cfg.meta_lr > 0 and cfg.meta_lr < float("inf")):
        raise RecipeError(f"meta_lr must be a finite number > 0, got {cfg.meta_lr!r}")
    if i.adapt is not None and i.adapt not in ADAPT:
        raise RecipeError(f"inner.adapt must be one of {', '.join(ADAPT)} or null, got {i.adapt!r}")
    for key, value in (cfg.network or {}).items():  # sizes: hidden, layers, blocks, in_features
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 1:
            raise RecipeError(f"network.{key} must be >= 1, got {value!r}")
    _check_baselines(cfg)


# What the run passes every network itself (from the episodes), not recipe options.
ENGINE_ARGS = frozenset({"num_outputs", "in_chans", "image_hw"})


def _check_network_options(name: str, network: dict[str, Any]) -> None:
    """Every option of ``network`` is one its class takes (a leftover of another network -- the recipe's ``mlp``
    ``layers`` after ``--network.name conv4`` -- named, instead of a TypeError from the constructor)."""
    accepted = accepted_kwargs(NETWORKS.get(name))
    if accepted is None:
        return
    options = sorted(accepted - ENGINE_ARGS)
    for key in network:
        if key != "name" and key not in options:
            raise RecipeError(f"network.{key} is not an option of {name} (accepted: {', '.join(options)})")


def _check_baselines(cfg: Namespace) -> None:
    """The ``baselines`` section: known keys, usable values, a source that has classes."""
    if cfg.baselines is None:
        return
    if cfg.data["name"] == "sinusoid":
        raise RecipeError("baselines: the paradigms classify the meta-test episodes; sinusoid regression has no "
                          "classes (set baselines: null)")
    known = [f.name for f in fields(BaselineConfig)]
    for key, value in cfg.baselines.items():
        if key not in known:
            raise RecipeError(f"baselines.{key} is not a baselines option (accepted: {', '.join(known)})")
        low = 0 if key == "finetune_steps" else 1
        if key in ("epochs", "batch_size", "finetune_steps") and (not isinstance(value, int) or isinstance(value, bool)
                                                                   or value < low):
            raise RecipeError(f"baselines.{key} must be an integer >= {low}, got {value!r}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key in ("lr", "finetune_lr", "logistic_c") and not (number and 0 < value < math.inf):
            raise RecipeError(f"baselines.{key} must be a finite number > 0, got {value!r}")


def default_network(data: dict[str, Any]) -> dict[str, Any]:
    """The network when the recipe names none: the paper's MLP for sinusoid, a 32-channel conv-4 for images."""
    return {"name": "mlp", "hidden": 40, "layers": 2} if (data or {}).get("name") == "sinusoid" else \
        {"name": "conv4", "hidden": 32}


def dump_meta_config(cfg: Namespace, parser: ArgumentParser | None = None) -> str:
    """The resolved recipe as YAML (loadable again): :func:`distill.config.dump_config` with the meta parser."""
    from distill.config import dump_config

    return dump_config(cfg, parser or build_meta_parser())
