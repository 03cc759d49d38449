"""DKD, DIST, logit standardisation, FitNets and attention transfer against values worked out by hand or by an
independent formula written here (numpy), their gradients, and a FitNets run killed mid-student and resumed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli

from distill.losses import (
    AttentionLoss,
    DISTLoss,
    DKDLoss,
    KDLoss,
    Progress,
    attention_map,
    dist_terms,
    dkd_terms,
    kd_kl,
    standardize,
)
from distill.outputs import ModelOutput

LN2 = math.log(2.0)


def test_dkd_terms_by_hand():
    """Student uniform over 3 classes; teacher [ln 2, 0, 0] -> p_t = [1/2, 1/4, 1/4]; label 1; T = 1.

    TCKD: b_t = [1/4, 3/4], b_s = [1/3, 2/3] -> 1/4 ln(3/4) + 3/4 ln(9/8).
    NCKD: non-target classes {0, 2}: p^_t = [2/3, 1/3], p^_s = [1/2, 1/2] -> 2/3 ln(4/3) + 1/3 ln(2/3).
    """
    s = torch.zeros(1, 3, dtype=torch.float64)
    t = torch.tensor([[LN2, 0.0, 0.0]], dtype=torch.float64)
    tckd, nckd = dkd_terms(s, t, torch.tensor([1]), 1.0)
    assert tckd.item() == pytest.approx(0.25 * math.log(0.75) + 0.75 * math.log(9 / 8), abs=1e-12)
    assert nckd.item() == pytest.approx(2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3), abs=1e-12)


def test_dkd_decomposes_classic_kd():
    """Zhao et al.'s identity: KD = TCKD + (1 - p^t_target) NCKD, per sample; checked at T = 3 on a batch of one."""
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        s, t = torch.randn(1, 7, generator=g, dtype=torch.float64), torch.randn(1, 7, generator=g, dtype=torch.float64)
        y = torch.randint(0, 7, (1,), generator=g)
        tckd, nckd = dkd_terms(s, t, y, 3.0)
        pt = F.softmax(t / 3.0, 1)[0, y].item()
        assert kd_kl(s, t, 3.0).item() == pytest.approx(tckd.item() + (1 - pt) * nckd.item(), abs=1e-10)


def test_dkd_loss_weights_and_linear_warmup():
    s = torch.zeros(1, 3, dtype=torch.float64)
    t = torch.tensor([[LN2, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([1])
    tckd = 0.25 * math.log(0.75) + 0.75 * math.log(9 / 8)
    nckd = 2 / 3 * math.log(4 / 3) + 1 / 3 * math.log(2 / 3)
    loss = DKDLoss(temperature=1.0, tckd_weight=2.0, nckd_weight=8.0, warmup_epochs=20, ce_weight=0.5)
    ce = math.log(3.0)
    warm = 0.5 * ce + 5 / 20 * (2 * tckd + 8 * nckd)  # epoch 4 of a 20-epoch warm-up: (4 + 1) / 20
    assert loss(s, y, t, Progress(epoch=4)).total.item() == pytest.approx(warm, abs=1e-12)
    assert loss(s, y, t, Progress(epoch=19)).total.item() == pytest.approx(0.5 * ce + 2 * tckd + 8 * nckd, abs=1e-12)
    assert loss(s, y, t, Progress(epoch=50)).total.item() == loss(s, y, t, Progress(epoch=19)).total.item()


def _np_dist(s: np.ndarray, t: np.ndarray, temperature: float) -> tuple[float, float]:
    def softmax(z):
        e = np.exp(z / temperature - (z / temperature).max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    def corr(a, b, eps=1e-8):  # Pearson's r with the reference code's eps in the denominator
        a, b = a - a.mean(), b - b.mean()
        return (a @ b) / (np.linalg.norm(a) * np.linalg.norm(b) + eps)

    ps, pt = softmax(s), softmax(t)
    assert abs(corr(ps[0], pt[0], 0.0) - np.corrcoef(ps[0], pt[0])[0, 1]) < 1e-12  # it is Pearson's r
    inter = 1 - np.mean([corr(ps[i], pt[i]) for i in range(len(s))])
    intra = 1 - np.mean([corr(ps[:, c], pt[:, c]) for c in range(s.shape[1])])
    return temperature**2 * inter, temperature**2 * intra


def test_dist_terms_match_numpy_pearson():
    g = np.random.default_rng(0)
    s, t = g.normal(size=(6, 5)), g.normal(size=(6, 5))
    inter, intra = dist_terms(torch.from_numpy(s), torch.from_numpy(t), 4.0)
    want = _np_dist(s, t, 4.0)
    assert inter.item() == pytest.approx(want[0], abs=1e-6) and intra.item() == pytest.approx(want[1], abs=1e-6)
    same = torch.from_numpy(s)
    assert [x.item() for x in dist_terms(same, same, 4.0)] == pytest.approx([0.0, 0.0], abs=1e-4)  # eps 1e-8


def test_dist_loss_adds_weights_and_ce():
    g = np.random.default_rng(1)
    s, t = torch.from_numpy(g.normal(size=(4, 3))), torch.from_numpy(g.normal(size=(4, 3)))
    y = torch.tensor([0, 1, 2, 0])
    inter, intra = _np_dist(s.numpy(), t.numpy(), 2.0)
    ce = float(F.cross_entropy(s, y))
    got = DISTLoss(temperature=2.0, beta=3.0, gamma=0.5, ce_weight=0.25)(s, y, t).total.item()
    assert got == pytest.approx(0.25 * ce + 3.0 * inter + 0.5 * intra, abs=1e-6)


def test_standardize_by_hand_and_invariance():
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]], dtype=torch.float64)
    # row 2: mean 2, sample std sqrt(((-2)^2 + (-2)^2 + 4^2) / 2) = sqrt(12)
    want = torch.tensor([[-1.0, 0.0, 1.0], [-2 / math.sqrt(12), -2 / math.sqrt(12), 4 / math.sqrt(12)]],
                        dtype=torch.float64)
    assert torch.allclose(standardize(z, eps=0.0), want, atol=1e-12)
    s, t, y = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64), torch.randint(0, 4, (5,))
    on = KDLoss(alpha=1.0, temperature=2.0, standardize=True)
    # standardised KD ignores the teacher's logit scale and shift; plain KD does not
    assert on(s, y, 7 * t + 3).total.item() == pytest.approx(on(s, y, t).total.item(), abs=1e-6)
    off = KDLoss(alpha=1.0, temperature=2.0)
    assert abs(off(s, y, 7 * t + 3).total.item() - off(s, y, t).total.item()) > 1e-3
    # the label term keeps the raw logits
    assert KDLoss(alpha=0.0, standardize=True)(s, y, t).total.item() == pytest.approx(F.cross_entropy(s, y).item())
    dkd = DKDLoss(warmup_epochs=0, standardize=True)
    assert dkd(s, y, 5 * t - 1).total.item() == pytest.approx(dkd(s, y, t).total.item(), abs=1e-6)


