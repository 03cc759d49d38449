"""Class-similarity ("dark knowledge") matrices from a teacher's logits, and what to read off them.

All functions accept ``torch.Tensor`` or ``numpy.ndarray`` inputs (any float dtype, float16 included; computation runs
in float32/float64 on the CPU) and return NumPy arrays, which feed scipy, matplotlib, CSV and rich tables directly.
Nothing here loops over samples in Python: per-class aggregation is one ``index_add_`` over the sample axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import torch
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

ArrayLike: TypeAlias = torch.Tensor | np.ndarray


def as_float_tensor(x: ArrayLike, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Return ``x`` as a detached CPU tensor of ``dtype`` (no copy when it already is one)."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.to(device="cpu", dtype=dtype)


def as_label_tensor(labels: ArrayLike, num_classes: int | None = None) -> torch.Tensor:
    """Return ``labels`` as a 1-D int64 CPU tensor, checking that they lie in ``[0, num_classes)`` when given."""
    t = labels.detach() if isinstance(labels, torch.Tensor) else torch.from_numpy(np.asarray(labels))
    t = t.to(device="cpu", dtype=torch.long).reshape(-1)
    if num_classes is not None and t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got range [{int(t.min())}, {int(t.max())}]")
    return t


def as_square_matrix(matrix: ArrayLike) -> np.ndarray:
    """Return ``matrix`` as a float64 ``(C, C)`` array, rejecting any other shape."""
    m = as_float_tensor(matrix, torch.float64).numpy()
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square (C, C) matrix, got shape {tuple(m.shape)}")
    return m


def symmetrise(matrix: ArrayLike) -> np.ndarray:
    """Return the symmetric part ``(S + S^T) / 2`` of a class-similarity matrix as float64."""
    m = as_square_matrix(matrix)
    return (m + m.T) / 2


def soften(logits: ArrayLike, temperature: float = 1.0) -> np.ndarray:
    """Temperature-softened probabilities ``p_ij = exp(z_ij / T) / sum_k exp(z_ik / T)`` over the last axis.

    Args:
        logits: ``(N, C)`` (or any ``(..., C)``) logits; float16 is upcast to float32 first.
        temperature: ``T > 0``; larger values spread mass onto the non-argmax ("dark knowledge") classes.

    Returns:
        float32 array of the same shape whose rows sum to 1.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(as_float_tensor(logits) / temperature, dim=-1).numpy()


def class_similarity(probs: ArrayLike, labels: ArrayLike, num_classes: int) -> np.ndarray:
    """Dark-knowledge matrix: row ``c`` is the teacher's average belief about *other* classes for samples of ``c``.

    With ``n_c`` samples of true class ``c`` and softened probabilities ``p_i``:

        m_c = (1 / n_c) * sum_{i: y_i = c} p_i                     (mean softened distribution of class c)
        S[c, j] = m_c[j] / sum_{k != c} m_c[k]  for j != c,  S[c, c] = 0

    The mean is taken first and the true class removed afterwards (the scale ``1 / n_c`` cancels in the
    renormalisation), so confident samples are not individually blown up. Every row sums to 1 with an exact zero
    diagonal, except that a class without samples, or whose samples put all their mass on ``c``, gets a zero row.

    Args:
        probs: ``(N, C)`` probabilities, e.g. ``soften(logits, T)``.
        labels: ``(N,)`` integer true labels in ``[0, num_classes)``.
        num_classes: ``C``.

    Returns:
        ``(C, C)`` float64 matrix ``S``.
    """
    p = as_float_tensor(probs)
    y = as_label_tensor(labels, num_classes)
    if p.ndim != 2 or p.shape[1] != num_classes or p.shape[0] != y.numel():
        raise ValueError(f"expected probs (N, {num_classes}) and labels (N,); got {tuple(p.shape)} and {y.numel()}")
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float32).index_add_(0, y, p).double()
    sums.fill_diagonal_(0.0)
    row_mass = sums.sum(dim=1, keepdim=True)
    return torch.where(row_mass > 0, sums / row_mass.clamp_min(torch.finfo(torch.float64).tiny), 0.0).numpy()


@dataclass(frozen=True)
class Neighbours:
    """Top-k dark-knowledge neighbours: ``index[c, r]`` is class ``c``'s rank-``r`` neighbour, ``mass`` its share."""

    index: np.ndarray  # (C, k) int64
    mass: np.ndarray  # (C, k) float64


def neighbours(matrix: ArrayLike, k: int = 5) -> Neighbours:
    """For each class, the ``k`` classes with the largest ``S[c, j]`` (``j != c``), largest first.

    ``k`` is clipped to ``C - 1``. Rows that are all zero (classes without samples) still return indices, with zero
    mass; check ``mass`` before trusting them.
    """
    m = as_square_matrix(matrix)
    k = max(0, min(k, m.shape[0] - 1))
    masked = m.copy()
    np.fill_diagonal(masked, -np.inf)
    index = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    return Neighbours(index=index, mass=np.take_along_axis(m, index, axis=1))


@dataclass(frozen=True)
class Pairs:
    """Unordered class pairs ``(first[r], second[r])`` with ``first < second``, most similar first."""

    first: np.ndarray  # (n,) int64
    second: np.ndarray  # (n,) int64
    similarity: np.ndarray  # (n,) float64, entries of (S + S^T) / 2


def most_similar_pairs(matrix: ArrayLike, n: int = 10) -> Pairs:
    """The ``n`` most similar unordered class pairs under the symmetrised matrix ``(S + S^T) / 2``.

    Each pair ``{i, j}`` appears once (as ``i < j``); ties keep row-major order.
    """
    sym = symmetrise(matrix)
    first, second = np.triu_indices(sym.shape[0], k=1)
    values = sym[first, second]
    top = np.argsort(-values, kind="stable")[: max(0, n)]
    return Pairs(first=first[top], second=second[top], similarity=values[top])


def cluster_order(matrix: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Order classes so that mutually similar ones sit together, via average-linkage hierarchical clustering.

    Distances come from the symmetrised matrix normalised by its largest off-diagonal entry:

        D[i, j] = 1 - sym[i, j] / max_{a != b} sym[a, b],   sym = (S + S^T) / 2,   D[i, i] = 0

    so the most similar pair is at distance 0 and unrelated classes at 1. Average linkage (UPGMA) is invariant to
    this positive affine rescaling, so the normalisation only puts dendrogram heights on a ``[0, 1]`` scale; it does
    not change the tree. Leaves are optimally ordered (scipy ``optimal_ordering=True``) for a smoother heatmap.

    Returns:
        ``(order, Z)``: ``order`` is a permutation of ``range(C)`` (dendrogram leaf order), ``Z`` the
        ``(C - 1, 4)`` scipy linkage matrix for :func:`scipy.cluster.hierarchy.dendrogram`.
    """
    sym = symmetrise(matrix)
    c = sym.shape[0]
    if c < 2:
        return np.arange(c), np.zeros((0, 4))
    np.fill_diagonal(sym, 0.0)
    scale = sym.max()
    dist = 1.0 - (sym / scale if scale > 0 else sym)
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(np.clip(dist, 0.0, None), checks=False), method="average", optimal_ordering=True)
    return leaves_list(z), z
