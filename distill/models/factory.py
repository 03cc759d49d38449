"""Build a backbone from a recipe's ``backbone`` value.

Accepted forms, tried in this order:

* a name registered with :func:`register_backbone` (the project's one registry for user models);
* a timm model name (the project's CIFAR families and ``small_cnn`` are registered into timm's registry);
* a torchvision classification model name (``torchvision.models.list_models(torchvision.models)``);
* ``{"class_path": "pkg.module.Class", "init_args": {...}}`` -- any ``nn.Module`` class or factory by import path;
* ``{"name": "<any of the names above>", "init_args": {...}}`` -- a name with extra keyword arguments.

``num_classes`` and ``in_chans`` come from the data module and are passed when the callable accepts them.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torchvision
from torch import nn

from distill.errors import UserError
from distill.registry import Registry, RegistryError


class BackboneError(UserError, ValueError):
    """A backbone that cannot be used with the data (wrong output shape, wrong input channels, failed forward)."""


BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


def register_backbone(name: str | None = None) -> Callable:
    """Decorator registering a user backbone class or factory under ``name`` (default: its ``__name__``).

    Example:
        >>> @register_backbone("my_net")
        ... class MyNet(nn.Module): ...
    """
    return BACKBONES.register(name)


def _call_with_supported(fn: Callable[..., nn.Module], kwargs: dict[str, Any]) -> nn.Module:
    """Call ``fn`` with ``kwargs``, dropping ``in_chans`` when ``fn`` does not take it (num_classes is kept; an
    ``init_args`` entry ``fn`` does not take is its ``TypeError``, never dropped)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn(**kwargs)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn(**kwargs)
    return fn(**{k: v for k, v in kwargs.items() if k != "in_chans" or k in params})


def check_init_arg(spec: str | Mapping[str, Any], arg: str) -> None:
    """Raise unless the backbone of ``spec`` (a registered name or a ``class_path``) takes the argument ``arg``;
    timm and torchvision names, and callables taking ``**kwargs``, are not checked (they take keyword arguments).

    Raises:
        ValueError: naming the backbone, the argument and the ones it takes.
    """
    spec = _normalise(spec)
    if "class_path" in spec:
        fn = _import_path(spec["class_path"])
    elif spec["name"] in BACKBONES:
        fn = BACKBONES.get(spec["name"])
    else:
        return
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    if arg not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        taken = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                 and n not in ("self", "num_classes", "in_chans")]
        raise ValueError(f"backbone {spec.get('class_path') or spec['name']!r} takes no argument {arg!r} "
                         f"(init_args it takes: {', '.join(taken) or 'none'})")


def _torchvision_names() -> list[str]:
    return torchvision.models.list_models(module=torchvision.models)


