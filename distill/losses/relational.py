"""Relational distillation on pre-logit embeddings: RKD, PKT and similarity-preserving KD.

Each compares how the samples of a batch relate to one another -- distances and angles (RKD), a probability
distribution of cosine similarities (PKT), the normalised Gram matrix (SP) -- in the student's embedding and in the
teacher's, so the two embeddings may have different widths. The embeddings are the features named
:data:`~distill.outputs.EMBEDDING` (the classifier's input, timm's ``forward_head(pre_logits=True)``): a cache built
with ``cache.embeddings: true`` serves the teacher's, by sample index, so these losses run without the teacher, as
the logit losses do; ``cache.mode: online`` computes them from the teacher on the student's batch.

Each loss is ``ce_weight * CE(student, y) + weight * term``, the form (and default weights) of RepDistiller's
``train_student.py`` runs (``-a 0 -b beta``: no KL term, the relational term weighted by ``beta``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distill.losses.base import LOSSES, TEACHER_EMBEDDINGS, DistillLoss, LossOutput, Progress
from distill.outputs import EMBEDDING, ModelOutput


def wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` flattened to ``(B, D)`` in float32 at least (float16/bfloat16 embeddings are widened, float64 kept)."""
    return x.flatten(1).to(torch.promote_types(x.dtype, torch.float32))


