"""The founding notes' three paradigms for a new task, scored on the same meta-test episodes as MAML.

One network is trained with cross-entropy on all meta-train classes pooled (:func:`pretrain`); then, per episode:

* ``feature_extraction`` -- frozen features, a logistic-regression head fitted on the support set;
* ``fine_tuning`` -- a new zero-initialised N-way head, then K steps of SGD on the support set on *all* parameters;
* ``nearest_mean`` -- each query to the closest class mean (prototype) of the support features;
* ``nearest_neighbour`` -- each query to the class of its closest support feature (1-NN).

Features come from ``forward_features`` in the network's batch-statistics mode, computed per support set and per
query set, the same transductive convention as the meta-learned networks (see :mod:`distill.meta.networks`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.meta.episodes import Episode
from distill.meta.inner import adapt, forward
from distill.meta.networks import build_network


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the baselines (the ``baselines`` section of a meta recipe).

    Args:
        epochs: cross-entropy epochs over the pooled meta-train classes.
        batch_size: batch size of that training.
        lr: its Adam learning rate.
        finetune_steps: SGD steps of the fine-tuning paradigm (default 10).
        finetune_lr: their learning rate.
        logistic_c: inverse L2 strength of the logistic head.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    finetune_steps: int = 10
    finetune_lr: float = 0.1
    logistic_c: float = 1.0


def pretrain(images: Tensor, labels: Tensor, classes: Sequence[int], network: dict, cfg: BaselineConfig,
             seed: int) -> tuple[nn.Module, float]:
    """A network trained with cross-entropy on the samples of ``classes`` (relabelled 0..len-1).

    Returns:
        The network and the mean seconds per training step.
    """
    torch.manual_seed(seed)
    keep = torch.isin(labels, torch.tensor(list(classes)))
    x, y = images[keep], labels[keep]
    relabel = {int(c): i for i, c in enumerate(classes)}
    y = torch.tensor([relabel[int(v)] for v in y])
    net = build_network(network, len(classes), int(x.shape[1]), (int(x.shape[2]), int(x.shape[3])))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    steps, start = 0, time.perf_counter()
    net.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(y), generator=gen).split(cfg.batch_size):
            if len(idx) < 2:  # batch statistics need two samples
                continue
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    return net, (time.perf_counter() - start) / max(steps, 1)


def _features(net: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return net.forward_features(x)


def feature_extraction(net: nn.Module, episode: Episode, cfg: BaselineConfig) -> float:
    """Query accuracy of a logistic-regression head on frozen support features."""
    from sklearn.linear_model import LogisticRegression

    sx, sy, qx, qy = episode
    fs, fq = _features(net, sx).numpy(), _features(net, qx).numpy()
    mean, std = fs.mean(0), fs.std(0) + 1e-6
    head = LogisticRegression(C=cfg.logistic_c, max_iter=1000).fit((fs - mean) / std, sy.numpy())
    return float((head.predict((fq - mean) / std) == qy.numpy()).mean())


def fine_tuning(net: nn.Module, episode: Episode, cfg: BaselineConfig) -> float:
    """Query accuracy after ``finetune_steps`` SGD steps on all parameters with a new zero-initialised head."""
    sx, sy, qx, qy = episode
    way = int(sy.max()) + 1
    params = {n: p.detach().clone().requires_grad_(True) for n, p in net.named_parameters()}
    params["head.weight"] = torch.zeros(way, params["head.weight"].shape[1], requires_grad=True)
    params["head.bias"] = torch.zeros(way, requires_grad=True)
    with torch.enable_grad():
        fast = adapt(net, params, sx, sy, F.cross_entropy, cfg.finetune_steps, cfg.finetune_lr, list(params), True)
    with torch.no_grad():
        return float((forward(net, fast, qx).argmax(1) == qy).float().mean())


def nearest_mean(net: nn.Module, episode: Episode, cfg: BaselineConfig) -> float:
    """Query accuracy of the nearest class mean (Euclidean) in feature space."""
    sx, sy, qx, qy = episode
    fs, fq = _features(net, sx), _features(net, qx)
    protos = torch.stack([fs[sy == c].mean(0) for c in range(int(sy.max()) + 1)])
    return float((torch.cdist(fq, protos).argmin(1) == qy).float().mean())


def nearest_neighbour(net: nn.Module, episode: Episode, cfg: BaselineConfig) -> float:
    """Query accuracy of 1-NN (Euclidean) among the support features."""
    sx, sy, qx, qy = episode
    fs, fq = _features(net, sx), _features(net, qx)
    return float((sy[torch.cdist(fq, fs).argmin(1)] == qy).float().mean())


PARADIGMS: dict[str, Callable[[nn.Module, Episode, BaselineConfig], float]] = {
    "feature_extraction": feature_extraction,
    "fine_tuning": fine_tuning,
    "nearest_mean": nearest_mean,
    "nearest_neighbour": nearest_neighbour,
}


def score_paradigms(net: nn.Module, episodes: Callable[[int], Episode], n: int,
                    cfg: BaselineConfig) -> dict[str, dict[str, float | list[float]]]:
    """Every paradigm on episodes ``0..n-1``: per-episode accuracies and seconds per episode."""
    net.eval()
    out: dict[str, dict] = {}
    for name, fn in PARADIGMS.items():
        start = time.perf_counter()
        scores = [fn(net, episodes(i), cfg) for i in range(n)]
        out[name] = {"scores": scores, "eval_seconds_per_episode": (time.perf_counter() - start) / n,
                     "mean": float(np.mean(scores))}
    return out
