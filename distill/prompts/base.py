"""The frozen base of a prompted student: where its weights come from, their sha256, and the input it expects.

Sources (``source`` of the ``prompted_vit`` backbone, exactly one key):

* ``checkpoint: RUN/gen-k/model.ckpt`` -- a generation of a distill run (its ``student.*`` tensors, classifier
  dropped; the base of a ``train_base: true`` prompted run), loaded ``weights_only=True``;
* ``file: PATH`` -- a local weights file through timm's loader (``pretrained_cfg_overlay=dict(file=PATH)``);
* ``pretrained: true`` -- timm's hub weights;
* ``seed: S`` -- a random base initialised under seed ``S`` (tests and controls).

The base is identified by the sha256 of its tensors (:func:`state_sha256`), recorded in every prompted checkpoint.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_data_config
from torch import nn

from distill.errors import UnsafeCheckpointError, UserError

SOURCES = ("checkpoint", "file", "pretrained", "seed")


class BaseMismatchError(UserError, ValueError):
    """A prompted checkpoint meets a base whose weights hash differs from the one it was trained on."""


@dataclass(frozen=True)
class BaseReference:
    """What a prompted checkpoint records of its frozen base instead of its weights."""

    source: str
    sha256: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "sha256": self.sha256}


class FrozenBase(nn.Module):
    """A prompted network's handling of its base: unless :attr:`trains_base`, the base stays in eval mode (no dropout,
    no drop-path, as VPT keeps its encoder) whatever mode the network is set to, and its tensors are left out of
    checkpoints (:meth:`frozen_prefixes`). Subclasses keep the base as ``self.base`` and say whether it trains."""

    base: nn.Module

    @property
    def trains_base(self) -> bool:
        """Whether the base trains too (full fine-tuning)."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> FrozenBase:
        """Set the mode; a frozen base stays in eval."""
        super().train(mode)
        if not self.trains_base:
            self.base.train(False)
        return self

    def frozen_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes (within this module) that are the frozen base, left out of checkpoints."""
        return () if self.trains_base else ("base.",)


def state_sha256(module: nn.Module) -> str:
    """sha256 over a module's state: every entry's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _source(source: dict[str, Any] | None) -> tuple[str, Any]:
    source = dict(source or {"seed": 0})
    keys = [k for k, v in source.items() if v is not None and v is not False]
    unknown = sorted(set(source) - set(SOURCES))
    if unknown or len(keys) != 1:
        raise ValueError(f"prompted_vit source needs exactly one of {', '.join(SOURCES)}, got {source!r}")
    return keys[0], source[keys[0]]


def describe_source(source: dict[str, Any] | None) -> str:
    """The ``source`` string a checkpoint records (``checkpoint /abs/path``, ``pretrained``, ``seed 0``...)."""
    kind, value = _source(source)
    if kind in ("checkpoint", "file"):
        return f"{kind} {Path(str(value)).resolve()}"
    return "pretrained" if kind == "pretrained" else f"seed {int(value)}"


def load_base(name: str, init_args: dict[str, Any] | None, source: dict[str, Any] | None) -> nn.Module:
    """The base ViT without classifier (``num_classes=0``), weights from ``source``, in eval mode.

    Raises:
        ValueError: unknown model, missing file, weights that do not fit (one line naming the source).
    """
    kind, value = _source(source)
    kwargs = {**dict(init_args or {}), "num_classes": 0}
    if not timm.is_model(name):
        raise ValueError(f"prompted_vit base {name!r} is not a timm model name")
    if kind in ("checkpoint", "file") and not Path(str(value)).is_file():
        raise ValueError(f"prompted_vit source.{kind}: file not found: {value}")
    try:
        if kind == "seed":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(value))
                model = timm.create_model(name, pretrained=False, **kwargs)
        elif kind == "pretrained":
            model = timm.create_model(name, pretrained=True, **kwargs)
        elif kind == "file":  # num_classes -1 differs from the model's 0: timm drops the file's classifier
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(value),
                                                                                     "num_classes": -1}, **kwargs)
        else:
            model = timm.create_model(name, pretrained=False, **kwargs)
            state = torch.load(str(value), map_location="cpu", weights_only=True)["state_dict"]
            weights = {k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}
            if weights and all(k.startswith(("base.", "prompt.", "head.", "data_initialised")) for k in weights):
                weights = {k.removeprefix("base."): v for k, v in weights.items() if k.startswith("base.")}
            weights = {k: v for k, v in weights.items() if not k.startswith("head.")}  # (a fine-tuned prompted run)
            model.load_state_dict(weights)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError.of(value, e) from None
    except (RuntimeError, OSError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"prompted_vit source.{kind} {value} cannot be loaded into {name}: {first}") from None
    if not hasattr(model, "blocks") or not hasattr(model, "_pos_embed"):
        raise ValueError(f"prompted_vit base {name!r} is not a timm VisionTransformer")
    return model.eval()


class InputAdapter(nn.Module):
    """Re-normalise, repeat grey to 3 channels and resize the data's tensors to what the base expects.

    The data arrive normalised with the data module's ``(mean, std)`` (on ``[0, 1]`` pixels); the base wants its
    own ``resolve_data_config`` mean/std at its input size. No parameters; the statistics are not checkpointed (they
    follow from the data and the base).
    """

    def __init__(self, base: nn.Module, data_mean: Sequence[float] | None = None,
                 data_std: Sequence[float] | None = None) -> None:
        super().__init__()
        config = resolve_data_config(model=base)
        self.size = tuple(int(s) for s in base.patch_embed.img_size)
        self.register_buffer("base_mean", torch.tensor(config["mean"]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("base_std", torch.tensor(config["std"]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("data_mean", torch.zeros(0), persistent=False)
        self.register_buffer("data_std", torch.zeros(0), persistent=False)
        if data_mean is not None:
            self.set_data_stats(data_mean, data_std)

    def set_data_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Declare the statistics the incoming tensors were normalised with (None: the base's own)."""
        self.data_mean = torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.data_std = torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_mean.numel():  # back to [0, 1] pixels, then the base's normalisation
            x = x * self.data_std.to(x) + self.data_mean.to(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.data_mean.numel():
            x = (x - self.base_mean.to(x)) / self.base_std.to(x)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return x
