"""Prompted students: where each kind's tokens go, pooling, the frozen base, gradients, checkpoints, a real run."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
from conftest import run_cli

from distill.models import create_backbone
from distill.prompts import BaseMismatchError, PromptedViT, load_base, load_prompted
from distill.prompts.checkpoint import REFERENCE_KEY
from distill.resolve import load_recipe
from distill.tasks import TaskContext
from distill.tasks.prompted import PromptedModule

BASE_ARGS = {"img_size": 16, "patch_size": 4, "embed_dim": 24, "depth": 3, "num_heads": 2}
N_PATCHES, PREFIX = 16, 1


def prompted(prompt: dict, seed: int = 0, **kwargs) -> PromptedViT:
    torch.manual_seed(1)
    args = {"base_args": {**BASE_ARGS, **kwargs.pop("base_args", {})}, "source": {"seed": seed}, "prompt": prompt,
            **kwargs}
    return create_backbone({"name": "prompted_vit", "init_args": args}, 3, 3)


def block_inputs(model: PromptedViT, x: torch.Tensor) -> list[torch.Tensor]:
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach())) for b in model.base.blocks]
    with torch.no_grad():
        model.forward_features(x)
    for h in hooks:
        h.remove()
    return seen


def embedded(model: PromptedViT, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Prefix + patch tokens as the unprompted base builds them (patches mapped by ``* scale``)."""
    with torch.no_grad():
        return model.base._pos_embed(model.base.patch_embed(x) * scale)


KINDS = [  # (prompt spec, tokens before patches, tokens after patches)
    ({"kind": "none"}, 0, 0), ({"kind": "shallow", "length": 3}, 3, 0), ({"kind": "deep", "length": 2}, 2, 0),
    ({"kind": "deep", "length": 2, "shared": True}, 2, 0), ({"kind": "around", "before": 2, "after": 3}, 2, 3),
    ({"kind": "input_dependent", "length": 2}, 2, 0), ({"kind": "input_dependent", "length": 2, "deep": True}, 2, 0),
    ({"kind": "input_map", "prompt": {"kind": "deep", "length": 1}}, 1, 0),
]


