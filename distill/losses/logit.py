"""Logit distillation losses: the math as small pure functions, with thin ``nn.Module`` wrappers the engine plugs in.

Conventions (shared by every function here):

* ``student`` and ``teacher`` are raw logits of shape ``(B, C)``; ``target`` holds class indices ``(B,)``.
* The KL term is summed over classes and averaged over the batch ("batchmean"), then multiplied by ``T^2`` so that
  its gradient magnitude does not shrink as the temperature grows (Hinton et al., 2015).
* Per-sample losses are returned where a variant needs them; the final reduction is a mean over the batch unless a
  variant (CWTM) supplies per-sample weights that sum to one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from distill.losses.base import LOSSES, DistillLoss, LossOutput, Progress
from distill.outputs import ModelOutput, logits_of


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample ``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, shape ``(B,)``.

    ``KL(p || q) = sum_c p_c (log p_c - log q_c)`` with ``p`` the softened teacher and ``q`` the softened student,
    as one ``kl_div`` (``exp(log p) * (log p - log q)``, the same arithmetic). At ``T = 1`` (Born-Again's setting) the
    divisions and the ``T^2`` factor are skipped: exact identities, but each is an autograd op forward and backward,
    which a step of a few milliseconds notices.
    """
    if temperature != 1:
        student, teacher = student / temperature, teacher / temperature
    log_q = F.log_softmax(student, dim=1)
    log_p = F.log_softmax(teacher, dim=1)
    kl = F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(dim=1)
    return kl if temperature == 1 else temperature**2 * kl


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Logit standardisation (Sun et al., CVPR 2024): ``(z - mean(z)) / (std(z) + eps)`` per sample.

    ``std`` is the sample standard deviation over the classes (Bessel-corrected, as ``torch.std`` and the paper's
    code compute it). The result has zero mean and unit spread, so the temperature that follows is a *base*
    temperature shared by teacher and student, whatever the range of their logits.
    """
    return (logits - logits.mean(dim=1, keepdim=True)) / (logits.std(dim=1, keepdim=True) + eps)


def kd_terms(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, alpha: float, temperature: float,
             standardized: bool = False) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The two per-sample terms of :func:`kd_per_sample`, ``(CE(student, y), T^2 * KL(...))``, shape ``(B,)`` each.

    A term whose weight is 0 is not computed and is None: the KL at ``alpha = 0``, the cross-entropy at ``alpha = 1``.
    With ``standardized``, the KL term compares :func:`standardize`-d logits (the cross-entropy keeps the raw ones).
    """
    kl = None
    if alpha > 0:
        s, t = (standardize(student), standardize(teacher)) if standardized else (student, teacher)
        kl = kd_kl(s, t, temperature)
    ce = F.cross_entropy(student, target, reduction="none") if alpha < 1 else None
    return ce, kl


def kd_combine(ce: torch.Tensor | None, kl: torch.Tensor | None, alpha: float) -> torch.Tensor:
    """``(1 - alpha) * ce + alpha * kl`` per sample, from :func:`kd_terms` (a missing term has weight 0)."""
    loss = kl if kl is not None else ce.new_zeros(len(ce))
    if alpha > 0 and alpha != 1:
        loss = alpha * loss  # alpha = 1 skips the op (an exact identity)
    if ce is not None:
        loss = loss + (1 - alpha) * ce
    return loss


def kd_per_sample(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, alpha: float,
                  temperature: float, standardized: bool = False) -> torch.Tensor:
    """Per-sample ``(1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T))``.

    ``alpha = 0`` is plain cross-entropy, ``alpha = 1`` the Born-Again "teacher-only" loss. With ``standardized``,
    the KL term compares :func:`standardize`-d logits (the cross-entropy keeps the raw ones).
    """
    return kd_combine(*kd_terms(student, teacher, target, alpha, temperature, standardized), alpha)


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