def test_gradients_of_dkd_dist_and_standardize():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 5, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 4])
    assert torch.autograd.gradcheck(lambda x: torch.stack(dkd_terms(x, t, y, 2.0)), (s,))
    assert torch.autograd.gradcheck(lambda x: torch.stack(dist_terms(x, t, 2.0)), (s,))
    assert torch.autograd.gradcheck(lambda x: standardize(x), (s,))
    DKDLoss(warmup_epochs=0)(s, y, t).total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_attention_map_and_transfer_by_hand():
    f = torch.zeros(1, 2, 2, 2)
    f[0, 0, 0, 0], f[0, 1, 1, 1] = 2.0, 2.0  # mean over channels of f^2: [[2, 0], [0, 2]] -> normalised
    assert torch.allclose(attention_map(f), torch.tensor([[1, 0, 0, 1]]) / math.sqrt(2))
    g = torch.zeros(1, 3, 2, 2)
    g[0, :, 0, 1] = 1.0  # attention only at (0, 1)
    # both maps are unit vectors: [a, 0, 0, a] vs [0, 1, 0, 0] -> mean of squared differences = (2 a^2 + 1) / 4 = 1/2
    loss = AttentionLoss(pairs=[["s", "t"]], weight=10.0)
    out = loss(ModelOutput(torch.zeros(1, 2), {"s": f}), torch.tensor([0]), ModelOutput(torch.zeros(1, 2), {"t": g}))
    assert out.total.item() == pytest.approx(math.log(2) + 10 * 0.5, abs=1e-6)


ARGS = ["--data.train_subset", "200", "--generations", "1", "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false", "--cache.mode", "online", "--kd.variant", "fitnet",
        "--kd.init_args.pairs", '[["stages.1", "stages.1"]]']


def test_fitnet_student_killed_mid_training_resumes_with_its_regressor(tmp_path):
    """Killed after epoch 0 of the student, resumed: the regressor comes back from the epoch checkpoint, so the
    resumed run ends exactly like an uninterrupted one (same regressor, same student)."""
    ref = tmp_path / "ref"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(ref), *ARGS) == 0
    out = tmp_path / "run"
    env = {**os.environ, "DISTILL_FAULT": "fit:1:epoch:0"}
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", "recipes/digits-ban.yaml", "--out", str(out),
                           *ARGS], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    last = torch.load(out / "gen-1" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert "loss.regressors.0.0.weight" in last  # the epoch checkpoint carries the regressor
    assert run_cli("run", "--out", str(out), "--resume") == 0
    a = torch.load(ref / "gen-1" / "model.ckpt", weights_only=True)["state_dict"]
    b = torch.load(out / "gen-1" / "model.ckpt", weights_only=True)["state_dict"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    summaries = [json.loads((r / "summary.json").read_text())["generations"][1]["test"] for r in (ref, out)]
    assert summaries[0] == summaries[1]
