"""The meta-learning LightningModule: MAML, FOMAML and ANIL (optionally Meta-SGD) over batches of episodes.

A training batch is ``meta_batch`` episodes; the loss is their mean query loss after ``inner_steps`` adaptation
steps (:mod:`distill.meta.inner`), and the optimiser steps on the initial parameters. Validation and test adapt too,
so they need gradients: the Trainer must be built with ``inference_mode=False`` (Lightning then runs evaluation under
``torch.no_grad``, which :meth:`_evaluate` lifts with ``torch.enable_grad``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from distill.meta.inner import detached_params, query_loss
from distill.meta.networks import build_network
from distill.registry import Registry


@dataclass(frozen=True)
class Method:
    """What a meta-learning method fixes: first-order or not, and which parameters adapt (``all`` or ``head``)."""

    first_order: bool
    adapt: str


METHODS: Registry[Method] = Registry("meta method")
METHODS.register("maml")(Method(first_order=False, adapt="all"))
METHODS.register("fomaml")(Method(first_order=True, adapt="all"))
METHODS.register("anil")(Method(first_order=False, adapt="head"))

ADAPT = ("all", "head")


def mse(out: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(out, y)


class MetaModule(L.LightningModule):
    """Meta-learn the initial parameters of a network (and, with ``learn_inner_lr``, its inner learning rates).

    Args:
        network: ``{name: conv4|mlp, ...its keyword arguments}``.
        num_outputs: head outputs (N-way) or 1 for regression.
        in_chans: input channels.
        image_hw: input ``(H, W)``.
        regression: sinusoid-style regression (MSE) instead of N-way classification (cross-entropy).
        method: ``maml``, ``fomaml`` or ``anil`` (see :data:`METHODS`).
        inner_steps: K, inner SGD steps in meta-training.
        eval_inner_steps: inner steps at validation/test (default: ``inner_steps``).
        inner_lr: α, the inner learning rate (the initial value when learned).
        learn_inner_lr: Meta-SGD: one learned inner learning rate per adapted parameter tensor.
        first_order: override the method's first-order switch (None: the method's).
        adapt: override which parameters adapt, ``all`` or ``head`` (None: the method's).
        meta_lr: Adam learning rate of the outer loop.
    """

    def __init__(self, network: dict[str, Any], num_outputs: int, in_chans: int, image_hw: tuple[int, int],
                 regression: bool = False, method: str = "maml", inner_steps: int = 1,
                 eval_inner_steps: int | None = None, inner_lr: float = 0.4, learn_inner_lr: bool = False,
                 first_order: bool | None = None, adapt: str | None = None, meta_lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        chosen = METHODS.get(method)
        self.first_order = chosen.first_order if first_order is None else bool(first_order)
        self.adapt_mode = adapt or chosen.adapt
        if self.adapt_mode not in ADAPT:
            raise ValueError(f"adapt must be one of {', '.join(ADAPT)}, got {self.adapt_mode!r}")
        self.net = build_network(dict(network), num_outputs, in_chans, tuple(image_hw))
        names = [n for n, _ in self.net.named_parameters()]
        self.adapt_names = names if self.adapt_mode == "all" else [n for n in names if n.startswith("head.")]
        self.eval_steps = inner_steps if eval_inner_steps is None else eval_inner_steps
        self.loss_fn = mse if regression else F.cross_entropy
        self.inner_lrs = torch.nn.ParameterDict(
            {_key(n): torch.nn.Parameter(torch.tensor(float(inner_lr))) for n in self.adapt_names}
        ) if learn_inner_lr else None
        self.test_scores: list[float] = []

    # -- the meta-objective ------------------------------------------------------------------------------------------
    def lr(self) -> float | dict[str, Tensor]:
        """The inner learning rate: the fixed float, or name -> learned scalar (Meta-SGD)."""
        if self.inner_lrs is None:
            return float(self.hparams.inner_lr)
        return {n: self.inner_lrs[_key(n)] for n in self.adapt_names}

    def score(self, out: Tensor, y: Tensor) -> Tensor:
        """Accuracy (classification) or MSE (regression) of outputs ``out``."""
        return self.loss_fn(out, y) if self.hparams.regression else (out.argmax(1) == y).float().mean()

    def episode_loss(self, episode: tuple[Tensor, ...], steps: int, params: dict[str, Tensor] | None = None,
                     first_order: bool | None = None) -> tuple[Tensor, Tensor]:
        """Query ``(loss, score)`` of one episode after ``steps`` inner steps from ``params`` (default: the
        module's own, so the loss is differentiable w.r.t. them)."""
        sx, sy, qx, qy = episode
        params = dict(self.net.named_parameters()) if params is None else params
        fo = self.first_order if first_order is None else first_order
        loss, out = query_loss(self.net, params, (sx, sy), (qx, qy), self.loss_fn, steps, self.lr(),
                               self.adapt_names, fo)
        return loss, self.score(out.detach(), qy)

    def meta_loss(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """Mean query ``(loss, score)`` over a meta-batch of episodes after ``inner_steps`` inner steps."""
        losses, scores = zip(*(self.episode_loss(tuple(t[i] for t in batch), self.hparams.inner_steps)
                               for i in range(len(batch[0]))), strict=True)
        return torch.stack(losses).mean(), torch.stack(scores).mean()

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss, score = self.meta_loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        self.log("train/score", score, on_step=False, on_epoch=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad.detach().flatten() for p in self.net.parameters() if p.grad is not None]
        norm = torch.cat(grads).norm() if grads else torch.tensor(0.0)
        self.log("train/meta_grad_norm", norm, on_step=True, on_epoch=True)

    def adapted_scores(self, episode: tuple[Tensor, ...], steps: int) -> tuple[float, float]:
        """Query score before and after ``steps`` inner steps (no meta-gradient: fresh leaves, first order)."""
        with torch.enable_grad():
            before = self.episode_loss(episode, 0, detached_params(self.net), first_order=True)[1]
            after = self.episode_loss(episode, steps, detached_params(self.net), first_order=True)[1]
        return float(before), float(after)

    def _evaluate(self, batch: tuple[Tensor, ...], stage: str) -> list[float]:
        pairs = [self.adapted_scores(tuple(t[i] for t in batch), self.eval_steps) for i in range(len(batch[0]))]
        before = sum(p[0] for p in pairs) / len(pairs)
        after = [p[1] for p in pairs]
        self.log(f"{stage}/score_before", before, batch_size=len(pairs), on_epoch=True)
        self.log(f"{stage}/score", sum(after) / len(after), batch_size=len(pairs), on_epoch=True, prog_bar=True)
        return after

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def on_test_epoch_start(self) -> None:
        self.test_scores = []

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self.test_scores += self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.meta_lr)


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys cannot hold dots


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its normal 95% confidence interval (1.96 standard errors)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, 1.96 * math.sqrt(var / n)
