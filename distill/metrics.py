"""Test-set evaluation with torchmetrics: accuracy (top-1, top-5 above 10 classes), NLL, ECE and agreement."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_calibration_error

ECE_BINS = 15  # the customary 15 equal-width confidence bins (Guo et al., 2017)


def ensemble_logits(members: list[torch.Tensor]) -> torch.Tensor:
    """Logits of an ensemble that averages its members' probabilities: ``log(mean_j softmax(z_j))``.

    Returning log-probabilities keeps every consumer (argmax, softmax, the KD loss) unchanged: ``softmax`` of the
    result is exactly the mean probability. A single member is returned as is.
    """
    if len(members) == 1:
        return members[0]
    stacked = torch.stack([F.log_softmax(m.float(), dim=1) for m in members])
    return torch.logsumexp(stacked, dim=0) - torch.log(torch.tensor(float(len(members))))


def evaluate(logits: torch.Tensor, target: torch.Tensor, calibration: bool = True) -> dict[str, float]:
    """Metrics of ``(N, C)`` logits against ``(N,)`` labels.

    Returns:
        ``acc`` (top-1, fraction), ``top5`` (when ``C > 10``), ``nll`` (mean negative log-likelihood, nats) and,
        when ``calibration``, ``ece`` (L1 expected calibration error over 15 bins).
    """
    logits, target = logits.float(), target.long()
    num_classes = logits.shape[1]
    out = {"acc": float(multiclass_accuracy(logits, target, num_classes=num_classes, average="micro"))}
    if num_classes > 10:
        out["top5"] = float(multiclass_accuracy(logits, target, num_classes=num_classes, average="micro", top_k=5))
    out["nll"] = float(F.cross_entropy(logits, target))
    if calibration:
        probs = F.softmax(logits, dim=1)
        out["ece"] = float(multiclass_calibration_error(probs, target, num_classes=num_classes, n_bins=ECE_BINS,
                                                        norm="l1"))
    return out


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of samples on which two sets of logits have the same argmax."""
    return float((a.argmax(dim=1) == b.argmax(dim=1)).float().mean())
