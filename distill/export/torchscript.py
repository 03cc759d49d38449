"""TorchScript: ``model.pt``, traced on real test images; loads with ``torch.jit.load``, nothing of distill needed."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from distill.export.formats import FORMATS, ExportFormat, Runtime
from distill.io import atomic_writer

__all__ = ["TorchScriptFormat"]


@FORMATS.register("torchscript")
class TorchScriptFormat(ExportFormat):
    """``model.pt``: the network traced with ``torch.jit.trace`` (the batch size stays free; the image size is the
    one traced)."""

    name = "torchscript"
    filename = "model.pt"
    description = "TorchScript (model.pt, traced)"

    @classmethod
    def write(cls, network: nn.Module, example: torch.Tensor, folder: Path) -> None:
        with warnings.catch_warnings():  # TracerWarnings on shape checks (the image size is fixed) and the
            warnings.simplefilter("ignore")  # deprecation notice; the traced module is checked on another batch
            traced = torch.jit.trace(network, (example,))
            with atomic_writer(folder / cls.filename) as tmp:
                torch.jit.save(traced, str(tmp))

    @classmethod
    def load(cls, folder: Path) -> Runtime:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(folder / cls.filename), map_location="cpu").eval()

    @classmethod
    def usage(cls, folder: str) -> str:
        return ("import torch\n"
                f"model = torch.jit.load('{folder}/{cls.filename}').eval()\n"
                "logits = model(images)  # images: float32 (batch, C, H, W), normalised")
