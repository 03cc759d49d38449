"""The timm folder: ``config.json`` + ``model.safetensors``, loadable with ``timm.create_model("local-dir:DIR")``.

``config.json`` is timm's own layout (``architecture``, ``num_classes``, ``label_names``, ``model_args`` and a
``pretrained_cfg`` with the input size, mean, std and interpolation), so ``timm.data.resolve_data_config`` finds the
preprocessing. Which ``architecture``:

* a timm model (the toolkit's own families are registered into timm when ``distill`` is imported): its name, its
  ``init_args`` as ``model_args``;
* any other backbone -- a ``class_path``, a name registered with ``register_backbone``, a torchvision model, a
  prompted ViT (merged: base, prompt and head in one state dict) -- ``distill_backbone``, with the backbone's spec
  (its class path or name and its arguments) in ``model_args``;
* an ensemble: ``distill_ensemble``, with every member's spec.

``distill_backbone`` and ``distill_ensemble`` are timm entrypoints registered here (``import distill`` imports this
module), so the same one call loads every export. Weights never come from the spec: arguments that would fetch them
(``pretrained``, ``weights``, ``checkpoint_path``, a prompted base's ``source``) are replaced, and the
exported tensors are loaded over the freshly built network.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file
from timm.models import build_model_with_cfg, register_model
from torch import nn

from distill.export.ensemble import ProbabilityEnsemble
from distill.export.formats import FORMATS, ExportFormat, Runtime
from distill.io import atomic_writer
from distill.models import BACKBONES, create_backbone
from distill.prompts import PromptedViT
from distill.spec import thaw

__all__ = ["TimmFolder", "distill_backbone", "distill_ensemble", "portable_backbone", "timm_config"]

#: init_args that make timm or torchvision fetch weights (the factory's list): dropped, the export holds them
WEIGHT_ARGS = ("pretrained", "weights", "pretrained_cfg_overlay", "checkpoint_path")
#: a prompted base is built at random, then overwritten by the exported tensors
RANDOM_BASE = {"seed": 0}

_CFG = {"url": "", "num_classes": 0, "input_size": (3, 224, 224), "pool_size": None, "crop_pct": 1.0,
        "interpolation": "bilinear", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "first_conv": None,
        "classifier": None}
default_cfgs = {"distill_backbone": dict(_CFG), "distill_ensemble": dict(_CFG)}


def _set_input_stats(model: nn.Module, input_stats: Sequence[Sequence[float]] | None) -> nn.Module:
    """A prompted network re-normalises from the data's statistics (not part of its state dict): set them."""
    if input_stats is not None:
        for module in model.modules():
            if isinstance(module, PromptedViT):
                module.adapter.set_data_stats(*input_stats)
    return model


def _backbone(backbone: dict[str, Any], num_classes: int, in_chans: int = 3,
              input_stats: Sequence[Sequence[float]] | None = None) -> nn.Module:
    return _set_input_stats(create_backbone(backbone, num_classes, in_chans), input_stats)


def _ensemble(members: Sequence[dict[str, Any]], num_classes: int, in_chans: int = 3,
              input_stats: Sequence[Sequence[float]] | None = None) -> nn.Module:
    networks = [create_backbone(member, num_classes, in_chans) for member in members]
    return _set_input_stats(ProbabilityEnsemble(networks), input_stats)


@register_model
def distill_backbone(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """A distill backbone that is not a timm model, rebuilt from its spec (``backbone=`` in ``model_args``)."""
    return build_model_with_cfg(_backbone, "distill_backbone", pretrained, **kwargs)


@register_model
def distill_ensemble(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """The probability-average of several distill backbones (``members=`` in ``model_args``)."""
    return build_model_with_cfg(_ensemble, "distill_ensemble", pretrained, **kwargs)


def portable_backbone(backbone: Any, network: nn.Module) -> dict[str, Any]:
    """A backbone spec that rebuilds ``network``'s architecture from nothing but code: no weight source in it."""
    spec = {"name": backbone} if isinstance(backbone, str) else thaw(backbone)
    args = {k: v for k, v in dict(spec.get("init_args") or {}).items() if k not in WEIGHT_ARGS}
    if isinstance(network, PromptedViT):  # merged: the base's tensors are in the export, not fetched from a source
        args = {**{k: v for k, v in args.items() if k != "base_sha256"}, "source": RANDOM_BASE}
    out = {key: spec[key] for key in ("name", "class_path") if key in spec}
    return {**out, "init_args": args} if args else out


def _native(spec: dict[str, Any]) -> str | None:
    """The timm name that builds ``spec`` as it is (the factory tries the user registry first), else None."""
    name = spec.get("name")
    return name if name is not None and name not in BACKBONES and timm.is_model(name) else None


def _input_stats(network: nn.Module) -> list[list[float]] | None:
    for module in network.modules():
        if isinstance(module, PromptedViT) and module.adapter.data_mean.numel():
            return [module.adapter.data_mean.flatten().tolist(), module.adapter.data_std.flatten().tolist()]
    return None


def timm_config(backbones: Sequence[Any], network: nn.Module, ensemble: bool, class_names: Sequence[str],
                pretrained_cfg: dict[str, Any]) -> dict[str, Any]:
    """timm's ``config.json`` of an exported network.

    Args:
        backbones: the backbone spec of each member (one unless ``ensemble``).
        network: the network (a :class:`~distill.export.ensemble.ProbabilityEnsemble` when ``ensemble``).
        ensemble: whether ``network`` averages several members.
        class_names: the label names, in label order.
        pretrained_cfg: the preprocessing keys (:meth:`~distill.export.preprocess.Preprocess.pretrained_cfg`).
    """
    members = list(network.members) if ensemble else [network]
    specs = [portable_backbone(b, n) for b, n in zip(backbones, members, strict=True)]
    stats = _input_stats(network)
    extra = {"input_stats": stats} if stats is not None else {}
    cfg = {**pretrained_cfg, "num_classes": len(class_names), "first_conv": None, "classifier": None}
    native = None if ensemble else _native(specs[0])
    if ensemble:
        architecture, model_args = "distill_ensemble", {"members": specs, **extra}
    elif native is not None:  # keep timm's own stem and head names: fine-tuning with another num_classes works
        architecture, model_args = native, dict(specs[0].get("init_args") or {})
        own = timm.models.get_pretrained_cfg(native)
        cfg.update(first_conv=own.first_conv if own else None, classifier=own.classifier if own else None)
    else:
        architecture, model_args = "distill_backbone", {"backbone": specs[0], **extra}
    return {"architecture": architecture, "num_classes": len(class_names), "label_names": list(class_names),
            "model_args": model_args, "pretrained_cfg": cfg}


@FORMATS.register("timm")
class TimmFolder(ExportFormat):
    """``model.safetensors`` beside timm's ``config.json``."""

    name = "timm"
    filename = "model.safetensors"
    description = "timm folder (config.json + model.safetensors)"

    @classmethod
    def write(cls, network: nn.Module, example: torch.Tensor, folder: Path) -> None:
        # cloned: safetensors refuses tensors that share memory, and timm loads the names strictly
        state = {k: v.detach().cpu().clone().contiguous() for k, v in network.state_dict().items()}
        with atomic_writer(folder / cls.filename) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})

    @classmethod
    def load(cls, folder: Path) -> Runtime:
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        return model

    @classmethod
    def usage(cls, folder: str) -> str:
        return ("import distill, timm  # importing distill registers its backbones into timm\n"
                f"model = timm.create_model('local-dir:{folder}', pretrained=True).eval()\n"
                "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))")
