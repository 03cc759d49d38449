"""Contrastive representation distillation (CRD; Tian et al., ICLR 2020), with the cache as the teacher's memory bank.

CRD projects both embeddings to a shared ``feat_dim``-dimensional unit sphere (linear heads, the loss's own
parameters) and trains each side to tell its sample's positive pair from ``K`` negatives with a noise-contrastive
estimate (NCE). The reference code (RepDistiller's ``crd/``) keeps two momentum memory banks of projected embeddings
for every training sample. Here the teacher's bank is the soft-label cache itself: the teacher's embedding of every
training sample, stored once (``cache.embeddings: true``), read by index (:attr:`~distill.outputs.ModelOutput.bank`)
and projected with the current teacher head. The student's bank is the loss's state (a buffer ``memory``, ``N x
feat_dim``, momentum-updated with the batch's projected student embeddings), saved in the checkpoint and restored on
resume with the normalisation constants ``z``.

Differences from the reference, each a cost choice: the ``K`` negatives are drawn uniformly over the training set once
per batch and shared by its samples (the reference draws ``K`` per sample, from the other classes), so a step reads
``K`` cached embeddings, not ``B K``; the student anchor's positive is the teacher's current projection of its own
embedding rather than a momentum average of it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from distill.losses.base import LOSSES, TEACHER_BANK, TEACHER_EMBEDDINGS, LossOutput, Progress
from distill.losses.relational import EmbeddingLoss, wide
from distill.outputs import EMBEDDING, EMBEDDING_BANK, ModelOutput

NCE_EPS = 1e-7  # the reference's eps in the NCE denominator


def nce_loss(log_scores: torch.Tensor, n_data: int) -> torch.Tensor:
    """NCE loss of one anchor side (CRD's Eq. 18), from ``log_scores`` ``(B, 1 + K)``: column 0 the positive.

    With ``P = exp(log_scores)`` (scores already divided by the normalisation constant ``Z``), ``m = K`` and the
    uniform noise ``P_n = 1 / N``: ``-(sum_i log(P_i0 / (P_i0 + m P_n + eps)) + sum_ik log(m P_n / (P_ik + m P_n +
    eps))) / B``. Evaluated in log space (``logaddexp``), so a score that underflows in float32 keeps its gradient.
    """
    b, m = log_scores.shape[0], log_scores.shape[1] - 1
    noise = m / float(n_data)
    log_noise_eps = math.log(noise + NCE_EPS)
    log_denominator = torch.logaddexp(log_scores, log_scores.new_tensor(log_noise_eps))
    positive = (log_scores[:, 0] - log_denominator[:, 0]).sum()
    negative = (math.log(noise) - log_denominator[:, 1:]).sum()
    return -(positive + negative) / b


def contrast_logits(anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                    temperature: float) -> torch.Tensor:
    """``(B, 1 + K)`` values ``<anchor_i, c> / T`` for ``c`` = the anchor's positive ``positive_i``, then the ``K``
    shared ``negatives`` (``exp`` of them, divided by ``Z``, are CRD's scores)."""
    pos = (anchor * positive).sum(dim=1, keepdim=True)
    return torch.cat([pos, anchor @ negatives.t()], dim=1) / temperature


def log_normalizer(logits: torch.Tensor, n_data: int) -> torch.Tensor:
    """``log Z`` with ``Z = N * mean(exp(logits))``: the reference's constant, set once from the first batch."""
    return torch.logsumexp(logits.flatten(), 0) - math.log(logits.numel()) + math.log(n_data)


@LOSSES.register("crd")
class CRDLoss(EmbeddingLoss):
    """CRD: ``ce_weight * CE + weight * (student_anchor + teacher_anchor)``, each an :func:`nce_loss`.

    Terms: ``ce``, ``student_anchor`` (the student's projection against the teacher's projections of the positive and
    the negatives read from the cache), ``teacher_anchor`` (the teacher's projection against the student memory's
    entries of the positive and the negatives). Needs a cache with embeddings (``cache.embeddings: true``; not
    ``cache.mode online``). See the module docstring for the memory bank and the differences from the reference.

    Defaults: RepDistiller's CIFAR settings (``beta = 0.8``, ``feat_dim = 128``, ``nce_t = 0.07``, ``nce_m = 0.5``,
    ``nce_k = 16384``).

    Args:
        weight: weight of the two NCE terms.
        feat_dim: dimension of the projections.
        negatives: ``K``, negatives drawn per batch (uniformly, with replacement, by dataset index).
        temperature: the NCE temperature.
        momentum: momentum of the student memory update.
        ce_weight: weight of the cross-entropy on labels.
    """

    needs = frozenset({TEACHER_EMBEDDINGS, TEACHER_BANK})
    has_parameters = True

    def __init__(self, weight: float = 0.8, feat_dim: int = 128, negatives: int = 16384, temperature: float = 0.07,
                 momentum: float = 0.5, ce_weight: float = 1.0) -> None:
        super().__init__(weight, ce_weight)
        if int(feat_dim) < 1 or int(negatives) < 1 or not temperature > 0 or not 0 <= momentum < 1:
            raise ValueError(f"crd needs feat_dim >= 1, negatives >= 1, temperature > 0 and momentum in [0, 1), got "
                             f"{feat_dim}, {negatives}, {temperature}, {momentum}")
        self.feat_dim, self.negatives = int(feat_dim), int(negatives)
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.embed_s: nn.Linear | None = None
        self.embed_t: nn.Linear | None = None
        self._z_known = False  # log_z checked once per process (a host sync), then trusted

    def feature_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (EMBEDDING,), (EMBEDDING, EMBEDDING_BANK)

    def bind(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        """The projection heads from the embedding widths, and the student memory (``N x feat_dim``, uniform in
        ``+-1/sqrt(feat_dim / 3)`` as the reference initialises it) with ``log z`` unset (NaN: set on the first
        batch)."""
        if self.embed_s is not None or teacher is None:
            return
        device = student.logits.device
        self.embed_s = nn.Linear(student.features[EMBEDDING].shape[1], self.feat_dim).to(device)
        self.embed_t = nn.Linear(teacher.features[EMBEDDING].shape[1], self.feat_dim).to(device)
        bound = 1.0 / math.sqrt(self.feat_dim / 3)
        n = len(teacher.bank)
        self.register_buffer("memory", (torch.rand(n, self.feat_dim) * 2 - 1).mul_(bound).to(device))
        self.register_buffer("log_z", torch.full((2,), float("nan"), device=device))

    def forward(self, student: ModelOutput, target: torch.Tensor, teacher: ModelOutput,
                progress: Progress | None = None) -> LossOutput:
        ce = F.cross_entropy(student.logits, target)
        v_s = F.normalize(self.embed_s(wide(student.features[EMBEDDING])), dim=1)
        v_t = F.normalize(self.embed_t(wide(teacher.features[EMBEDDING])), dim=1)
        n, index = len(self.memory), teacher.index
        drawn = torch.randint(0, n, (self.negatives,), device=self.memory.device)
        with torch.no_grad():
            t_neg = F.normalize(self.embed_t(wide(teacher.bank(drawn))), dim=1)
        s_pos, s_neg = self.memory[index], self.memory[drawn]
        raw_s = contrast_logits(v_s, v_t.detach(), t_neg, self.temperature)
        raw_t = contrast_logits(v_t, s_pos, s_neg, self.temperature)
        if not self._z_known:
            if torch.isnan(self.log_z).any():  # the first batch (a resumed run restores log_z with the memory)
                self.log_z.copy_(torch.stack([log_normalizer(raw_s.detach(), n), log_normalizer(raw_t.detach(), n)]))
            self._z_known = True
        student_anchor = nce_loss(raw_s - self.log_z[0], n)
        teacher_anchor = nce_loss(raw_t - self.log_z[1], n)
        with torch.no_grad():  # the student memory: momentum average of its projections, renormalised
            updated = self.memory[index] * self.momentum + v_s.detach() * (1 - self.momentum)
            self.memory.index_copy_(0, index, F.normalize(updated, dim=1))
        total = self.ce_weight * ce + self.weight * (student_anchor + teacher_anchor)
        return LossOutput(total, {"ce": ce.detach(), "student_anchor": student_anchor.detach(),
                                  "teacher_anchor": teacher_anchor.detach()},
                          {"ce": self.ce_weight, "student_anchor": self.weight, "teacher_anchor": self.weight})

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, feat_dim={self.feat_dim}, negatives={self.negatives}, "
                f"temperature={self.temperature}, momentum={self.momentum}")
