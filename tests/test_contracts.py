"""Declared seams: the loss resolved once per generation and built once, the Task base, the data-module hooks, the
flag of losses that own parameters, and every backbone registered by ``import distill``."""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_RUN_ARGS, run_cli
from torch import nn

from distill.data import DATASETS, DataError, DistillDataModule
from distill.losses import LOSSES, CrossEntropy, DistillLoss, DKDLoss, FitNetsLoss, LossOutput
from distill.resolve import load_recipe
from distill.spec import LossSpec
from distill.tasks import TASKS, Task, TaskContext
from distill.tasks.born_again import GenerationModule

RECIPE = "recipes/digits-ban.yaml"
ROOT = Path(__file__).resolve().parents[1]


def _count_constructions(monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    """Count every loss constructed from now on, by class (each one passes through ``DistillLoss.__init__``)."""
    counts: collections.Counter = collections.Counter()

    def counting(self: DistillLoss, *args, **kwargs) -> None:
        counts[type(self).__name__] += 1
        nn.Module.__init__(self, *args, **kwargs)

    monkeypatch.setattr(DistillLoss, "__init__", counting)
    return counts


@pytest.mark.parametrize("mode, variant, extra", [
    ("clean", "dkd", ["--kd.init_args.warmup_epochs", "1"]),
    ("online", "fitnet", ["--kd.init_args.pairs", '[["stages.1", "stages.1"]]']),
])
def test_the_loss_is_constructed_once_per_generation(tmp_path, monkeypatch, mode, variant, extra):
    counts = _count_constructions(monkeypatch)
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, "--generations", "2", "--trainer.max_epochs",
                   "1", "--cache.mode", mode, "--kd.variant", variant, *extra) == 0
    student_loss = LOSSES.get(variant).__name__
    # two students, one loss each (resolving, preflight, the teacher source and the task share it); generation 0's
    # cross-entropy once; evaluation and caching reuse the trained modules
    assert counts == {student_loss: 2, "CrossEntropy": 1}, counts


def test_the_spec_holds_the_resolved_loss():
    specs = load_recipe(RECIPE, ["--kd.variant", "dkd", "--kd.temperature", "2", "--kd.init_args.warmup_epochs",
                                 "3"]).specs
    assert specs[0].loss == LossSpec("cross_entropy", CrossEntropy)
    loss = specs[1].loss
    assert loss.name == "dkd" and loss.cls is DKDLoss
    assert dict(loss.kwargs) == {"temperature": 2.0, "tckd_weight": 1.0, "nckd_weight": 8.0, "warmup_epochs": 3,
                                 "ce_weight": 1.0, "standardize": False}  # the recipe's values, then the defaults
    built = loss.build()
    assert (built.temperature, built.warmup_epochs, built.nckd_weight) == (2.0, 3, 8.0)
    assert built is not loss.build()  # a spec describes the loss; the run owns the one instance


def test_a_value_only_the_constructor_refuses_fails_in_preflight_before_the_data(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("distill.generations.build_datamodule", lambda data: pytest.fail("the data was loaded"))
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS, "--cache.mode", "online", "--kd.variant",
                   "fitnet", "--kd.init_args.pairs", '[["stem"]]') == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "kd.init_args for 'fitnet' (generation 1)" in err
    assert not out.exists()


def test_tasks_derive_from_the_task_base():
    assert TASKS.names() == ["born_again", "prompted", "prompted_lm"]
    assert all(issubclass(TASKS.get(name), Task) for name in TASKS.names())
    spec = load_recipe(RECIPE, []).specs[1]
    assert Task.check_network(spec, nn.Linear(2, 2)) is None  # the default accepts any network
    for method in ("create", "from_network", "network_from_checkpoint"):
        assert getattr(GenerationModule, method).__func__ is not getattr(Task, method).__func__


class _OwnsParameters(DistillLoss):
    has_parameters = True
    needs = frozenset()

    def bind(self, student, teacher) -> None:
        self.head = nn.Linear(student.logits.shape[1], 1)

    def forward(self, student, target, teacher=None, progress=None) -> LossOutput:
        total = self.head(student.logits).mean()
        return LossOutput(total, {"head": total.detach()}, {"head": 1.0})


class _BindsWithoutFlag(_OwnsParameters):
    has_parameters = False


def test_bind_is_called_for_losses_that_declare_parameters():
    assert {n for n in LOSSES.names() if LOSSES.get(n).has_parameters} == {"fitnet", "crd"}
    assert FitNetsLoss.has_parameters
    spec = load_recipe(RECIPE, []).specs[0]
    context = TaskContext(10, 1, torch.zeros(1, 1, 8, 8))
    module = GenerationModule.create(spec, context, _OwnsParameters())
    assert module.loss.head.in_features == 10  # bound to one batch's shapes, in the module's parameters
    assert any(name.startswith("loss.head") for name, _ in module.named_parameters())
    assert not hasattr(GenerationModule.create(spec, context, _BindsWithoutFlag()).loss, "head")


def test_data_module_hooks_are_declared_with_defaults():
    digits = DATASETS.get("digits")(train_subset=50)
    assert "set_views" not in vars(type(digits)) and "input_stats" not in vars(type(digits))
    assert digits.input_stats() is None and digits.augmentation_description() == "none"
    digits.set_views(None, 3)  # nothing to replay: a no-op
    with pytest.raises(DataError, match="cache.mode replay needs an augmenting in-memory image dataset"):
        digits.set_views(7, 3)
    with pytest.raises(DataError, match="'digits' has no training augmentation"):
        digits.check_views()
    image = DATASETS.get("cifar10")(root="nowhere")
    assert image.input_stats() == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))  # the table's CIFAR-10 entry
    assert issubclass(type(image), DistillDataModule)


def test_no_hook_is_probed_with_getattr():
    hooks = ("check_network", "set_views", "check_views", "input_stats", "augmentation_description", "bind")
    probe = re.compile(r"(getattr|hasattr)\([^)]*[\"'](" + "|".join(hooks) + r")[\"']")
    found = [f"{p.relative_to(ROOT)}:{m.group(0)}" for p in sorted((ROOT / "distill").rglob("*.py"))
             for m in probe.finditer(p.read_text())]
    assert found == []
    assert ".bind is not" not in (ROOT / "distill" / "tasks" / "born_again.py").read_text()


def test_import_distill_registers_every_backbone():
    code = ("import sys, distill; from distill.models import BACKBONES; "
            "print('prompted_vit' in BACKBONES, 'distill.tasks' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "False"]  # registered by the package itself, not by the tasks
