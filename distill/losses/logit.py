"""Logit distillation losses: the math as small pure functions, with thin ``nn.Module`` wrappers the engine plugs in.

Conventions (shared by every function here):

* ``student`` and ``teacher`` are raw logits of shape ``(B, C)``; ``target`` holds class indices ``(B,)``.
* The KL term is summed over classes and averaged over the batch ("batchmean"), then multiplied by ``T^2`` so that
  its gradient magnitude does not shrink as the temperature grows (Hinton et al., 2015).
* Per-sample losses are returned where a variant needs them; the final reduction is a mean over the batch unless a
  variant (CWTM) supplies per-sample weights that sum to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import LOSSES, DistillLoss, Progress
from distill.outputs import ModelOutput, logits_of


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, shape ``(B,)``.

    ``KL(p || q) = sum_c p_c (log p_c - log q_c)`` with ``p`` the softened teacher and ``q`` the softened student.
    """
    log_q = F.log_softmax(student / temperature, dim=1)
    log_p = F.log_softmax(teacher / temperature, dim=1)
    return temperature**2 * (log_p.exp() * (log_p - log_q)).sum(dim=1)


def kd_per_sample(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, alpha: float,
                  temperature: float) -> torch.Tensor:
    """Per-sample ``(1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))``.

    ``alpha = 0`` is plain cross-entropy, ``alpha = 1`` the Born-Again "teacher-only" loss.
    """
    loss = alpha * kd_kl(student, teacher, temperature) if alpha > 0 else student.new_zeros(len(student))
    if alpha < 1:
        loss = loss + (1 - alpha) * F.cross_entropy(student, target, reduction="none")
    return loss


def cwtm_weights(teacher: torch.Tensor) -> torch.Tensor:
    """Confidence Weighted by Teacher Max (Furlanello et al., 2018): ``w_i = max_c p_ic / sum_j max_c p_jc``.

    ``p = softmax(teacher)`` at temperature 1 (the teacher's own confidence). The weights sum to one over the batch,
    so uniform confidences reproduce the batch mean.
    """
    conf = F.softmax(teacher.float(), dim=1).amax(dim=1)
    return conf / conf.sum()


def dkpp_permute(teacher: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dark Knowledge with Permuted Predictions (Furlanello et al., 2018).

    For each sample, the teacher's scores of the non-argmax classes are randomly permuted among those classes while
    the argmax class keeps its score: ``p'_{i, a_i} = p_{i, a_i}`` and ``p'_{i, pi_i(c)} = p_{i, c}`` for ``c != a_i``,
    with ``pi_i`` a uniform random permutation of the non-argmax classes of sample ``i``. Softmax commutes with
    permutations, so permuting logits is permuting probabilities. The multiset of each row is preserved.
    """
    b, c = teacher.shape
    argmax = teacher.argmax(dim=1, keepdim=True)
    rows = torch.arange(b, device=teacher.device)[:, None]
    # Sort keys that put the argmax column last; with random keys the other columns come out in random order.
    random_keys = torch.rand(b, c, generator=generator, device=teacher.device if generator is None else "cpu")
    random_keys = random_keys.to(teacher.device).scatter(1, argmax, 2.0)
    fixed_keys = torch.arange(c, device=teacher.device, dtype=torch.float32).expand(b, c).scatter(1, argmax, float(c))
    src = random_keys.argsort(dim=1)  # non-argmax columns shuffled, then argmax
    dst = fixed_keys.argsort(dim=1)  # non-argmax columns in order, then argmax
    out = torch.empty_like(teacher)
    out[rows, dst] = teacher[rows, src]
    return out


Logits = torch.Tensor | ModelOutput


class CrossEntropy(DistillLoss):
    """Generation 0: cross-entropy on the hard labels, batch mean."""

    needs = frozenset()

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits | None = None,
                progress: Progress | None = None) -> torch.Tensor:
        return F.cross_entropy(logits_of(student), target)


@LOSSES.register("standard")
class KDLoss(DistillLoss):
    """Hinton KD: batch mean of :func:`kd_per_sample`. With ``alpha = 1`` this is Born-Again's teacher-only loss.

    Args:
        alpha: weight of the distillation term (0 = hard labels only, 1 = teacher only).
        temperature: softening temperature ``T`` applied to both teacher and student.
    """

    def __init__(self, alpha: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.temperature = float(alpha), float(temperature)

    def per_sample(self, student: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return kd_per_sample(student, teacher, target, self.alpha, self.temperature)

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits,
                progress: Progress | None = None) -> torch.Tensor:
        return self.per_sample(logits_of(student), target, logits_of(teacher)).mean()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, temperature={self.temperature}"


@LOSSES.register("cwtm")
class CWTMLoss(KDLoss):
    """Born-Again CWTM: ``sum_i w_i * l_i`` with ``w = cwtm_weights(teacher)`` and ``l_i`` the per-sample KD loss."""

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits,
                progress: Progress | None = None) -> torch.Tensor:
        s, t = logits_of(student), logits_of(teacher)
        return (cwtm_weights(t).detach() * self.per_sample(s, target, t)).sum()


@LOSSES.register("dkpp")
class DKPPLoss(KDLoss):
    """Born-Again DKPP: the KD loss against ``dkpp_permute(teacher)`` (fresh permutation every batch)."""

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits,
                progress: Progress | None = None) -> torch.Tensor:
        return self.per_sample(logits_of(student), target, dkpp_permute(logits_of(teacher))).mean()
