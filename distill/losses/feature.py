"""Feature distillation losses: they read named intermediate features of student and teacher (teacher run online).

Layer pairs are named in the recipe, ``kd.init_args.pairs: [[student_layer, teacher_layer], ...]``, with the
names of :mod:`distill.outputs` (module paths, or timm ``feature_info`` indices). Both losses add the hard-label
cross-entropy, as their papers train the student on labels and hints together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from distill.losses.base import LOSSES, TEACHER_FEATURES, DistillLoss, LossOutput, Progress
from distill.outputs import ModelOutput


def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis' spatial attention: ``normalize(mean_c f_c^2)`` flattened, shape ``(B, H*W)``."""
    return F.normalize(feature.float().pow(2).mean(dim=1).flatten(1), dim=1)


def attention_transfer(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the two attention maps (the reference code's form of the paper's L2 distance).

    A student map of another spatial size is average-pooled to the teacher's size first.
    """
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.adaptive_avg_pool2d(student, teacher.shape[-2:])
    return (attention_map(student) - attention_map(teacher)).pow(2).mean()


def _pairs(pairs: Sequence[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    out = tuple((str(p[0]), str(p[1])) for p in pairs if isinstance(p, (list, tuple)) and len(p) == 2)
    if not out or len(out) != len(pairs):
        raise ValueError(f"kd.init_args.pairs must be a non-empty list of [student_layer, teacher_layer], "
                         f"got {pairs!r}")
    return out


class FeatureLoss(DistillLoss):
    """Shared part of the feature losses: layer pairs, the online-teacher need, CE on labels plus the hint term.

    Terms: ``ce`` (weight 1) and the hint term, named by :attr:`term` (weight ``weight``).
    """

    needs = frozenset({TEACHER_FEATURES})
    term: ClassVar[str] = "hint"

    def __init__(self, pairs: Sequence[Sequence[str]], weight: float) -> None:
        super().__init__()
        self.pairs = _pairs(pairs)
        self.weight = float(weight)

    def feature_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(s for s, _ in self.pairs), tuple(t for _, t in self.pairs)

    def check(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        """Every paired feature is a ``(B, C, H, W)`` map (a convolutional stage, not a vector)."""
        for who, out, names in (("student", student, self.feature_names()[0]),
                                ("teacher", teacher, self.feature_names()[1])):
            for name in names:
                shape = tuple(out.features[name].shape) if out is not None and name in out.features else None
                if shape is None or len(shape) != 4:
                    raise ValueError(f"{who} feature {name!r} has shape {shape}, but {type(self).__name__} pairs "
                                     "(B, C, H, W) feature maps: name a convolutional stage")

    def hint(self, student: ModelOutput, teacher: ModelOutput) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, student: ModelOutput, target: torch.Tensor, teacher: ModelOutput,
                progress: Progress | None = None) -> LossOutput:
        ce, hint = F.cross_entropy(student.logits, target), self.hint(student, teacher)
        return LossOutput(ce + self.weight * hint, {"ce": ce.detach(), self.term: hint.detach()},
                          {"ce": 1.0, self.term: self.weight})


@LOSSES.register("fitnet")
class FitNetsLoss(FeatureLoss):
    """FitNets hints (Romero et al., ICLR 2015): ``CE + weight * sum_pairs MSE(r(f_s), f_t)``. Terms: ``ce``, ``hint``.

    ``r`` is a learned regressor per pair, a 1x1 convolution and BatchNorm from the student's channels to the
    teacher's (a student map of another spatial size is resized bilinearly first). It is built from the first
    batch's shapes (:meth:`bind`), trains with the student, and is saved in the checkpoint under ``loss.``; a student
    rebuilt for evaluation or as the next teacher is the backbone alone.

    Args:
        pairs: ``[[student_layer, teacher_layer], ...]``.
        weight: weight of the hint term; 100, mdistiller's CIFAR setting for FitNets (hints on conv features whose
            squared errors are small next to the CE).
    """

    has_parameters = True

    def __init__(self, pairs: Sequence[Sequence[str]], weight: float = 100.0) -> None:
        super().__init__(pairs, weight)
        self.regressors = nn.ModuleList()

    def bind(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        if len(self.regressors) or teacher is None:
            return
        for s, t in self.pairs:
            cs, ct = student.features[s].shape[1], teacher.features[t].shape[1]
            self.regressors.append(nn.Sequential(nn.Conv2d(cs, ct, kernel_size=1, bias=False), nn.BatchNorm2d(ct)))
        self.regressors.to(student.logits.device)

    def hint(self, student: ModelOutput, teacher: ModelOutput) -> torch.Tensor:
        total = student.logits.new_zeros(())
        for (s, t), regressor in zip(self.pairs, self.regressors, strict=True):
            fs, ft = student.features[s], teacher.features[t]
            if fs.shape[-2:] != ft.shape[-2:]:
                fs = F.interpolate(fs, size=ft.shape[-2:], mode="bilinear", align_corners=False)
            total = total + F.mse_loss(regressor(fs), ft.float())
        return total


@LOSSES.register("at")
class AttentionLoss(FeatureLoss):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017): ``CE + weight * sum_pairs AT(f_s, f_t)``.

    See :func:`attention_transfer`. No parameters of its own. Terms: ``ce``, ``at``.

    Args:
        pairs: ``[[student_layer, teacher_layer], ...]``.
        weight: ``beta``; 1000 as in the paper's CIFAR experiments (attention maps are unit vectors, so their
            squared differences are tiny).
    """

    term = "at"

    def __init__(self, pairs: Sequence[Sequence[str]], weight: float = 1000.0) -> None:
        super().__init__(pairs, weight)

    def hint(self, student: ModelOutput, teacher: ModelOutput) -> torch.Tensor:
        return sum((attention_transfer(student.features[s], teacher.features[t]) for s, t in self.pairs),
                   student.logits.new_zeros(()))
