"""Figures, rich tables and CSV for dark-knowledge analysis; the only module here that writes files.

Figures are built as ``matplotlib.figure.Figure`` objects drawn by ``FigureCanvasAgg`` directly, so importing this
module neither imports pyplot nor changes matplotlib's global backend, and works without a display.
"""

from __future__ import annotations

import csv
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table
from scipy.cluster.hierarchy import dendrogram

from distill.analysis.drift import Reliability
from distill.analysis.noise import Suspects
from distill.analysis.similarity import ArrayLike, Neighbours, Pairs, as_float_tensor, as_square_matrix
from distill.io import atomic_writer

DPI = 150


def _save(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` with the Agg canvas to ``path`` (format from its suffix), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as tmp:
        FigureCanvasAgg(fig).print_figure(str(tmp), dpi=DPI, bbox_inches="tight")
    return path


def _label_fontsize(n: int) -> float:
    """Tick-label size in points: 10 pt up to 40 labels, shrinking as ``400 / n`` to 4 pt at 100 labels."""
    return float(np.clip(400.0 / max(n, 1), 4.0, 10.0))


def _check_names(n: int, class_names: Sequence[str]) -> list[str]:
    if len(class_names) != n:
        raise ValueError(f"got {len(class_names)} class names for {n} classes")
    return [str(name) for name in class_names]


def plot_similarity_heatmap(
    matrix: ArrayLike, class_names: Sequence[str], order: Sequence[int] | None, path: str | Path
) -> Path:
    """Heatmap of ``S[order][:, order]`` (rows: true class, columns: where its dark knowledge goes).

    Every class is labelled on both axes; figure size grows and font size shrinks with the class count so that
    100 labels stay legible (4 pt at 150 dpi).
    """
    m = as_square_matrix(matrix)
    names = _check_names(m.shape[0], class_names)
    idx = np.arange(m.shape[0]) if order is None else np.asarray(order, dtype=np.int64)
    n, fs = idx.size, _label_fontsize(idx.size)
    side = max(5.0, n * fs * 1.5 / 72 + 2.0)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    image = ax.imshow(m[np.ix_(idx, idx)], cmap="viridis", interpolation="nearest", aspect="equal")
    ticks, labels = np.arange(n), [names[i] for i in idx]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=fs)
    ax.set_yticks(ticks, labels, fontsize=fs)
    ax.set_xlabel("dark-knowledge class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="share of non-target mass")
    return _save(fig, path)


def plot_dendrogram(linkage: ArrayLike, class_names: Sequence[str], path: str | Path) -> Path:
    """Dendrogram of a scipy linkage matrix (e.g. from :func:`~distill.analysis.similarity.cluster_order`).

    scipy computes the layout (``no_plot=True``) and the segments are drawn here, so pyplot is never touched.
    """
    z = as_float_tensor(linkage, torch.float64).numpy()
    names = _check_names(z.shape[0] + 1, class_names)
    tree = dendrogram(z, labels=names, no_plot=True)
    n, fs = len(tree["ivl"]), _label_fontsize(len(tree["ivl"]))
    fig = Figure(figsize=(max(6.0, n * fs * 1.5 / 72 + 1.0), 4.5))
    ax = fig.add_subplot()
    for xs, ys, color in zip(tree["icoord"], tree["dcoord"], tree["color_list"], strict=True):
        ax.plot(xs, ys, color=color, linewidth=0.9)
    ax.set_xticks(5.0 + 10.0 * np.arange(n), tree["ivl"], rotation=90, fontsize=fs)
    ax.set_xlim(0, 10 * n)
    ax.set_ylabel("average-linkage distance")
    return _save(fig, path)


def plot_reliability(reliability_result: Reliability, path: str | Path) -> Path:
    """Reliability diagram: per-bin accuracy against the diagonal, with the sample count per bin underneath."""
    r = reliability_result
    lo, width = r.bin_edges[:-1], np.diff(r.bin_edges)
    fig = Figure(figsize=(5.0, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(lo, np.nan_to_num(r.accuracy), width=width, align="edge", edgecolor="black", label="accuracy")
    gap_base = np.nan_to_num(np.minimum(r.accuracy, r.confidence))
    gap = np.nan_to_num(np.abs(r.confidence - r.accuracy))
    gap_style = {"fill": False, "edgecolor": "tab:red", "hatch": "//", "label": "gap"}
    top.bar(lo, gap, bottom=gap_base, width=width, align="edge", **gap_style)
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=f"ECE = {r.ece:.4f}")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(lo, r.count, width=width, align="edge", edgecolor="black", color="tab:gray")
    bottom.set(xlabel="confidence (max probability)", ylabel="samples")
    return _save(fig, path)


def plot_image_grid(images: ArrayLike, captions: Sequence[str], path: str | Path, ncols: int = 8) -> Path:
    """Grid of images with each caption written under its image (e.g. ``'label: cat / teacher: dog 0.97'``).

    Args:
        images: ``(N, C, H, W)`` with ``C`` in {1, 3}; uint8 in ``[0, 255]`` or float in ``[0, 1]`` (clipped).
        captions: ``N`` strings; long ones are wrapped.
        ncols: images per row (fewer if ``N`` is smaller).
    """
    raw = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if raw.ndim != 4 or raw.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, C, H, W) with C in {{1, 3}}, got shape {raw.shape}")
    if len(captions) != raw.shape[0]:
        raise ValueError(f"got {len(captions)} captions for {raw.shape[0]} images")
    pixels = raw / 255.0 if raw.dtype == np.uint8 else np.clip(raw.astype(np.float64), 0.0, 1.0)
    pixels = pixels.transpose(0, 2, 3, 1)
    n = pixels.shape[0]
    cols = max(1, min(ncols, n))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(1.8 * cols, 2.3 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, img, caption in zip(axes, pixels, captions, strict=False):  # axes may outnumber images
        ax.set_axis_on()
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(textwrap.fill(str(caption), width=26), fontsize=7)
    return _save(fig, path)


def suspect_captions(suspects: Suspects, class_names: Sequence[str]) -> list[str]:
    """Captions ``'label: <given> / teacher: <predicted> <probability>'`` for :func:`plot_image_grid`."""
    return [
        f"label: {class_names[y]} / teacher: {class_names[t]} {p:.2f}"
        for y, t, p in zip(suspects.label, suspects.teacher, suspects.probability, strict=True)
    ]


def neighbours_table(
    result: Neighbours, class_names: Sequence[str], classes: Sequence[int] | None = None, title: str | None = None
) -> Table:
    """One row per class (all, or ``classes``): its top-k dark-knowledge neighbours with their share of mass."""
    table = Table(title=title or "Dark-knowledge neighbours")
    table.add_column("class", style="bold")
    for rank in range(result.index.shape[1]):
        table.add_column(f"#{rank + 1}")
    for c in range(result.index.shape[0]) if classes is None else classes:
        cells = [f"{class_names[j]} ({m:.3f})" for j, m in zip(result.index[c], result.mass[c], strict=True)]
        table.add_row(class_names[c], *cells)
    return table


def pairs_table(result: Pairs, class_names: Sequence[str], title: str | None = None) -> Table:
    """Most similar class pairs with their symmetrised similarity."""
    table = Table(title=title or "Most similar class pairs")
    for name, justify in (("#", "right"), ("class", "left"), ("class", "left"), ("similarity", "right")):
        table.add_column(name, justify=justify)
    for rank, (i, j, s) in enumerate(zip(result.first, result.second, result.similarity, strict=True), start=1):
        table.add_row(str(rank), class_names[i], class_names[j], f"{s:.4f}")
    return table


def suspects_table(result: Suspects, class_names: Sequence[str], title: str | None = None) -> Table:
    """Label-noise suspects: sample index, given label, teacher's class and its probability."""
    table = Table(title=title or f"Label-noise suspects ({len(result)})")
    for name, justify in (("#", "right"), ("sample", "right"), ("label", "left"), ("teacher", "left"), ("p", "right")):
        table.add_column(name, justify=justify)
    rows = zip(result.index, result.label, result.teacher, result.probability, strict=True)
    for rank, (i, y, t, p) in enumerate(rows, start=1):
        table.add_row(str(rank), str(i), class_names[y], class_names[t], f"{p:.3f}")
    return table


def write_matrix_csv(matrix: ArrayLike, class_names: Sequence[str], path: str | Path) -> Path:
    """Write ``matrix`` as CSV with a header row and a first column of class names (values to 8 significant digits)."""
    m = as_square_matrix(matrix)
    names = _check_names(m.shape[0], class_names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", *names])
        writer.writerows([name, *(f"{v:.8g}" for v in row)] for name, row in zip(names, m, strict=True))
    return path