@pytest.mark.parametrize(("spec", "nb", "na"), KINDS, ids=lambda v: json.dumps(v) if isinstance(v, dict) else None)
def test_tokens_go_where_the_kind_says(spec: dict, nb: int, na: int) -> None:
    model = prompted(spec).eval()
    x = torch.randn(2, 3, 16, 16)
    inputs = block_inputs(model, x)
    assert [t.shape for t in inputs] == [(2, PREFIX + nb + N_PATCHES + na, 24)] * 3
    assert model.forward_features(x).shape == (2, PREFIX + nb + N_PATCHES + na, 24)
    first = inputs[0]
    base = embedded(model, x)  # prefix and patches: exactly the base's own tokens (with position embeddings)
    assert torch.equal(first[:, :PREFIX], base[:, :PREFIX])
    assert torch.allclose(first[:, PREFIX + nb:PREFIX + nb + N_PATCHES], base[:, PREFIX:], atol=1e-6)
    kind = model.prompt.inner if spec["kind"] == "input_map" else model.prompt
    context = model.base.patch_embed(x).mean(1)
    deep = spec["kind"] == "deep" or spec.get("deep", False)

    def prompt_slots(tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([tokens[:, PREFIX:PREFIX + nb], tokens[:, PREFIX + nb + N_PATCHES:]], dim=1)

    for i, tokens in enumerate(inputs):
        if nb + na == 0:
            continue
        if i and not deep:  # shallow-style prompts: later blocks see what the previous block made of them
            assert not torch.allclose(prompt_slots(tokens), prompt_slots(inputs[0]))
            continue
        index = 0 if spec.get("shared") or not deep else i
        expected = kind.prompt[index].expand(2, -1, -1)  # no position embedding added
        if spec["kind"] == "input_dependent":
            expected = expected + kind.g(context).view(2, nb, 24)
        assert torch.allclose(prompt_slots(tokens), expected, atol=1e-6)


def test_input_map_changes_the_patch_tokens_only() -> None:
    model = prompted({"kind": "input_map", "mode": "affine"}).eval()
    with torch.no_grad():
        model.prompt.scale.fill_(2.0)
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(block_inputs(model, x)[0], embedded(model, x, scale=2.0), atol=1e-5)
    low = prompted({"kind": "input_map", "mode": "lowrank", "rank": 2}).eval()
    assert torch.allclose(block_inputs(low, x)[0], embedded(low, x), atol=1e-6)  # starts at the identity


def test_inputs_are_renormalised_to_the_base_statistics_grey_repeated_and_resized() -> None:
    model = prompted({"kind": "none"})  # timm's ViT statistics: mean 0.5, std 0.5
    pixels = torch.rand(2, 1, 8, 8)
    model.adapter.set_data_stats((0.3,), (0.2,))
    out = model.adapter((pixels - 0.3) / 0.2)
    assert out.shape == (2, 3, 16, 16)
    expected = torch.nn.functional.interpolate((pixels - 0.5) / 0.5, size=(16, 16), mode="bilinear",
                                               align_corners=False, antialias=True)
    assert torch.allclose(out, expected.expand(-1, 3, -1, -1), atol=1e-5)


def test_base_from_a_weights_file_or_a_run_checkpoint(tmp_path) -> None:
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", num_classes=7, **BASE_ARGS)
    torch.save(vit.state_dict(), tmp_path / "w.pth")
    torch.save({"state_dict": {f"student.{k}": v for k, v in vit.state_dict().items()}}, tmp_path / "model.ckpt")
    expected = {k: v for k, v in vit.state_dict().items() if not k.startswith("head.")}
    for source in ({"file": str(tmp_path / "w.pth")}, {"checkpoint": str(tmp_path / "model.ckpt")}):
        base = load_base("vit_tiny_patch16_224", BASE_ARGS, source)  # timm's loader / the run's student tensors
        assert base.state_dict().keys() == expected.keys()
        assert all(torch.equal(v, expected[k]) for k, v in base.state_dict().items())
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_base("vit_tiny_patch16_224", {**BASE_ARGS, "embed_dim": 32}, {"file": str(tmp_path / "w.pth")})
    with pytest.raises(ValueError, match="file not found"):
        load_base("vit_tiny_patch16_224", BASE_ARGS, {"checkpoint": str(tmp_path / "nope.ckpt")})
    with pytest.raises(ValueError, match="exactly one"):
        load_base("vit_tiny_patch16_224", BASE_ARGS, {"seed": 0, "pretrained": True})


@pytest.mark.parametrize("pool", ["avg", "token"])
def test_pooling_excludes_prompt_tokens(pool: str) -> None:
    model = prompted({"kind": "around", "before": 2, "after": 2}, base_args={"global_pool": pool}).eval()
    tokens = torch.randn(2, PREFIX + 2 + N_PATCHES + 2, 24)
    out = model.forward_head(tokens)
    poked = tokens.clone()
    poked[:, PREFIX:PREFIX + 2] += 100.0
    poked[:, -2:] -= 100.0
    assert torch.equal(model.forward_head(poked), out)  # prompt positions never reach the pool
    patches = tokens[:, PREFIX + 2:PREFIX + 2 + N_PATCHES]
    pooled = patches.mean(1) if pool == "avg" else tokens[:, 0]
    assert torch.allclose(out, model.head(model.base.fc_norm(pooled)), atol=1e-6)


def test_gradient_reaches_layer0_deep_prompt_and_no_base_parameter() -> None:
    model = prompted({"kind": "deep", "length": 2}).train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    grad = model.prompt.prompt.grad
    assert grad is not None and grad[0].abs().sum() > 0  # sideways: block 0's prompt is overwritten after block 0
    assert grad[-1].abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.base.parameters())
    assert model.head.weight.grad is not None


def test_data_init_takes_real_patch_embeddings() -> None:
    model = prompted({"kind": "deep", "length": 3}, init="sample")
    images = torch.randn(4, 3, 16, 16)
    model.init_from_data(images, seed=0)
    states = model.token_states(images)
    for i in range(3):  # each token is one of the real token states entering its block
        distances = (model.prompt.prompt[i].detach()[:, None] - states[i][None]).norm(dim=-1)
        assert distances.min(1).values.max() < 1e-6
    before = model.prompt.prompt.detach().clone()
    model.init_from_data(torch.randn(4, 3, 16, 16))
    assert torch.equal(model.prompt.prompt, before)  # once only (the flag is checkpointed)
    km = prompted({"kind": "shallow", "length": 2}, init="kmeans")
    km.init_from_data(images)
    assert not torch.allclose(km.prompt.prompt, prompted({"kind": "shallow", "length": 2}).prompt.prompt)


