"""The inner loop of MAML as pure functions over a parameter dict (``torch.func.functional_call``).

``adapt`` unrolls K steps of SGD on a task's support set, θ_k = θ_{k-1} − α ∇L_support(θ_{k-1}), like an RNN
over the parameters. With ``first_order=False`` each step's gradient is itself differentiable
(``create_graph=True``), so the meta-gradient of the query loss at θ_K reaches θ_0 through every step's Jacobian
(I − α H_k): second-order MAML. With ``first_order=True`` the step gradients are constants and the Jacobian is the
identity: FOMAML. Which parameters adapt is a set of names (all of them for MAML, the head only for ANIL); the
others are used as they are.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Union

import torch
from torch import Tensor, nn
from torch.func import functional_call

LossFn = Callable[[Tensor, Tensor], Tensor]
InnerLR = Union[float, Mapping[str, Tensor]]


def forward(net: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """``net(x)`` with ``params`` (and the module's own buffers) in place of its parameters."""
    return functional_call(net, dict(params), (x,), strict=False)


def adapt(net: nn.Module, params: Mapping[str, Tensor], x: Tensor, y: Tensor, loss_fn: LossFn, steps: int,
          lr: InnerLR, adapt_names: Iterable[str], first_order: bool) -> dict[str, Tensor]:
    """K steps of SGD on ``(x, y)`` from ``params``; returns the adapted parameter dict.

    Args:
        net: the network (its parameters are not read; ``params`` replaces them).
        params: name -> tensor, the initial parameters θ_0 (every one requiring grad that should be adapted).
        x: support inputs.
        y: support targets.
        loss_fn: ``loss_fn(output, y)`` -> scalar.
        steps: K; 0 returns ``params`` unchanged (plain multi-task training on the query loss).
        lr: the inner learning rate α, a float or a per-parameter-tensor mapping (Meta-SGD, learned).
        adapt_names: the parameters that take inner steps (ANIL: the head's).
        first_order: drop the second-order terms (FOMAML): the step gradients are not differentiated through.

    Returns:
        name -> tensor θ_K (the non-adapted entries are the same tensors as in ``params``).
    """
    fast = dict(params)
    names = [n for n in adapt_names]
    for _ in range(steps):
        loss = loss_fn(forward(net, fast, x), y)
        grads = torch.autograd.grad(loss, [fast[n] for n in names], create_graph=not first_order)
        for n, g in zip(names, grads, strict=True):
            step_lr = lr[n] if isinstance(lr, Mapping) else lr
            fast[n] = fast[n] - step_lr * g
    return fast


def query_loss(net: nn.Module, params: Mapping[str, Tensor], support: tuple[Tensor, Tensor],
               query: tuple[Tensor, Tensor], loss_fn: LossFn, steps: int, lr: InnerLR, adapt_names: Iterable[str],
               first_order: bool) -> tuple[Tensor, Tensor]:
    """Adapt on ``support``, then the loss and outputs on ``query``: the function MAML differentiates.

    Returns:
        ``(loss, outputs)`` on the query set with the adapted parameters.
    """
    fast = adapt(net, params, support[0], support[1], loss_fn, steps, lr, adapt_names, first_order)
    out = forward(net, fast, query[0])
    return loss_fn(out, query[1]), out


def detached_params(net: nn.Module) -> dict[str, Tensor]:
    """The network's parameters as fresh leaves requiring grad: for adaptation at evaluation time, where no
    meta-gradient is wanted and the inner steps must not build a graph back to the module's parameters."""
    return {n: p.detach().requires_grad_(True) for n, p in net.named_parameters()}