def _normalized_distances(e: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances ``(B, B)`` over their mean on the pairs at distance > 0 (RKD's ``psi_D``)."""
    d = (e.unsqueeze(0) - e.unsqueeze(1)).norm(dim=2)
    positive = (d > 0).sum().clamp_min(1)
    return d / (d.sum() / positive).clamp_min(torch.finfo(d.dtype).tiny)


def _angles(e: torch.Tensor) -> torch.Tensor:
    """``cos`` of the angle at sample ``j`` between samples ``i`` and ``k``, all triplets flattened (RKD's ``psi_A``):
    ``<u_ji, u_jk>`` with ``u_ji`` the unit vector from ``e_j`` to ``e_i`` (a zero vector when ``i = j``)."""
    u = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)  # u[j, i] = (e_i - e_j) / |e_i - e_j|
    return torch.bmm(u, u.transpose(1, 2)).flatten()


def rkd_terms(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relational KD (Park et al., CVPR 2019): ``(distance, angle)`` losses of embeddings ``(B, D_s)``, ``(B, D_t)``.

    distance = Huber(``psi_D(s)``, ``psi_D(t)``), angle = Huber(``psi_A(s)``, ``psi_A(t)``), each the mean of the
    smooth-L1 (``delta = 1``) over all pairs / triplets, with ``psi_D`` the pairwise distances over their mean and
    ``psi_A`` the cosines of every angle (see :func:`_normalized_distances`, :func:`_angles`). The teacher side
    carries no gradient.
    """
    s, t = wide(student), wide(teacher).detach()
    distance = F.smooth_l1_loss(_normalized_distances(s), _normalized_distances(t))
    angle = F.smooth_l1_loss(_angles(s), _angles(t))
    return distance, angle


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018) with the cosine kernel.

    Each embedding is divided by ``(|e| + eps)``; the cosine similarities ``K = e e^T`` are mapped to ``[0, 1]`` by
    ``(K + 1) / 2`` and each row normalised to sum to one, giving conditional distributions ``P`` (teacher) and ``Q``
    (student); the loss is ``mean_ij P_ij log((P_ij + eps) / (Q_ij + eps))`` (the authors' code: a mean over the
    ``B^2`` entries, with ``eps`` inside the log).
    """
    def conditional(e: torch.Tensor) -> torch.Tensor:
        e = e / (e.norm(dim=1, keepdim=True) + eps)
        k = (e @ e.t() + 1) / 2
        return k / k.sum(dim=1, keepdim=True)

    p, q = conditional(wide(teacher).detach()), conditional(wide(student))
    return (p * torch.log((p + eps) / (q + eps))).mean()


def sp_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD (Tung & Mori, ICCV 2019): ``|G_t - G_s|_F^2 / B^2``.

    ``G = normalize_rows(f f^T)`` for the flattened features ``f`` ``(B, D)`` (each row of the Gram matrix scaled to
    unit L2 norm).
    """
    def gram(f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f @ f.t(), p=2, dim=1)

    s, t = wide(student), wide(teacher).detach()
    b = s.shape[0]
    return (gram(t) - gram(s)).pow(2).sum() / (b * b)


class EmbeddingLoss(DistillLoss):
    """Shared part of the losses on the pre-logit embeddings of student and teacher: ``ce_weight * CE + weight *
    term``. The teacher's embedding comes from the cache (``cache.embeddings: true``) or an online teacher.

    Args:
        weight: weight of the relational term(s).
        ce_weight: weight of the cross-entropy on labels.
    """

    needs = frozenset({TEACHER_EMBEDDINGS})

    def __init__(self, weight: float, ce_weight: float = 1.0) -> None:
        super().__init__()
        self.weight, self.ce_weight = float(weight), float(ce_weight)

    def feature_names(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (EMBEDDING,), (EMBEDDING,)

    def check(self, student: ModelOutput, teacher: ModelOutput | None) -> None:
        """Both embeddings are ``(B, D)`` vectors."""
        for who, out in (("student", student), ("teacher", teacher)):
            shape = tuple(out.features[EMBEDDING].shape) if out is not None and EMBEDDING in out.features else None
            if shape is None or len(shape) != 2:
                raise ValueError(f"{who} embedding has shape {shape}, but {type(self).__name__} needs (B, D)")

    def relation(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                                dict[str, float]]:
        """The relational terms by name and their weights (before :attr:`weight`)."""
        raise NotImplementedError

    def forward(self, student: ModelOutput, target: torch.Tensor, teacher: ModelOutput,
                progress: Progress | None = None) -> LossOutput:
        ce = F.cross_entropy(student.logits, target)
        terms, factors = self.relation(student.features[EMBEDDING], teacher.features[EMBEDDING])
        weights = {"ce": self.ce_weight, **{name: self.weight * f for name, f in factors.items()}}
        total = self.ce_weight * ce
        for name, value in terms.items():
            total = total + weights[name] * value
        return LossOutput(total, {"ce": ce.detach(), **{n: v.detach() for n, v in terms.items()}}, weights)


@LOSSES.register("rkd")
class RKDLoss(EmbeddingLoss):
    """Relational KD (Park et al., 2019): ``ce_weight * CE + weight * (distance_weight * distance + angle_weight *
    angle)``, see :func:`rkd_terms`. Terms: ``ce``, ``distance``, ``angle``.

    Defaults: RepDistiller's (``w_d = 25``, ``w_a = 50``, ``beta = 1``).

    Args:
        weight: weight of the RKD term (RepDistiller's ``beta``).
        distance_weight: ``w_d``.
        angle_weight: ``w_a``.
        ce_weight: weight of the cross-entropy on labels.
    """

    def __init__(self, weight: float = 1.0, distance_weight: float = 25.0, angle_weight: float = 50.0,
                 ce_weight: float = 1.0) -> None:
        super().__init__(weight, ce_weight)
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def relation(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                                dict[str, float]]:
        distance, angle = rkd_terms(student, teacher)
        return {"distance": distance, "angle": angle}, {"distance": self.distance_weight, "angle": self.angle_weight}


@LOSSES.register("pkt")
class PKTLoss(EmbeddingLoss):
    """Probabilistic knowledge transfer (Passalis & Tefas, 2018): ``ce_weight * CE + weight * PKT`` (see
    :func:`pkt_loss`). Terms: ``ce``, ``pkt``. Default weight: RepDistiller's ``beta = 30000``.

    Args:
        weight: weight of the PKT term.
        ce_weight: weight of the cross-entropy on labels.
    """

    def __init__(self, weight: float = 30000.0, ce_weight: float = 1.0) -> None:
        super().__init__(weight, ce_weight)

    def relation(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                                dict[str, float]]:
        return {"pkt": pkt_loss(student, teacher)}, {"pkt": 1.0}


@LOSSES.register("sp")
class SPLoss(EmbeddingLoss):
    """Similarity-preserving KD (Tung & Mori, 2019): ``ce_weight * CE + weight * SP`` (see :func:`sp_loss`).
    Terms: ``ce``, ``sp``. Default weight: RepDistiller's ``beta = 3000``.

    RepDistiller applies SP to the last feature map before pooling; here it reads the pooled embedding, which the
    cache stores.

    Args:
        weight: weight of the SP term.
        ce_weight: weight of the cross-entropy on labels.
    """

    def __init__(self, weight: float = 3000.0, ce_weight: float = 1.0) -> None:
        super().__init__(weight, ce_weight)

    def relation(self, student: torch.Tensor, teacher: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                                                dict[str, float]]:
        return {"sp": sp_loss(student, teacher)}, {"sp": 1.0}
