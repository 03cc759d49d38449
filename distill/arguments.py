"""Free-form keyword arguments checked against a signature, and ``class_path``/``init_args`` objects built from them.

One mechanism serves every free-form section of a recipe: ``data`` options, ``kd.init_args``, and the user's
``trainer.logger`` / ``trainer.callbacks`` entries. An unknown key is a one-line error that lists the accepted ones.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jsonargparse import ArgumentParser

from distill.errors import UserError


class ArgumentsError(UserError, ValueError):
    """A keyword argument a callable does not take, or a class path that cannot be imported; one line."""


def accepted_kwargs(fn: Callable[..., Any]) -> set[str] | None:
    """Names ``fn`` (a function, or a class's ``__init__`` along its MRO) accepts by keyword; None for ``**kwargs``.

    For a class whose ``__init__`` takes ``**kwargs`` and passes them up (a subclass of a data module, say), the
    parents' parameters are collected too; the result is None only when no class in the MRO names its keywords.
    A class that forwards ``**kwargs`` elsewhere (TensorBoardLogger to its SummaryWriter: ``comment``,
    ``flush_secs``, ...) also takes the parameters jsonargparse finds there -- the ones LightningCLI accepts.
    """
    targets = [k.__init__ for k in fn.__mro__ if "__init__" in vars(k) and k is not object] \
        if inspect.isclass(fn) else [fn]
    names: set[str] = set()
    open_ended = forwards = False
    for target in targets:
        try:
            params = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            return None
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                open_ended = forwards = True
            elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                names.add(p.name)
        if not open_ended:
            break
        open_ended = False
    if forwards and inspect.isclass(fn):
        names |= forwarded_kwargs(fn)
    return names or None


def forwarded_kwargs(cls: type) -> set[str]:
    """The keyword parameters of ``cls`` as LightningCLI's parser (jsonargparse) resolves them, including those its
    ``__init__`` passes on through ``**kwargs``; empty when jsonargparse cannot read the class."""
    parser = ArgumentParser(exit_on_error=False)
    try:
        parser.add_class_arguments(cls, "cls", fail_untyped=False, sub_configs=False)
        return set(vars(parser.get_defaults().cls))
    except (ValueError, TypeError, NameError, AttributeError):  # a signature jsonargparse cannot follow
        return set()


def check_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any], where: str, reserved: Iterable[str] = ()) -> None:
    """Raise :class:`ArgumentsError` naming the first key of ``kwargs`` that ``fn`` does not accept.

    Args:
        fn: the callable or class the keywords are for.
        kwargs: the user's keywords.
        where: the recipe key the keywords sit under (``kd.init_args``), for the message.
        reserved: names that ``fn`` accepts but that must be set elsewhere (they are not listed as accepted).
    """
    reserved = set(reserved)
    accepted = accepted_kwargs(fn)
    for key in sorted(kwargs):
        if key in reserved:
            raise ArgumentsError(f"{where}.{key} is set by its own recipe key, not here")
        if accepted is not None and key not in accepted:
            listing = ", ".join(sorted(accepted - reserved)) or "none"
            raise ArgumentsError(f"{where}.{key} is not an argument of {_name(fn)} (accepted: {listing})")


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def import_class(path: str, search: Iterable[str] = (), where: str = "class_path") -> Callable[..., Any]:
    """Import ``pkg.module.Name``; a bare ``Name`` is looked up in the ``search`` modules in order."""
    module_name, _, attr = path.rpartition(".")
    candidates = [module_name] if module_name else list(search)
    for name in candidates:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            if module_name:
                raise ArgumentsError(f"{where} {path!r} cannot be imported: {e}") from None
            continue
        if hasattr(module, attr):
            return getattr(module, attr)
    looked = f" (looked in {', '.join(candidates)})" if not module_name else ""
    raise ArgumentsError(f"{where} {path!r} cannot be imported: no {attr!r}{looked}")


def object_spec(value: Any, where: str) -> tuple[str, dict[str, Any]]:
    """``(class_path, init_args)`` of a ``"Name"`` or ``{class_path: ..., init_args: {...}}`` recipe value.

    Keys beside ``class_path`` and ``init_args`` count as init_args, as LightningCLI's ``--x.key`` short form does.
    """
    if isinstance(value, str):
        return value, {}
    if not isinstance(value, Mapping) or not isinstance(value.get("class_path"), str):
        raise ArgumentsError(f"{where} must be a class name or a mapping with class_path (and init_args), "
                             f"got {value!r}")
    init_args = dict(value.get("init_args") or {})
    init_args.update({k: v for k, v in value.items() if k not in ("class_path", "init_args")})
    return value["class_path"], init_args


def build_object(value: Any, where: str, search: Iterable[str] = (), defaults: Mapping[str, Any] | None = None,
                 expect: type | None = None) -> Any:
    """Instantiate a ``class_path``/``init_args`` recipe value after checking its keywords.

    Args:
        value: the recipe value (see :func:`object_spec`).
        where: its recipe key, for messages.
        search: modules where a bare class name is looked up (``lightning.pytorch.loggers``, ...).
        defaults: keywords filled in when the class takes them and the user gave none (a logger's ``save_dir``).
        expect: the base class the object must be an instance of.
    """
    path, init_args = object_spec(value, where)
    cls = import_class(path, search, where)
    check_kwargs(cls, init_args, f"{where}.init_args")
    accepted = accepted_kwargs(cls) or set()
    for key, default in (defaults or {}).items():
        if key in accepted and init_args.get(key) is None:
            init_args[key] = default
    if expect is not None and not (inspect.isclass(cls) and issubclass(cls, expect)):
        raise ArgumentsError(f"{where} {path!r} is not a {expect.__name__}")
    try:
        return cls(**init_args)
    except Exception as e:  # the user's class rejected its arguments or a package it needs is missing: one line
        raise ArgumentsError(f"{where} {path!r} cannot be built: {type(e).__name__}: {' '.join(str(e).split())}"
                             ) from None