def _import_path(path: str) -> Callable[..., nn.Module]:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(f"backbone.class_path {path!r} must be a dotted import path like 'package.module.Class'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"backbone.class_path {path!r} cannot be imported: {e}") from None


def _known_names() -> list[str]:
    return BACKBONES.names() + timm.list_models() + _torchvision_names()


def _normalise(spec: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or ("name" in spec) == ("class_path" in spec):
        raise ValueError(f"backbone must be a name or a mapping with exactly one of 'name'/'class_path', got {spec!r}")
    extra = set(spec) - {"name", "class_path", "init_args"}
    if extra:
        raise ValueError(f"backbone has unknown key(s) {sorted(extra)}; expected name|class_path and init_args")
    return spec


def check_backbone(spec: str | dict[str, Any]) -> None:
    """Raise the error :func:`create_backbone` would raise for an unknown name or malformed spec, without building."""
    spec = _normalise(spec)
    if "class_path" in spec:
        _import_path(spec["class_path"])
    elif not (spec["name"] in BACKBONES or timm.is_model(spec["name"]) or spec["name"] in _torchvision_names()):
        raise RegistryError(BACKBONES.unknown_message(spec["name"], _known_names()))


def create_backbone(spec: str | dict[str, Any], num_classes: int, in_chans: int) -> nn.Module:
    """Create a freshly initialised backbone with ``num_classes`` outputs for ``in_chans``-channel input.

    Args:
        spec: a name or a ``class_path``/``name`` + ``init_args`` mapping (see the module docstring).
        num_classes: classifier outputs.
        in_chans: input channels of the data.

    Raises:
        RegistryError: unknown name (message lists close matches).
        BackboneError: ``init_args`` asked for pretrained weights that could not be loaded (none published, no
            network, a missing file), or an image model for data without channels (text): one line naming the
            backbone and the cause.
        ValueError: malformed spec or an import failure.
    """
    check_backbone(spec)
    spec = _normalise(spec)
    kwargs = {**dict(spec.get("init_args") or {}), "num_classes": num_classes}
    if "class_path" in spec:
        return _call_with_supported(_import_path(spec["class_path"]), {**kwargs, "in_chans": in_chans})
    name = spec["name"]
    if name in BACKBONES:
        return _call_with_supported(BACKBONES.get(name), {**kwargs, "in_chans": in_chans})
    if in_chans < 1 and (timm.is_model(name) or name in torchvision.models.list_models()):
        raise BackboneError(f"backbone {backbone_label(spec)} is an image model, but the data have no image channels "
                            "(text data: use a text backbone such as prompted_lm or token_bag)")
    wants_weights = any(kwargs.get(key) for key in _WEIGHT_ARGS)
    if timm.is_model(name):
        path = kwargs.get("checkpoint_path")
        if path and not Path(path).is_file():  # timm would log a line, then raise a FileNotFoundError without a message
            raise BackboneError(f"backbone {backbone_label(spec)}: init_args.checkpoint_path {path} is not a file")
        return _with_weights(spec, wants_weights,
                             lambda: timm.create_model(name, in_chans=in_chans, **{"pretrained": False, **kwargs}))
    if in_chans != 3:
        raise ValueError(f"torchvision model {name!r} takes 3-channel input but the data has {in_chans}")
    weights = kwargs.pop("weights", None)
    if isinstance(weights, str):  # an unknown name would be a KeyError from torchvision's enum lookup
        enum = torchvision.models.get_model_weights(name)
        if weights.removeprefix(f"{enum.__name__}.") not in enum.__members__:
            raise BackboneError(f"backbone {backbone_label(spec)}: init_args.weights {weights!r} is not one of "
                                f"{list(enum.__members__)}")
    return _with_weights(spec, wants_weights, lambda: torchvision.models.get_model(name, weights=weights, **kwargs))


#: init_args that ask timm or torchvision for published or saved weights
_WEIGHT_ARGS = ("pretrained", "weights", "pretrained_cfg_overlay", "checkpoint_path")


def _with_weights(spec: dict[str, Any], wants_weights: bool, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` of a timm or torchvision model; when weights were asked for, a failure (none published, no
    network, a missing file) becomes one :class:`BackboneError` line. User classes are not wrapped: their own
    errors keep their traceback even when they take a ``pretrained`` argument."""
    try:
        return build()
    except (RuntimeError, OSError) as e:
        if not wants_weights:
            raise
        cause = " ".join(str(e).split()) or type(e).__name__
        raise BackboneError(f"backbone {backbone_label(spec)}: its pretrained weights could not be loaded "
                            f"({type(e).__name__}: {cause})") from e


def backbone_label(spec: str | Mapping[str, Any]) -> str:
    """Display name of a backbone spec: its name or class path, with its ``init_args`` when it has any.

    ``small_cnn`` and ``small_cnn(width=8)`` are then told apart in the table and in ``summary.json``.
    """
    if isinstance(spec, str):
        return spec
    name = str(spec.get("name") or spec.get("class_path"))
    args = spec.get("init_args") or {}
    if not args:
        return name
    return name + "(" + ", ".join(f"{k}={_plain(v)!r}" for k, v in sorted(args.items())) + ")"


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_output(model: nn.Module, sample: torch.Tensor, num_classes: int, label: str) -> None:
    """Run ``model`` on one sample and raise :class:`BackboneError` unless it returns ``(1, num_classes)`` logits."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample.unsqueeze(0))
    except Exception as e:  # any failure here is the backbone not fitting the data; say which and why, in one line
        raise BackboneError(f"backbone {label!r} fails on a {tuple(sample.shape)} input: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.shape != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise BackboneError(f"backbone {label!r} returns {shape} for one sample, expected (1, {num_classes}) logits "
                            f"for the dataset's {num_classes} classes")