def _module(tmp_path, prompt: dict, seed: int = 0) -> tuple[PromptedModule, L.Trainer, torch.utils.data.DataLoader]:
    backbone = {"name": "prompted_vit", "init_args": {"base_args": {**BASE_ARGS, "global_pool": "avg"},
                                                      "source": {"seed": seed}, "prompt": prompt}}
    spec = load_recipe(None, ["--task", "prompted", "--backbone", json.dumps(backbone), "--generations", "0",
                              "--trainer.max_epochs", "5", "--optimizer.name", "adamw", "--optimizer.lr", "0.01",
                              "--optimizer.scheduler", "constant"]).specs[0]
    torch.manual_seed(0)
    y = torch.randint(0, 3, (64,))
    x = torch.randn(64, 1, 16, 16) * 0.5 + y.view(-1, 1, 1, 1)  # the class is the image's brightness
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, torch.arange(64)), batch_size=16)
    module = PromptedModule.create(spec, TaskContext(3, 1, x[:1], input_stats=((0.5,), (0.25,))), spec.loss.build())
    trainer = L.Trainer(max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    return module, trainer, loader


def test_training_leaves_the_base_bit_identical_and_in_eval(tmp_path) -> None:
    module, trainer, loader = _module(tmp_path, {"kind": "deep", "length": 2})
    base_before = {k: v.clone() for k, v in module.student.base.state_dict().items()}
    prompt_before = module.student.prompt.prompt.detach().clone()
    modes = []
    block = module.student.base.blocks[0]
    block.register_forward_pre_hook(lambda m, a: modes.append((m.training, torch.is_grad_enabled())))
    x, y = loader.dataset.tensors[:2]
    with torch.no_grad():
        loss_before = torch.nn.functional.cross_entropy(module.student.eval()(x), y)
    trainer.fit(module, loader, loader)  # with validation: Lightning restores modes afterwards
    with torch.no_grad():
        loss_after = torch.nn.functional.cross_entropy(module.student.eval()(x), y)
    assert loss_after < 0.8 * loss_before  # it learns through the frozen base
    assert all(torch.equal(v, base_before[k]) for k, v in module.student.base.state_dict().items())
    assert not torch.equal(module.student.prompt.prompt, prompt_before)  # what should train did
    assert any(grad for _, grad in modes) and not any(training for training, grad in modes if grad)


def test_checkpoint_holds_what_trained_and_refuses_another_base(tmp_path) -> None:
    module, trainer, loader = _module(tmp_path, {"kind": "shallow", "length": 2})
    trainer.fit(module, loader)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    keys = set(checkpoint["state_dict"])
    assert keys and not any(k.startswith("student.base.") for k in keys)
    assert {"student.prompt.prompt", "student.head.weight", "student.head.bias"} <= keys
    assert checkpoint[REFERENCE_KEY] == module.student.reference.as_dict()
    x = torch.randn(2, 1, 16, 16)
    avg = {"global_pool": "avg"}
    same = load_prompted(prompted({"kind": "shallow", "length": 2}, base_args=avg), path).eval()
    same.adapter.set_data_stats((0.5,), (0.25,))
    module.student.eval()
    assert torch.equal(same(x), module.student(x))
    with pytest.raises(BaseMismatchError, match="sha256"):
        load_prompted(prompted({"kind": "shallow", "length": 2}, seed=1, base_args=avg), path)
    resumed, trainer2, _ = _module(tmp_path, {"kind": "shallow", "length": 2})
    trainer2.fit_loop.max_epochs = 6
    trainer2.fit(resumed, loader, ckpt_path=path, weights_only=True)  # strict load succeeds without the base copy
    other, trainer3, _ = _module(tmp_path, {"kind": "shallow", "length": 2}, seed=2)
    with pytest.raises(BaseMismatchError):
        trainer3.fit(other, loader, ckpt_path=path, weights_only=True)


def test_a_prompted_run_distils_from_the_cache(tmp_path) -> None:
    """Gen 0 prompted on digits (grey, 8x8, resized to the base's 16x16); gen 1 a prompted student of its cache."""
    backbone = {"name": "prompted_vit", "init_args": {"base_args": BASE_ARGS, "prompt": {"kind": "deep", "length": 2}}}
    out = tmp_path / "run"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), "--task", "prompted", "--backbone",
                   json.dumps(backbone), "--generations", "1", "--trainer.max_epochs", "1", "--data.train_subset",
                   "200", "--trainer.enable_progress_bar", "false", "--kd.variant", "dkd") == 0
    summary = json.loads((out / "summary.json").read_text())
    counts = [g["parameters"] for g in summary["generations"]]
    assert counts[0] == counts[1] and counts[0]["trainable"] == 2 * 3 * 24 + 24 * 10 + 10
    assert counts[0]["total"] > 20 * counts[0]["trainable"]
    assert summary["generations"][1]["agreement_with_teacher"] is not None
    for k in (0, 1):
        state = torch.load(out / f"gen-{k}" / "model.ckpt", weights_only=True)
        assert not any(key.startswith("student.base.") for key in state["state_dict"])
