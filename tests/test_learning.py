"""Tests that fail when nothing learns: gen 0 beats chance, a student moves toward its teacher, every loss pulls a toy
student toward its target, and a loss's own parameters (FitNets' regressor) train, are saved and stay out of the
rebuilt network."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli
from torch import nn

from distill.losses import LOSSES, TEACHER_LOGITS, Progress, build_loss
from distill.outputs import FeatureTap, ModelOutput

RECIPE = "recipes/digits-ban.yaml"
QUIET = ["--trainer.enable_progress_bar", "false"]


def test_generation_zero_beats_chance_and_students_approach_their_teacher(tmp_path):
    """Digits (10 classes, chance 10%): gen 0 after 6 epochs on 600 images is far above chance, and the student's
    KL to its cached teacher on the training set falls epoch after epoch (a callback reads the run's own cache)."""
    out, kl = tmp_path / "run", tmp_path / "kl.json"
    cache = str(out / "cache" / "gen-0")
    callback = {"class_path": "usernet.TeacherKL", "init_args": {"path": str(kl), "cache": cache}}
    per_gen = [{"generation": 1, "trainer": {"callbacks": [callback]}}]
    assert run_cli("run", RECIPE, "--out", str(out), *QUIET, "--data.train_subset", "600", "--generations", "1",
                   "--trainer.max_epochs", "6", "--per_generation", json.dumps(per_gen)) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["generations"][0]["test"]["acc"] > 0.6  # chance is 0.1
    curve = json.loads(kl.read_text())
    assert len(curve) == 6 and curve[-1] < 0.5 * curve[0], curve
    assert s["generations"][1]["agreement_with_teacher"] > 0.6


def _kl(teacher: torch.Tensor, student: torch.Tensor) -> float:
    p = F.log_softmax(teacher, 1)
    return float((p.exp() * (p - F.log_softmax(student, 1))).sum(1).mean())


LOGIT_LOSSES = [name for name in LOSSES.names() if LOSSES.get(name).needs == {TEACHER_LOGITS}]


@pytest.mark.parametrize("variant", LOGIT_LOSSES)
def test_every_logit_loss_moves_a_toy_student_toward_its_teacher(variant):
    """Free logits trained by the loss alone (alpha 1) get closer to the teacher's distribution; the teacher's
    argmax is each sample's label, so DKPP (which keeps only the argmax in place) must move toward it too."""
    g = torch.Generator().manual_seed(0)
    teacher = 3 * torch.randn(32, 5, generator=g)
    target = teacher.argmax(1)
    student = nn.Parameter(torch.zeros(32, 5))
    loss = build_loss(1, variant, alpha=1.0, temperature=2.0)
    opt = torch.optim.SGD([student], lr=0.5)
    before, acc0 = _kl(teacher, student.detach()), float((student.argmax(1) == target).float().mean())
    torch.manual_seed(0)
    for step in range(200):
        opt.zero_grad()
        # past warm-ups
        loss(ModelOutput(student), target, ModelOutput(teacher), Progress(100, step, 101)).total.backward()
        opt.step()
    after = _kl(teacher, student.detach())
    acc = float((student.argmax(1) == target).float().mean())
    if variant == "dkpp":  # the permuted non-argmax scores are noise: only the argmax is a fixed target
        assert acc > 0.9 > acc0
    elif variant == "dist":  # DIST matches correlations of the probabilities, not the probabilities themselves
        inter, intra = _relations(teacher, student.detach())
        assert inter < 0.2 and intra < 0.2 and acc > 0.9, (inter, intra, acc)
    else:
        assert after < 0.2 * before, (before, after)


def _relations(teacher: torch.Tensor, student: torch.Tensor) -> tuple[float, float]:
    """1 - mean Pearson correlation of the probability rows (per sample) and columns (per class), written here."""
    def corr(a, b):
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    p, q = F.softmax(teacher / 2, 1), F.softmax(student / 2, 1)
    return float(1 - corr(q, p).mean()), float(1 - corr(q.t(), p.t()).mean())


class TinyConv(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@pytest.mark.parametrize("variant", ["fitnet", "at"])
def test_feature_losses_pull_student_features_toward_the_teachers(variant):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 6, 6)
    teacher, student = TinyConv(6).eval(), TinyConv(4)
    with torch.no_grad():
        t_out = FeatureTap(teacher, ["body"])(x)
    tap = FeatureTap(student, ["body"])
    loss = build_loss(1, variant, init_args={"pairs": [["body", "body"]]})
    loss.bind(tap(x), t_out)
    target = t_out.logits.argmax(1)
    opt = torch.optim.Adam([*student.parameters(), *loss.parameters()], lr=0.02)

    def hint() -> float:
        with torch.no_grad():
            return float(loss.hint(tap(x), t_out))

    before = hint()
    for _ in range(150):
        opt.zero_grad()
        loss(tap(x), target, t_out).total.backward()
        opt.step()
    assert hint() < 0.5 * before, (before, hint())


def test_fitnets_regressor_trains_is_checkpointed_and_left_out_of_the_network(tmp_path):
    from distill.tasks.born_again import load_student

    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *QUIET, "--data.train_subset", "300", "--generations", "2",
                   "--trainer.max_epochs", "2", "--cache.mode", "online", "--kd.variant", "fitnet",
                   "--kd.init_args.pairs", '[["stages.1", "stages.1"]]') == 0
    state = torch.load(out / "gen-1" / "model.ckpt", weights_only=True)
    regressor = {k: v for k, v in state["state_dict"].items() if k.startswith("loss.regressors.0.")}
    assert regressor["loss.regressors.0.0.weight"].shape[:2] == (64, 64)  # small_cnn width 32: stages.1 has 64 maps
    assert int(regressor["loss.regressors.0.1.num_batches_tracked"]) > 0  # it ran in training
    saved = {id(p) for group in state["optimizer_states"][0]["param_groups"] for p in group["params"]}
    n_student = sum(1 for k in state["state_dict"] if k.startswith("student.") and "running" not in k
                    and "num_batches" not in k)
    assert len(saved) > n_student  # the regressor's parameters are in the optimizer too
    model = load_student(out / "gen-1" / "model.ckpt", "small_cnn", 10, 1)  # the backbone alone
    assert not any(k.startswith("loss") for k in model.state_dict())
    s = json.loads((out / "summary.json").read_text())
    assert [g["teacher"] for g in s["generations"]] == [None, "gen-0", "gen-1"]
