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


def _basic_block_params(cin: int, cout: int) -> int:
    """Two 3x3 convs + two BNs, and a 1x1 conv + BN projection when the width changes (worked out by hand)."""
    n = 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout
    return n + (cin * cout + 2 * cout if cin != cout else 0)


@pytest.mark.parametrize("name,width,blocks", [("small_resnet8", 16, 1), ("small_resnet8_w32", 32, 1),
                                               ("small_resnet14_w32", 32, 2)])
def test_small_resnet_parameter_count_and_layout(name: str, width: int, blocks: int) -> None:
    w = [width, 2 * width, 4 * width]
    expected = 9 * 1 * width + 2 * width  # stem conv (1 grey channel) + BN
    cin = width
    for cout in w:
        for _ in range(blocks):
            expected += _basic_block_params(cin, cout)
            cin = cout
    expected += 4 * width * 10 + 10  # classifier
    model = timm.create_model(name, num_classes=10, in_chans=1)
    assert _n_params(model) == expected
    assert 1e4 < expected < 1e6  # the family's intended range


@pytest.mark.parametrize("size,chans,stride,out", [(8, 1, 1, 2), (28, 1, 1, 7), (28, 1, 2, 4), (32, 3, 2, 4)])
@torch.no_grad()
def test_small_resnet_contract_on_its_input_sizes(size: int, chans: int, stride: int, out: int) -> None:
    model = timm.create_model("small_resnet8", num_classes=10, in_chans=chans, stem_stride=stride).eval()
    assert isinstance(model, ClassifierBackbone) and model.default_cfg["input_size"] == (1, 28, 28)
    x = torch.randn(2, chans, size, size)
    feats = model.forward_features(x)
    assert feats.shape == (2, 64, out, out)
    assert model(x).shape == (2, 10)
    with pytest.raises(ValueError, match="stem_stride"):
        timm.create_model("small_resnet8", stem_stride=0)


def test_small_resnet_can_memorise_a_batch_of_random_labels() -> None:
    """The residual net drives the training loss on a fixed batch of random labels toward 0 (it can memorise)."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    model = timm.create_model("small_resnet8", num_classes=10, in_chans=1, stem_stride=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(60):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.95  # chance is 0.1: it fitted labels with no signal
