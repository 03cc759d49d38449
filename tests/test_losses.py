"""KD losses against values worked out by hand on fixed tensors."""

from __future__ import annotations

import math

import pytest
import torch

from distill.losses import CrossEntropy, CWTMLoss, DKPPLoss, KDLoss, build_loss, cwtm_weights, dkpp_permute, kd_kl

LN3 = math.log(3.0)
# Teacher [ln 3, 0] -> p = [3/4, 1/4]; student [0, 0] -> q = [1/2, 1/2].
# KL(p||q) at T=1 = 3/4 ln(3/2) + 1/4 ln(1/2).
KL_T1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
# At T=2 the teacher becomes [ln3/2, 0] -> p = [sqrt3/(sqrt3+1), 1/(sqrt3+1)]; times T^2 = 4.
P2 = math.sqrt(3) / (math.sqrt(3) + 1)
KL_T2_SCALED = 4 * (P2 * math.log(2 * P2) + (1 - P2) * math.log(2 * (1 - P2)))


def _pair():
    student = torch.zeros(1, 2, dtype=torch.float64)
    teacher = torch.tensor([[LN3, 0.0]], dtype=torch.float64)
    return student, teacher, torch.tensor([0])


def test_kd_kl_golden_values_and_t_squared_scaling():
    student, teacher, _ = _pair()
    assert kd_kl(student, teacher, 1.0).item() == pytest.approx(KL_T1, abs=1e-12)
    assert kd_kl(student, teacher, 2.0).item() == pytest.approx(KL_T2_SCALED, abs=1e-12)
    assert KL_T1 == pytest.approx(0.1308120, abs=1e-6)  # the hand value, as a number


def test_alpha_limits_and_mixture():
    student, teacher, y = _pair()
    assert KDLoss(alpha=0.0, temperature=4.0)(student, y, teacher).total.item() == pytest.approx(math.log(2), abs=1e-12)
    assert KDLoss(alpha=1.0, temperature=1.0)(student, y, teacher).total.item() == pytest.approx(KL_T1, abs=1e-12)
    mixed = KDLoss(alpha=0.25, temperature=2.0)(student, y, teacher).total.item()
    assert mixed == pytest.approx(0.75 * math.log(2) + 0.25 * KL_T2_SCALED, abs=1e-12)


def test_batch_mean_reduction():
    student = torch.zeros(2, 2, dtype=torch.float64)
    teacher = torch.tensor([[LN3, 0.0], [0.0, 0.0]], dtype=torch.float64)  # second row: KL = 0
    loss = KDLoss(alpha=1.0, temperature=1.0)(student, torch.tensor([0, 1]), teacher).total
    assert loss.item() == pytest.approx(KL_T1 / 2, abs=1e-12)


def test_cwtm_weights_and_loss():
    teacher = torch.tensor([[LN3, 0.0], [0.0, 0.0]], dtype=torch.float64)  # max confidences 3/4 and 1/2
    w = cwtm_weights(teacher)
    assert torch.allclose(w, torch.tensor([0.6, 0.4], dtype=torch.float32))
    student = torch.zeros(2, 2, dtype=torch.float64)
    loss = CWTMLoss(alpha=1.0, temperature=1.0)(student, torch.tensor([0, 1]), teacher).total
    assert loss.item() == pytest.approx(0.6 * KL_T1, abs=1e-6)
    # uniform confidences reduce CWTM to the batch mean
    same = torch.tensor([[LN3, 0.0], [LN3, 0.0]])
    s = torch.randn(2, 2)
    y = torch.tensor([0, 1])
    assert CWTMLoss(0.5, 2.0)(s, y, same).total.item() == pytest.approx(KDLoss(0.5, 2.0)(s, y, same).total.item(),
                                                                     abs=1e-6)


def test_dkpp_keeps_argmax_and_multiset_and_permutes():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(64, 10, generator=g)
    out = dkpp_permute(teacher, generator=g)
    assert torch.equal(out.argmax(1), teacher.argmax(1))
    assert torch.equal(out.sort(1).values, teacher.sort(1).values)
    assert (out != teacher).any(dim=1).float().mean() > 0.9  # almost every row actually moved
    # every non-argmax class can receive every non-argmax score: over many draws, positions are mixed
    row = torch.tensor([[5.0, 1.0, 2.0, 3.0]])
    seen = {tuple(dkpp_permute(row, generator=g)[0].tolist()) for _ in range(200)}
    assert len(seen) == 6 and all(s[0] == 5.0 for s in seen)  # 3! permutations, argmax fixed


def test_dkpp_loss_matches_kd_on_permuted_teacher():
    s, t, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    torch.manual_seed(3)
    loss = DKPPLoss(0.7, 2.0)(s, y, t).total
    torch.manual_seed(3)
    assert loss.item() == pytest.approx(KDLoss(0.7, 2.0)(s, y, dkpp_permute(t)).total.item(), abs=1e-6)


def test_build_loss_generation_zero_is_cross_entropy():
    assert isinstance(build_loss(0, "dkpp", 1.0, 4.0), CrossEntropy)
    assert isinstance(build_loss(1, "cwtm", 1.0, 4.0), CWTMLoss)
    assert not CrossEntropy().needs_teacher and KDLoss().needs_teacher
    assert CrossEntropy.needs == frozenset() and KDLoss.needs == {"teacher_logits"}


def test_gradient_flows_to_student_only():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    KDLoss(0.5, 3.0)(s, torch.tensor([0, 1, 2, 0]), t.detach()).total.backward()
    assert s.grad is not None and t.grad is None
