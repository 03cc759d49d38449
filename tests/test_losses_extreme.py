"""Losses at extreme logits in float32: DKD's value and gradient against a float64 reference written here (plain
Python loops, log-sum-exp by hand), and every registered logit loss audited for clamped logs of probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from distill.losses import LOSSES, LogitLoss, Progress, dkd_terms


def _lse(values: list[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def dkd_reference(student: list[float], teacher: list[float], y: int, temperature: float
                  ) -> tuple[float, float, list[float]]:
    """One sample's ``(TCKD, NCKD, dTCKD/dz_student)`` in float64, from the definitions.

    TCKD = T^2 * sum_b b_t log(b_t / b_s), ``b = [p_y, 1 - p_y]``; with ``log p_y = z_y/T - LSE(z/T)`` and
    ``log(1 - p_y) = LSE(z_{c != y}/T) - LSE(z/T)``. Its gradient (derived by hand): ``T (p_j - b_t[1] q_j)`` for
    ``j != y`` with ``q`` the student's softmax over the non-target classes, and ``T (p_y - b_t[0])`` for ``j = y``.
    NCKD = T^2 * KL between the softmaxes over the non-target classes.
    """
    s, t = [v / temperature for v in student], [v / temperature for v in teacher]
    rest = [j for j in range(len(s)) if j != y]

    def split(z: list[float]) -> tuple[float, float]:
        lse_all = _lse(z)
        return z[y] - lse_all, _lse([z[j] for j in rest]) - lse_all

    (ls0, ls1), (lt0, lt1) = split(s), split(t)
    tckd = math.exp(lt0) * (lt0 - ls0) + math.exp(lt1) * (lt1 - ls1)
    lse_rs, lse_rt = _lse([s[j] for j in rest]), _lse([t[j] for j in rest])
    nckd = sum(math.exp(t[j] - lse_rt) * ((t[j] - lse_rt) - (s[j] - lse_rs)) for j in rest)
    lse_s = _lse(s)
    grad = []
    for j in range(len(s)):
        p_j = math.exp(s[j] - lse_s)
        grad.append(temperature * (p_j - math.exp(lt0)) if j == y
                    else temperature * (p_j - math.exp(lt1) * math.exp(s[j] - lse_rs)))
    return temperature**2 * tckd, temperature**2 * nckd, grad


# (student logits, teacher logits, label, T): the confident students, a confident teacher, ordinary values.
CASES = [
    ([17.0] + [0.0] * 9, [3.0] + [0.0] * 9, 0, 1.0),
    ([70.0] + [0.0] * 9, [3.0] + [0.0] * 9, 0, 4.0),
    ([0.0, 0.5, -1.0, 40.0, 2.0], [1.0, 0.0, 0.0, 2.0, 0.3], 3, 1.0),
    ([3.0, -90.0, 1.0, 0.0], [50.0, 1.0, -2.0, 0.0], 0, 2.0),  # confident teacher, a far-off class
    ([0.3, -1.2, 2.0, 0.7], [1.1, 0.4, -0.5, 0.2], 2, 4.0),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("student,teacher,y,temperature", CASES)
def test_dkd_value_and_gradient_equal_the_log_space_reference(student, teacher, y, temperature, dtype):
    """Fails with the probability-space split ``[p_t, 1 - p_t]`` clamped at 1e-12: at ``[17, 0, ...]`` / T = 1 it
    gives TCKD 7.93 (reference 3.96) and a zero gradient (reference 0.309)."""
    s = torch.tensor([student], dtype=dtype, requires_grad=True)
    tckd, nckd = dkd_terms(s, torch.tensor([teacher], dtype=dtype), torch.tensor([y]), temperature)
    tckd.backward()
    ref_tckd, ref_nckd, ref_grad = dkd_reference(student, teacher, y, temperature)
    rel = 1e-5 if dtype == torch.float32 else 1e-10
    assert tckd.item() == pytest.approx(ref_tckd, rel=rel, abs=rel)
    assert nckd.item() == pytest.approx(ref_nckd, rel=rel, abs=rel)
    for got, want in zip(s.grad[0].tolist(), ref_grad, strict=True):
        assert got == pytest.approx(want, rel=1e-4 if dtype == torch.float32 else 1e-9, abs=1e-6)


def test_confident_student_is_pulled_back_by_tckd():
    """The over-confident student's target logit gets a positive gradient (gradient descent lowers it)."""
    s = torch.tensor([[17.0] + [0.0] * 9], requires_grad=True)
    dkd_terms(s, torch.tensor([[3.0] + [0.0] * 9]), torch.tensor([0]), 1.0)[0].backward()
    assert s.grad[0, 0].item() > 0.3


LOGIT_VARIANTS = sorted(name for name in LOSSES.names() if issubclass(LOSSES.get(name), LogitLoss))


@pytest.mark.parametrize("variant", LOGIT_VARIANTS)
def test_every_logit_loss_is_exact_at_extreme_float32_logits(variant):
    """Audit for clamped logs of probabilities: each logit loss at logits of +-80 in float32 has a finite value and
    gradient, equal to the same loss computed in float64 (a clamp at 1e-12 or a log of a float32 probability that
    rounds to 0 or 1 would differ by orders of magnitude)."""
    student = [[80.0, 0.0, -5.0, 1.0, 0.0], [-80.0, 30.0, 0.0, 0.0, 2.0], [0.1, 0.2, -0.3, 0.0, 0.4]]
    teacher = [[4.0, 0.0, 1.0, 0.0, -1.0], [0.0, 80.0, 0.0, -80.0, 0.0], [1.0, 0.0, 0.0, 0.5, 0.0]]
    y = torch.tensor([0, 1, 4])
    results = []
    for dtype in (torch.float32, torch.float64):
        loss = LOSSES.get(variant)()
        s = torch.tensor(student, dtype=dtype, requires_grad=True)
        torch.manual_seed(0)  # dkpp's permutation
        out = loss(s, y, torch.tensor(teacher, dtype=dtype), Progress(epoch=100))
        out.total.backward()
        assert torch.isfinite(out.total) and torch.isfinite(s.grad).all(), variant
        results.append((out.total.item(), s.grad.double()))
    (v32, g32), (v64, g64) = results
    assert v32 == pytest.approx(v64, rel=1e-4, abs=1e-5)
    torch.testing.assert_close(g32, g64, rtol=1e-3, atol=1e-5)
