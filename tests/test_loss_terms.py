"""A loss returns its total and its named terms; the engine logs each term as ``train/<name>`` beside ``train/loss``
(metrics.csv and the user's loggers), on the steps it logs the loss."""

from __future__ import annotations

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_RUN_ARGS, TensorBank, run_cli

from distill.losses import LOSSES, CrossEntropy, DKDLoss, KDLoss, Progress, build_loss, dkd_terms, kd_kl
from distill.outputs import EMBEDDING, ModelOutput

B, C = 6, 5
# Arguments that make every term of each registered loss non-zero (KD-style losses: 0 < alpha < 1).
ARGS = {"standard": {"alpha": 0.3, "temperature": 2.0}, "cwtm": {"alpha": 0.3, "temperature": 2.0},
        "dkpp": {"alpha": 0.3, "temperature": 2.0}, "dkd": {"temperature": 2.0, "init_args": {"warmup_epochs": 8}},
        "dist": {"temperature": 2.0}, "fitnet": {"init_args": {"pairs": [["f", "g"]], "weight": 3.0}},
        "at": {"init_args": {"pairs": [["f", "g"]], "weight": 30.0}},
        "rkd": {"init_args": {"weight": 2.0}}, "pkt": {}, "sp": {},
        "crd": {"init_args": {"negatives": 4, "feat_dim": 3}}}
EXPECTED = {"standard": ["ce", "kd"], "cwtm": ["ce", "kd"], "dkpp": ["ce", "kd"], "dkd": ["ce", "tckd", "nckd"],
            "dist": ["ce", "inter", "intra"], "fitnet": ["ce", "hint"], "at": ["ce", "at"],
            "rkd": ["ce", "distance", "angle"], "pkt": ["ce", "pkt"], "sp": ["ce", "sp"],
            "crd": ["ce", "student_anchor", "teacher_anchor"]}


def _outputs(seed: int = 0) -> tuple[ModelOutput, torch.Tensor, ModelOutput]:
    g = torch.Generator().manual_seed(seed)
    student = ModelOutput(torch.randn(B, C, generator=g, dtype=torch.float64, requires_grad=True),
                          {"f": torch.randn(B, 3, 4, 4, generator=g, dtype=torch.float64),
                           EMBEDDING: torch.randn(B, 7, generator=g, dtype=torch.float64, requires_grad=True)})
    bank = torch.randn(20, 9, generator=g, dtype=torch.float64)  # every training sample's teacher embedding (CRD)
    index = torch.arange(B) * 3
    teacher = ModelOutput(3 * torch.randn(B, C, generator=g, dtype=torch.float64),
                          {"g": torch.randn(B, 4, 4, 4, generator=g, dtype=torch.float64), EMBEDDING: bank[index]},
                          bank=TensorBank(bank), index=index)
    return student, torch.randint(0, C, (B,), generator=g), teacher


def _weighted_sum(out) -> float:
    return sum(out.weights[name] * float(value) for name, value in out.terms.items())


def test_every_registered_loss_is_covered():
    assert sorted(EXPECTED) == LOSSES.names()


@pytest.mark.parametrize("variant", sorted(EXPECTED))
def test_terms_weighted_sum_is_the_total_and_a_wrong_weighting_is_caught(variant):
    student, y, teacher = _outputs()
    loss = build_loss(1, variant, **ARGS[variant])
    if loss.has_parameters:
        loss.bind(student, teacher)
        loss.double()
    torch.manual_seed(0)  # DKPP draws its permutation
    out = loss(student, y, teacher, Progress(epoch=1))
    assert list(out.terms) == EXPECTED[variant] and list(out.weights) == EXPECTED[variant]
    assert out.total.requires_grad and not any(v.requires_grad for v in out.terms.values())
    assert all(v.dim() == 0 and math.isfinite(float(v)) for v in out.terms.values())
    assert _weighted_sum(out) == pytest.approx(out.total.item(), rel=1e-6, abs=1e-9)
    for name in out.terms:  # every term counts: one weight off by 1 no longer adds up to the total
        wrong = out._replace(weights={**out.weights, name: out.weights[name] + 1})
        assert _weighted_sum(wrong) != pytest.approx(out.total.item(), rel=1e-6, abs=1e-9), name


