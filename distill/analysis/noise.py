"""Label-noise suspects: samples whose label a confident teacher contradicts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from distill.analysis.similarity import ArrayLike, as_float_tensor, as_label_tensor


@dataclass(frozen=True)
class Suspects:
    """Suspected mislabelled samples, most confident disagreement first (all arrays have length ``n``)."""

    index: np.ndarray  # (n,) int64 sample indices into the inputs
    label: np.ndarray  # (n,) int64 given labels
    teacher: np.ndarray  # (n,) int64 teacher's argmax class
    probability: np.ndarray  # (n,) float32 teacher's probability of ``teacher``

    def __len__(self) -> int:
        return int(self.index.size)


def label_noise_suspects(
    probs: ArrayLike, labels: ArrayLike, threshold: float = 0.9, top: int | None = None
) -> Suspects:
    """Samples with ``argmax_j p_ij != y_i`` and ``max_j p_ij >= threshold``, sorted by ``max_j p_ij`` descending.

    Why 0.9 by default: for a reasonably calibrated teacher, a prediction made with probability ``q`` is right
    about ``q`` of the time, so at ``q >= 0.9`` the teacher's class is roughly nine times likelier than all other
    classes together, including the given label; the given label is then the likelier error. Lower thresholds mostly
    surface genuinely ambiguous images (hard examples rather than label errors); higher ones miss real errors,
    especially when probabilities are softened. Use ``probs`` at temperature 1 for this; a teacher that has
    memorised its training labels rarely disagrees on its own training set, so held-out or cross-fitted
    predictions find more.

    Args:
        probs: ``(N, C)`` teacher probabilities.
        labels: ``(N,)`` given labels.
        threshold: minimum teacher confidence in its (disagreeing) prediction, in ``[0, 1]``.
        top: keep at most this many suspects (``None``: all).

    Returns:
        :class:`Suspects`; ties in probability keep sample order.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    if top is not None and top < 0:
        raise ValueError(f"top must be >= 0 or None, got {top}")
    p = as_float_tensor(probs)
    y = as_label_tensor(labels, p.shape[-1] if p.ndim == 2 else None)
    if p.ndim != 2 or p.shape[0] != y.numel():
        raise ValueError(f"expected probs (N, C) and labels (N,); got {tuple(p.shape)} and {y.numel()}")
    confidence, teacher = p.max(dim=1)
    index = torch.nonzero((teacher != y) & (confidence >= threshold)).reshape(-1)
    order = torch.sort(confidence[index], descending=True, stable=True).indices
    index = index[order][:top]
    return Suspects(
        index=index.numpy(),
        label=y[index].numpy(),
        teacher=teacher[index].numpy(),
        probability=confidence[index].numpy(),
    )