def binary_log_split(logits: torch.Tensor, hot: torch.Tensor) -> torch.Tensor:
    """``[log p_y, log(1 - p_y)]`` of ``p = softmax(logits)``, shape ``(B, 2)``, computed in log space.

    ``log p_y = z_y - LSE(z)`` and ``log(1 - p_y) = LSE(z_{c != y}) - LSE(z)``, with ``LSE(z) = logaddexp(z_y,
    LSE(z_{c != y}))``: no probability is formed, so neither term rounds to 0 when the model is confident (in float32,
    ``1 - p_y`` is 0 once ``p_y`` rounds to 1, and its log -inf) and the gradient of each stays exact.
    """
    target = logits[hot]
    rest = torch.logsumexp(logits.masked_fill(hot, float("-inf")), dim=1)
    total = torch.logaddexp(target, rest)
    return torch.stack([target - total, rest - total], dim=1)


def dkd_terms(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, temperature: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoupled KD (Zhao et al., CVPR 2022): ``(TCKD, NCKD)``, each ``T^2`` times a batch-mean KL.

    With ``p = softmax(z / T)`` and ``y`` the label:

    * TCKD = ``KL(b_t || b_s)``, ``b = [p_y, 1 - p_y]`` the binary target-vs-rest distribution;
    * NCKD = ``KL(p^_t || p^_s)``, ``p^`` the softmax over the ``C - 1`` non-target classes only (``z / T`` with the
      target removed), i.e. the distribution among the non-target classes.

    Classic KD equals ``TCKD + (1 - p^t_y) * NCKD``; DKD weights the two parts freely.

    Both are computed from log-probabilities only (:func:`binary_log_split`, ``log_softmax``), with no clamp: the
    reference code's ``log`` of the float32 probability ``1 - p_y`` is ``-inf`` (or, clamped, a wrong value with a zero
    gradient) once a confident student's ``p_y`` rounds to 1; here value and gradient stay exact.
    """
    b, c = student.shape
    hot = F.one_hot(target, c).bool()
    s, t = student / temperature, teacher / temperature
    log_bin_s, log_bin_t = binary_log_split(s, hot), binary_log_split(t, hot)
    tckd = F.kl_div(log_bin_s, log_bin_t, reduction="none", log_target=True).sum(1).mean()
    rest_s = F.log_softmax(s[~hot].view(b, c - 1), dim=1)
    rest_t = F.log_softmax(t[~hot].view(b, c - 1), dim=1)
    nckd = F.kl_div(rest_s, rest_t, reduction="none", log_target=True).sum(1).mean()
    return temperature**2 * tckd, temperature**2 * nckd


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of the rows of ``a`` and ``b`` ``(N, D)``: the cosine of the mean-centred rows, ``(N,)``."""
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_terms(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DIST (Huang et al., NeurIPS 2022): ``(inter, intra)`` relation losses, each times ``T^2``.

    With ``P = softmax(z / T)`` of shape ``(B, C)``: inter = ``1 - mean_i pearson(P_s[i], P_t[i])`` (each sample's
    class ranking), intra = ``1 - mean_c pearson(P_s[:, c], P_t[:, c])`` (each class's ranking over the batch).
    """
    p_s, p_t = F.softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1)
    inter = 1 - pearson(p_s, p_t).mean()
    intra = 1 - pearson(p_s.t(), p_t.t()).mean()
    return temperature**2 * inter, temperature**2 * intra


Logits = torch.Tensor | ModelOutput


def _mean(values: torch.Tensor) -> torch.Tensor:
    return values.mean()


class CrossEntropy(DistillLoss):
    """Generation 0: cross-entropy on the hard labels, batch mean. Term: ``ce``."""

    needs = frozenset()

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits | None = None,
                progress: Progress | None = None) -> LossOutput:
        total = F.cross_entropy(logits_of(student), target)
        return LossOutput(total, {"ce": total.detach()}, {"ce": 1.0})


class LogitLoss(DistillLoss):
    """Base of the losses on logits alone (served by every cache mode), with the ``kd.standardize`` switch.

    Args:
        standardize: compare :func:`standardize`-d logits in the distillation term (Sun et al., 2024); the
            cross-entropy on labels keeps the raw logits.
    """

    def __init__(self, standardize: bool = False) -> None:
        super().__init__()
        self.standardize = bool(standardize)

    def soft(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits the distillation term sees: standardised or as they are."""
        return standardize(logits) if self.standardize else logits


@LOSSES.register("standard")
class KDLoss(LogitLoss):
    """Hinton KD: batch mean of :func:`kd_per_sample`. With ``alpha = 1`` this is Born-Again's teacher-only loss.

    Terms: ``ce`` (weight ``1 - alpha``) and ``kd`` (weight ``alpha``), each batch-reduced like the total; a term of
    weight 0 is not computed and not reported.

    Args:
        alpha: weight of the distillation term (0 = hard labels only, 1 = teacher only).
        temperature: softening temperature ``T`` applied to both teacher and student.
        standardize: see :class:`LogitLoss`.
    """

    def __init__(self, alpha: float = 1.0, temperature: float = 1.0, standardize: bool = False) -> None:
        super().__init__(standardize)
        self.alpha, self.temperature = float(alpha), float(temperature)

    def terms(self, student: torch.Tensor, target: torch.Tensor,
              teacher: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Per-sample ``(ce, kd)`` (see :func:`kd_terms`)."""
        return kd_terms(student, teacher, target, self.alpha, self.temperature, self.standardize)

    def per_sample(self, student: torch.Tensor, target: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return kd_combine(*self.terms(student, target, teacher), self.alpha)

    def reduced(self, ce: torch.Tensor | None, kl: torch.Tensor | None,
                reduce: Callable[[torch.Tensor], torch.Tensor]) -> LossOutput:
        """The total ``reduce(kd_combine(ce, kl))`` and its terms, each reduced the same way."""
        total = reduce(kd_combine(ce, kl, self.alpha))
        if ce is None or kl is None:  # one term: it is the total
            name = "kd" if ce is None else "ce"
            return LossOutput(total, {name: total.detach()}, {name: 1.0})
        return LossOutput(total, {"ce": reduce(ce.detach()), "kd": reduce(kl.detach())},
                          {"ce": 1 - self.alpha, "kd": self.alpha})

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits,
                progress: Progress | None = None) -> LossOutput:
        return self.reduced(*self.terms(logits_of(student), target, logits_of(teacher)), _mean)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, temperature={self.temperature}, standardize={self.standardize}"


@LOSSES.register("cwtm")
class CWTMLoss(KDLoss):
    """Born-Again CWTM: ``sum_i w_i * l_i`` with ``w = cwtm_weights(teacher)`` and ``l_i`` the per-sample KD loss.

    Terms: ``ce`` and ``kd``, each the same ``w``-weighted sum.
    """

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits,
                progress: Progress | None = None) -> LossOutput:
        s, t = logits_of(student), logits_of(teacher)
        w = cwtm_weights(t).detach()
        return self.reduced(*self.terms(s, target, t), lambda values: (w * values).sum())


@LOSSES.register("dkpp")
class DKPPLoss(KDLoss):
    """Born-Again DKPP: the KD loss against ``dkpp_permute(teacher)`` (fresh permutation every batch). Terms: ``ce``,
    ``kd`` (against the permuted teacher)."""

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits,
                progress: Progress | None = None) -> LossOutput:
        return self.reduced(*self.terms(logits_of(student), target, dkpp_permute(logits_of(teacher))), _mean)


@LOSSES.register("dkd")
class DKDLoss(LogitLoss):
    """Decoupled KD (Zhao et al., CVPR 2022): ``ce_weight * CE + w(epoch) * (tckd_weight * TCKD + nckd_weight * NCKD)``.

    Terms: ``ce``, ``tckd``, ``nckd`` (their weights: ``ce_weight``, ``w * tckd_weight``, ``w * nckd_weight``).

    See :func:`dkd_terms`. ``w`` ramps linearly to 1 over the first ``warmup_epochs`` epochs (``(epoch + 1) /
    warmup_epochs``, epochs counted from 0: the reference code's ``epoch / warmup`` with epochs counted from 1).
    Defaults are the paper's CIFAR-100 settings: alpha (``tckd_weight``) 1, beta (``nckd_weight``) 8, T 4, warm-up
    20 epochs, CE weight 1. NCKD needs the teacher's whole non-target distribution: a ``topk`` cache with k < C is
    refused.

    Args:
        temperature: T (``kd.temperature``).
        tckd_weight: the paper's alpha.
        nckd_weight: the paper's beta.
        warmup_epochs: epochs of the linear warm-up of the distillation term (0: none).
        ce_weight: weight of the cross-entropy on labels.
        standardize: see :class:`LogitLoss`.
    """

    full_distribution = True

    def __init__(self, temperature: float = 4.0, tckd_weight: float = 1.0, nckd_weight: float = 8.0,
                 warmup_epochs: int = 20, ce_weight: float = 1.0, standardize: bool = False) -> None:
        super().__init__(standardize)
        self.temperature, self.warmup_epochs, self.ce_weight = float(temperature), int(warmup_epochs), float(ce_weight)
        self.tckd_weight, self.nckd_weight = float(tckd_weight), float(nckd_weight)

    def warmup(self, progress: Progress | None) -> float:
        if self.warmup_epochs <= 0 or progress is None:
            return 1.0
        return min((progress.epoch + 1) / self.warmup_epochs, 1.0)

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits,
                progress: Progress | None = None) -> LossOutput:
        s, t = logits_of(student), logits_of(teacher)
        tckd, nckd = dkd_terms(self.soft(s), self.soft(t), target, self.temperature)
        ce, w = F.cross_entropy(s, target), self.warmup(progress)
        total = self.ce_weight * ce + w * (self.tckd_weight * tckd + self.nckd_weight * nckd)
        return LossOutput(total, {"ce": ce.detach(), "tckd": tckd.detach(), "nckd": nckd.detach()},
                          {"ce": self.ce_weight, "tckd": w * self.tckd_weight, "nckd": w * self.nckd_weight})


@LOSSES.register("dist")
class DISTLoss(LogitLoss):
    """DIST (Huang et al., NeurIPS 2022): ``ce_weight * CE + beta * inter + gamma * intra`` (see :func:`dist_terms`).

    Terms: ``ce``, ``inter``, ``intra``.

    Defaults: beta = gamma = 2 and T = 4, the CIFAR-100 settings used with DIST in reproductions (the reference
    class's own defaults are 1, 1, 1); CE weight 1.

    Args:
        temperature: T (``kd.temperature``).
        beta: weight of the inter-class (per-sample) relation.
        gamma: weight of the intra-class (per-class, across the batch) relation.
        ce_weight: weight of the cross-entropy on labels.
        standardize: see :class:`LogitLoss`.
    """

    def __init__(self, temperature: float = 4.0, beta: float = 2.0, gamma: float = 2.0, ce_weight: float = 1.0,
                 standardize: bool = False) -> None:
        super().__init__(standardize)
        self.temperature, self.ce_weight = float(temperature), float(ce_weight)
        self.beta, self.gamma = float(beta), float(gamma)

    def forward(self, student: Logits, target: torch.Tensor, teacher: Logits,
                progress: Progress | None = None) -> LossOutput:
        s, t = logits_of(student), logits_of(teacher)
        inter, intra = dist_terms(self.soft(s), self.soft(t), self.temperature)
        ce = F.cross_entropy(s, target)
        total = self.ce_weight * ce + self.beta * inter + self.gamma * intra
        return LossOutput(total, {"ce": ce.detach(), "inter": inter.detach(), "intra": intra.detach()},
                          {"ce": self.ce_weight, "inter": self.beta, "intra": self.gamma})