def test_kd_terms_by_hand_and_a_zero_weight_term_is_not_computed():
    student, y, teacher = _outputs(1)
    s, t = student.logits, teacher.logits
    out = KDLoss(alpha=0.3, temperature=2.0)(s, y, t)
    assert float(out.terms["ce"]) == pytest.approx(F.cross_entropy(s, y).item(), abs=1e-12)
    assert float(out.terms["kd"]) == pytest.approx(kd_kl(s, t, 2.0).mean().item(), abs=1e-12)
    assert dict(out.weights) == pytest.approx({"ce": 0.7, "kd": 0.3})
    teacher_only = KDLoss(alpha=1.0, temperature=2.0)(s, y, t)  # Born-Again's loss: no label term
    assert list(teacher_only.terms) == ["kd"] and float(teacher_only.terms["kd"]) == teacher_only.total.item()
    labels_only = CrossEntropy()(s, y)
    assert list(labels_only.terms) == ["ce"] and float(labels_only.terms["ce"]) == F.cross_entropy(s, y).item()


def test_dkd_terms_and_warmup_weights_by_hand():
    student, y, teacher = _outputs(2)
    s, t = student.logits, teacher.logits
    out = DKDLoss(temperature=2.0, tckd_weight=2.0, nckd_weight=8.0, warmup_epochs=4, ce_weight=0.5)(
        s, y, t, Progress(epoch=1))
    tckd, nckd = dkd_terms(s, t, y, 2.0)
    assert [float(v) for v in out.terms.values()] == pytest.approx(
        [F.cross_entropy(s, y).item(), tckd.item(), nckd.item()], abs=1e-12)
    assert dict(out.weights) == {"ce": 0.5, "tckd": 0.5 * 2.0, "nckd": 0.5 * 8.0}  # epoch 1 of 4: (1 + 1) / 4


@pytest.fixture(scope="module")
def dkd_run(tmp_path_factory: pytest.TempPathFactory):
    """A tiny DKD student run that logs every step to metrics.csv and to a TensorBoard logger."""
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("terms") / "dkd"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), *TINY_RUN_ARGS, "--kd.variant", "dkd",
                   "--kd.init_args.warmup_epochs", "2", "--trainer.log_every_n_steps", "1",
                   "--trainer.logger", "TensorBoardLogger") == 0
    return out


def test_metrics_csv_has_each_dkd_term_per_logged_step(dkd_run):
    with open(dkd_run / "gen-1" / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["train/loss"]]
    assert len(rows) == 10  # 300 samples in batches of 64: 5 steps an epoch, 2 epochs, every step logged
    for r in rows:
        ce, tckd, nckd = (float(r[f"train/{name}"]) for name in ("ce", "tckd", "nckd"))
        assert all(math.isfinite(v) for v in (ce, tckd, nckd))
        warmup = min((int(r["epoch"]) + 1) / 2, 1.0)  # DKD's defaults: ce 1, tckd 1, nckd 8
        assert float(r["train/loss"]) == pytest.approx(ce + warmup * (tckd + 8 * nckd), rel=1e-5)
    with open(dkd_run / "gen-0" / "logs" / "metrics.csv") as f:
        columns = next(csv.reader(f))
    assert "train/loss" in columns and not [c for c in columns if c.startswith("train/") and c not in
                                            ("train/loss", "train/acc")]  # cross-entropy alone: its term is the loss


def test_tensorboard_logger_shows_the_same_terms(dkd_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = next((dkd_run / "gen-1").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events.parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/ce", "train/tckd", "train/nckd"} <= tags
    for tag in ("train/ce", "train/tckd", "train/nckd"):
        values = acc.Scalars(tag)
        assert len(values) == 10 and all(math.isfinite(v.value) for v in values)
