"""ONNX: ``model.onnx`` with a dynamic batch dimension, checked in onnxruntime (the ``export`` extra).

Exported with PyTorch's ``torch.export``-based exporter (it needs ``onnxscript``), input ``input`` ``(batch, C, H,
W)``, output ``logits`` ``(batch, classes)``, weights inside the file (no external data: up to 2 GB).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from distill.export.formats import FORMATS, ExportError, ExportFormat, Runtime
from distill.io import atomic_writer

__all__ = ["OnnxFormat"]


@FORMATS.register("onnx")
class OnnxFormat(ExportFormat):
    """``model.onnx`` for onnxruntime and every ONNX consumer; needs nothing of distill or PyTorch to run."""

    name = "onnx"
    filename = "model.onnx"
    description = "ONNX (model.onnx, dynamic batch; input 'input', output 'logits')"
    needs = ("onnx", "onnxruntime", "onnxscript")

    @classmethod
    def write(cls, network: nn.Module, example: torch.Tensor, folder: Path) -> None:
        batch = torch.export.Dim("batch")
        chatter = io.StringIO()  # the exporter prints its progress; a failure is reported below, as one line
        with atomic_writer(folder / cls.filename) as tmp, contextlib.redirect_stdout(chatter), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(network, (example,), str(tmp), input_names=["input"], output_names=["logits"],
                                  dynamic_shapes=({0: batch},), external_data=False)
            except torch.onnx.errors.OnnxExporterError as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ExportError(f"the network cannot be exported to ONNX: {first}") from None

    @classmethod
    def load(cls, folder: Path) -> Runtime:
        import onnxruntime  # the optional dependency, checked by require()

        path = folder / cls.filename
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (entry,) = session.get_inputs()
        if not isinstance(entry.shape[0], str):  # the exporter fell back to the example's fixed batch size
            raise ExportError(f"{path} takes a fixed batch of {entry.shape[0]}: the network's batch dimension could "
                              "not be exported as dynamic")

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {entry.name: x.detach().cpu().float().numpy()})[0])

        return run

    @classmethod
    def usage(cls, folder: str) -> str:
        return ("import onnxruntime\n"
                f"session = onnxruntime.InferenceSession('{folder}/{cls.filename}')\n"
                "logits = session.run(None, {'input': images})[0]  # images: float32 (batch, C, H, W), normalised")
