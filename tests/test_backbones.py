"""The CIFAR backbone families: registration into timm, published parameter counts and the timm backbone contract."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import distill.models  # noqa: F401  (registers the families with timm)
from distill.models.base import ClassifierBackbone

# name -> (published parameter count, number of classes the figure assumes, source)
PUBLISHED: dict[str, tuple[float, int, str]] = {
    "cifar_resnet20": (0.27e6, 10, "He et al. 2016"),
    "cifar_resnet32": (0.46e6, 10, "He et al. 2016"),
    "cifar_resnet56": (0.85e6, 10, "He et al. 2016"),
    "cifar_resnet110": (1.7e6, 10, "He et al. 2016"),
    "cifar_resnet8x4": (1.2e6, 100, "CRD (Tian et al. 2020)"),
    "cifar_resnet32x4": (7.4e6, 100, "CRD (Tian et al. 2020)"),
    "cifar_wrn_16_2": (0.69e6, 10, "Zagoruyko & Komodakis 2016"),
    "cifar_wrn_28_2": (1.47e6, 10, "Born-Again Networks 2018"),
    "cifar_wrn_40_2": (2.2e6, 10, "Zagoruyko & Komodakis 2016"),
    "cifar_wrn_28_10": (36.5e6, 10, "Zagoruyko & Komodakis 2016"),
    "cifar_densenet_bc_100_12": (0.8e6, 100, "Huang et al. 2017"),  # 769,162 at 10 classes: 3.9% under
    "cifar_densenet_bc_250_24": (15.3e6, 10, "Huang et al. 2017"),
}
LARGE = {"cifar_wrn_28_10", "cifar_densenet_bc_250_24", "cifar_resnet32x4"}  # forward at batch 1 to stay fast
# The 15M-parameter DenseNet-BC-250 takes seconds per forward on 2 CPU cores: its forward tests run with -m slow.
FORWARD = [pytest.param(n, marks=pytest.mark.slow) if n == "cifar_densenet_bc_250_24" else n for n in PUBLISHED]
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_all_families_registered_in_timm() -> None:
    assert set(PUBLISHED) <= set(timm.list_models("cifar_*"))


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameter_count_matches_published(name: str) -> None:
    published, num_classes, source = PUBLISHED[name]
    n = _n_params(timm.create_model(name, num_classes=num_classes))
    assert abs(n - published) / published < 0.03, f"{name}: {n:,} vs {published:,.0f} ({source}, {num_classes} classes)"


@pytest.mark.parametrize("name", FORWARD)
@torch.no_grad()
def test_timm_backbone_contract(name: str) -> None:
    batch = 1 if name in LARGE else 2
    model = timm.create_model(name, num_classes=100).eval()
    assert isinstance(model, ClassifierBackbone) and model.num_classes == 100
    x = torch.randn(batch, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.ndim == 4 and feats.shape[:2] == (batch, model.num_features) and feats.shape[2:] == (8, 8)
    assert model.forward_head(feats, pre_logits=True).shape == (batch, model.num_features)
    assert model(x).shape == (batch, 100)
    model.reset_classifier(5)
    assert model.num_classes == 5 and model(x).shape == (batch, 5)

    cfg = model.default_cfg
    assert tuple(cfg["input_size"][1:]) == (32, 32)
    assert tuple(cfg["mean"]) == CIFAR100_MEAN and tuple(cfg["std"]) == CIFAR100_STD


@pytest.mark.parametrize("name", FORWARD)
@torch.no_grad()
def test_grey_and_colour_input(name: str) -> None:
    batch = 1 if name in LARGE else 2
    for in_chans in (1, 3):
        model = timm.create_model(name, num_classes=10, in_chans=in_chans).eval()
        assert model(torch.randn(batch, in_chans, 32, 32)).shape == (batch, 10)


def test_train_mode_batch_of_two() -> None:
    model = timm.create_model("cifar_resnet20", num_classes=10, in_chans=1)
    model(torch.randn(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@torch.no_grad()
def test_resnet_option_a_shortcut_is_parameter_free() -> None:
    model = timm.create_model("cifar_resnet20", num_classes=10, shortcut="A").eval()
    assert _n_params(model) == 269_722
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_wrn_drop_rate_goes_inside_blocks() -> None:
    model = timm.create_model("cifar_wrn_16_2", drop_rate=0.3)
    rates = [m.p for m in model.stages.modules() if isinstance(m, nn.Dropout)]
    assert len(rates) == 6 and set(rates) == {0.3}


@pytest.mark.parametrize("family,depth",
                         [("cifar_resnet20", 21), ("cifar_wrn_16_2", 15), ("cifar_densenet_bc_100_12", 99)])
def test_bad_depth_rejected(family: str, depth: int) -> None:
    with pytest.raises(ValueError, match="depth"):
        timm.create_model(family, depth=depth)
