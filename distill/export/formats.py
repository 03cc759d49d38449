"""The export formats (a registry) and the check every exported file passes before it is kept.

A format writes one file beside ``config.json`` in the export folder and reads it back as a callable
``(B, C, H, W) float tensor -> (B, classes) logits``. :func:`compare` runs that callable and the PyTorch network on
the same real test images and measures how far their probabilities are apart; an export whose difference is over
the tolerance is refused. The formats register themselves in :data:`FORMATS` when their module is imported
(:mod:`distill.export.timm_folder`, :mod:`distill.export.onnx`, :mod:`distill.export.torchscript`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from distill.errors import UserError
from distill.registry import Registry

__all__ = ["FORMATS", "Check", "ExportError", "ExportFormat", "Runtime", "compare"]

Runtime = Callable[[torch.Tensor], torch.Tensor]
EXTRA = "pip install 'distill[export]'"


class ExportError(UserError, ValueError):
    """A run, generation, option or output folder that cannot be exported or predicted with; one line."""


class ExportFormat:
    """One way a network leaves the run: ``filename`` in the export folder, written and read back.

    Subclasses set the class attributes and implement :meth:`write` and :meth:`load` (class methods: a format has
    no state).
    """

    name: ClassVar[str] = ""
    filename: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()  # Python packages it imports (the ``export`` extra)

    @classmethod
    def require(cls) -> None:
        """Raise :class:`ExportError` (one line naming the packages) unless the format's packages are installed."""
        missing = [name for name in cls.needs if importlib.util.find_spec(name) is None]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise ExportError(f"--format {cls.name} needs {', '.join(missing)}, which {verb} not installed: {EXTRA}")

    @classmethod
    def write(cls, network: nn.Module, example: torch.Tensor, folder: Path) -> None:
        """Write ``folder / filename`` from ``network`` (in eval mode); ``example`` is a real input batch of 2."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: Path) -> Runtime:
        """The exported network of ``folder`` as a callable on CPU float tensors."""
        raise NotImplementedError

    @classmethod
    def usage(cls, folder: str) -> str:
        """Python that loads the export (for the model card)."""
        raise NotImplementedError


FORMATS: Registry[type[ExportFormat]] = Registry("export format")


@dataclass(frozen=True)
class Check:
    """How far an exported network's outputs are from PyTorch's on the same real test inputs.

    Attributes:
        samples: test images compared.
        max_probability: largest absolute difference of a softmax probability.
        max_logit: largest absolute difference of an output (a logit; a log-probability for an ensemble).
        same_argmax: images on which both predict the same class.
        tolerance: the largest ``max_probability`` accepted.
    """

    samples: int
    max_probability: float
    max_logit: float
    same_argmax: int
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_probability <= self.tolerance

    def describe(self, what: str) -> str:
        """One line: ``onnx vs PyTorch on 64 test images: max |Δp| 2.4e-07, max |Δlogit| 9.5e-07, same class 64/64``."""
        return (f"{what} vs PyTorch on {self.samples} test images of the run: max |Δp| {self.max_probability:.1e}, "
                f"max |Δlogit| {self.max_logit:.1e}, same class {self.same_argmax}/{self.samples} "
                f"(tolerance {self.tolerance:g} on probabilities)")

    def as_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "max_abs_probability_difference": self.max_probability,
                "max_abs_logit_difference": self.max_logit, "same_class": self.same_argmax,
                "tolerance": self.tolerance}


def compare(network: nn.Module, runtime: Runtime, inputs: torch.Tensor, tolerance: float, what: str) -> Check:
    """Run ``network`` and ``runtime`` on ``inputs`` (one batch) and measure their difference.

    Raises:
        ExportError: the exported network does not run on this batch (a batch size fixed at export time, say) or
            returns another shape.
    """
    with torch.no_grad():
        expected = network(inputs).float()
        try:
            got = runtime(inputs).float()
        except (RuntimeError, ValueError) as e:  # onnxruntime's and TorchScript's errors are RuntimeErrors
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"the {what} export does not run on a batch of {len(inputs)} test images: {first}"
                              ) from None
    if got.shape != expected.shape:
        raise ExportError(f"the {what} export returns {tuple(got.shape)} for a batch of {len(inputs)} test images, "
                          f"PyTorch {tuple(expected.shape)}")
    prob = (got.softmax(-1) - expected.softmax(-1)).abs().max().item()
    logit = (got - expected).abs().max().item()
    same = int((got.argmax(-1) == expected.argmax(-1)).sum())
    return Check(len(inputs), prob, logit, same, tolerance)
