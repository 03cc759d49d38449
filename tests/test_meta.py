"""Meta-learning: MAML's meta-gradient against its closed form, FOMAML/ANIL/K=0, episodes, Omniglot loading,
baselines, adaptation under Lightning and resume of a killed meta run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli
from PIL import Image
from torch import nn

from distill.data.base import DataError
from distill.meta.baselines import PARADIGMS, BaselineConfig
from distill.meta.episodes import ClassEpisodes, EpisodeDataset, EpochEpisodes, split_classes
from distill.meta.inner import adapt, query_loss
from distill.meta.module import MetaModule
from distill.meta.sinusoid import SinusoidTasks
from distill.meta.sources import load_source

ROOT = Path(__file__).resolve().parents[1]


def _regression(d=3, n=6, seed=0):
    g = np.random.default_rng(seed)
    xs, xq = g.normal(size=(n, d)), g.normal(size=(n + 2, d))
    w_true = g.normal(size=d)
    return xs, xs @ w_true + 0.1 * g.normal(size=n), xq, xq @ (w_true + 0.3) + 0.1 * g.normal(size=n + 2), \
        g.normal(size=d)


def _torch_meta_grad(xs, ys, xq, yq, w0, alpha, steps, first_order, learn_lr=False):
    net = nn.Linear(len(w0), 1, bias=False).double()
    w = torch.tensor(w0[None, :], requires_grad=True)
    lr = {"weight": torch.tensor(alpha, dtype=torch.float64, requires_grad=True)} if learn_lr else alpha
    t = lambda a: torch.tensor(a)[:, None] if a.ndim == 1 else torch.tensor(a)  # noqa: E731
    loss, _ = query_loss(net, {"weight": w}, (t(xs), t(ys)), (t(xq), t(yq)), F.mse_loss, steps, lr, ["weight"],
                         first_order)
    loss.backward()
    return w.grad[0].numpy(), (lr["weight"].grad.item() if learn_lr else None)


@pytest.mark.parametrize("steps", [1, 3])
def test_maml_meta_gradient_is_the_closed_form_and_fomaml_drops_exactly_the_second_order_term(steps):
    xs, ys, xq, yq, w0 = _regression()
    alpha = 0.05
    # Hand-derived: L(w) = mean((Xw - y)^2) has gradient 2/n X^T (Xw - y) and constant Hessian H = 2/n X^T X, so
    # w_K = w_{K-1} - alpha grad_s(w_{K-1}), dw_K/dw_0 = (I - alpha H_s)^K and the meta-gradient is
    # (I - alpha H_s)^K grad_q(w_K); FOMAML's is grad_q(w_K).
    grad = lambda x, y, w: 2 / len(y) * x.T @ (x @ w - y)  # noqa: E731
    hs = 2 / len(ys) * xs.T @ xs
    w = w0.copy()
    for _ in range(steps):
        w = w - alpha * grad(xs, ys, w)
    gq = grad(xq, yq, w)
    jac = np.linalg.matrix_power(np.eye(len(w0)) - alpha * hs, steps)
    maml, _ = _torch_meta_grad(xs, ys, xq, yq, w0, alpha, steps, first_order=False)
    fomaml, _ = _torch_meta_grad(xs, ys, xq, yq, w0, alpha, steps, first_order=True)
    np.testing.assert_allclose(maml, jac @ gq, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fomaml, gq, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(maml - fomaml, (jac - np.eye(len(w0))) @ gq, rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(maml - fomaml) > 1e-3 * np.linalg.norm(gq)  # the second-order term is really there
    if steps == 1:
        np.testing.assert_allclose(maml - fomaml, -alpha * hs @ gq, rtol=1e-9, atol=1e-12)


def test_meta_sgd_learning_rate_gradient_is_the_closed_form():
    xs, ys, xq, yq, w0 = _regression(seed=1)
    alpha = 0.05
    gs = 2 / len(ys) * xs.T @ (xs @ w0 - ys)
    w1 = w0 - alpha * gs
    gq = 2 / len(yq) * xq.T @ (xq @ w1 - yq)
    _, dlr = _torch_meta_grad(xs, ys, xq, yq, w0, alpha, 1, first_order=False, learn_lr=True)
    assert dlr == pytest.approx(-gs @ gq, rel=1e-10)  # d/dalpha L_q(w0 - alpha g_s) = -g_s . g_q


def _episodes(way=3, shot=2, query=3, n_per_class=8, classes=9, seed=0, hw=8):
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    index = torch.arange(len(labels)).float()
    # pixel [0,0] holds the class id, pixel [0,1] the sample id: the episode reveals where each image came from
    images = torch.randn(len(labels), 1, hw, hw, generator=torch.Generator().manual_seed(0)) * 0.1
    images += (labels.float() - classes / 2)[:, None, None, None] * 0.5
    images[:, 0, 0, 0], images[:, 0, 0, 1] = labels.float(), index
    splits = split_classes(classes, {"train": 3, "val": 3, "test": 3}, seed)
    return ClassEpisodes(images, labels, splits, way, shot, query, seed), splits


def test_splits_are_disjoint_seeded_and_checked():
    a, b = split_classes(20, {"train": 10, "val": 4, "test": 6}, 3), split_classes(20, {"train": 10, "val": 4,
                                                                                       "test": 6}, 3)
    assert a == b and split_classes(20, {"train": 10, "test": 6}, 4) != {k: a[k] for k in ("train", "test")}
    assert set(a["train"]).isdisjoint(a["test"]) and set(a["val"]).isdisjoint(a["train"] + a["test"])
    assert len(set(a["train"] + a["val"] + a["test"])) == 20
    explicit = split_classes(10, {"train": [0, 1, 2], "test": 3}, 0)
    assert explicit["train"] == [0, 1, 2] and not set(explicit["test"]) & {0, 1, 2}
    for bad, msg in (({"train": [0, 1], "test": [1]}, "two splits"), ({"train": 8, "test": 5}, "only 2"),
                     ({"train": [12]}, "not a class id"), ({"tain": 3}, "split.tain")):
        with pytest.raises(DataError, match=msg):
            split_classes(10, bad, 0)


def test_episodes_never_mix_splits_and_are_reproducible_from_seed_and_index():
    source, splits = _episodes()
    for split in ("train", "val", "test"):
        for i in range(30):
            sx, sy, qx, qy = source.episode(split, i)
            cls_s, cls_q = sx[:, 0, 0, 0].long(), qx[:, 0, 0, 0].long()
            assert set(cls_s.tolist()) <= set(splits[split]) and set(cls_q.tolist()) <= set(splits[split])
            assert set(sx[:, 0, 0, 1].tolist()).isdisjoint(qx[:, 0, 0, 1].tolist())  # query never in support
            for c in range(3):  # each episode label is one source class, in support and query alike
                assert len(set(cls_s[sy == c].tolist())) == 1 and set(cls_q[qy == c].tolist()) == \
                    set(cls_s[sy == c].tolist())
    again, _ = _episodes()
    for i in (0, 7):
        assert all(torch.equal(x, y) for x, y in zip(source.episode("test", i), again.episode("test", i), strict=True))
    assert not torch.equal(source.episode("test", 0)[0], source.episode("test", 1)[0])
    assert not torch.equal(source.episode("train", 0)[0], _episodes(seed=1)[0].episode("train", 0)[0])
    sampler = EpochEpisodes(5)
    sampler.set_epoch(2)
    assert list(sampler) == [10, 11, 12, 13, 14]
    assert torch.equal(EpisodeDataset(source, "train", 5)[12][0], source.episode("train", 12)[0])
    with pytest.raises(DataError, match="fewer than episodes.shot"):
        ClassEpisodes(source.images, source.labels, splits, 3, 6, 3)


def _module(method="maml", steps=1, **kw):
    torch.manual_seed(0)
    return MetaModule({"name": "conv4", "hidden": 8}, 3, 1, (8, 8), method=method, inner_steps=steps, **kw)


def test_anil_adapts_only_the_head_and_still_trains_the_body():
    module = _module("anil")
    source, _ = _episodes()
    sx, sy, qx, qy = source.episode("train", 0)
    params = dict(module.net.named_parameters())
    fast = adapt(module.net, params, sx, sy, F.cross_entropy, 2, 0.4, module.adapt_names, False)
    assert module.adapt_names == ["head.weight", "head.bias"]
    assert all(fast[n] is params[n] for n in params if not n.startswith("head."))
    assert all(not torch.equal(fast[n], params[n]) for n in module.adapt_names)
    module.episode_loss((sx, sy, qx, qy), 2)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.net.parameters())


def test_zero_inner_steps_is_plain_multi_task_training():
    module = _module("maml", steps=0)
    source, _ = _episodes()
    batch = tuple(torch.stack(t) for t in zip(*(source.episode("train", i) for i in range(3)), strict=True))
    module.meta_loss(batch)[0].backward()
    meta = [p.grad.clone() for p in module.net.parameters()]
    module.zero_grad()
    plain = torch.stack([F.cross_entropy(module.net(batch[2][i]), batch[3][i]) for i in range(3)]).mean()
    plain.backward()
    for a, b in zip(meta, module.net.parameters(), strict=True):
        torch.testing.assert_close(a, b.grad)


def test_meta_sgd_learns_one_inner_lr_per_adapted_tensor():
    module = _module("maml", learn_inner_lr=True)
    source, _ = _episodes()
    module.episode_loss(source.episode("train", 0), 1)[0].backward()
    assert len(module.inner_lrs) == len(module.adapt_names)
    assert all(p.grad is not None and p.grad != 0 for p in module.inner_lrs.values())


def test_maml_learns_sinusoids_and_evaluation_adapts_under_lightning():
    import lightning as L
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    tasks = SinusoidTasks(shot=10, query=10, seed=0)
    module = MetaModule({"name": "mlp", "hidden": 40}, 1, 1, (1, 1), regression=True, inner_steps=1,
                        eval_inner_steps=5, inner_lr=0.01, meta_lr=0.01)
    test = DataLoader(EpisodeDataset(tasks, "test", 40), batch_size=10)
    trainer = L.Trainer(inference_mode=False, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, max_epochs=1)
    before = trainer.test(module, test, verbose=False)[0]
    train = DataLoader(EpisodeDataset(tasks, "train", 800), batch_size=10, sampler=EpochEpisodes(800))
    trainer.fit(module, train)
    after = trainer.test(module, test, verbose=False)[0]
    assert after["test/score"] != before["test/score"]  # evaluation adapted
    assert after["test/score"] < after["test/score_before"] * 0.8  # K steps from the meta-learned init help
    assert after["test/score"] < 0.7 * before["test/score"]  # and meta-training learned (3.05 -> 1.86)


def test_omniglot_folder_loads_with_rotations_as_classes(tmp_path):
    g = np.random.default_rng(0)
    for alphabet, chars in (("Alpha", 2), ("Beta", 1)):
        for c in range(chars):
            folder = tmp_path / "omniglot-py" / "images_background" / alphabet / f"character{c + 1:02d}"
            folder.mkdir(parents=True)
            for k in range(3):
                pix = (g.random((105, 105)) > 0.2).astype(np.uint8) * 255
                Image.fromarray(pix, mode="L").save(folder / f"{k}.png")
    src = load_source({"name": "omniglot", "root": str(tmp_path), "sets": ["background"]})
    assert src.images.shape == (3 * 4 * 3, 1, 28, 28) and len(src.class_names) == 12
    assert src.class_names[:2] == ["Alpha/character01@0", "Alpha/character01@90"]
    a, b = src.images[src.labels == 0], src.images[src.labels == 1]
    torch.testing.assert_close(b, torch.rot90(a, 1, dims=(2, 3)))
    assert 0.0 <= float(src.images.min()) and float(src.images.max()) <= 1.0
    splits = split_classes(len(src.class_names), {"train": 2, "test": 1}, 0, src.groups)  # counts are characters
    assert len(splits["train"]) == 8 and len(splits["test"]) == 4
    assert {src.groups[c] for c in splits["train"]}.isdisjoint(src.groups[c] for c in splits["test"])
    with pytest.raises(DataError, match="images_evaluation"):
        load_source({"name": "omniglot", "root": str(tmp_path), "sets": ["evaluation"]})


def test_an_image_folder_is_an_episode_source_split_by_class(tmp_path):
    g = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for c in ("ant", "bee", "cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(g.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(tmp_path / split / c / f"{k}.png")
    src = load_source({"name": "imagefolder", "root": str(tmp_path), "per_class": 3})
    assert src.images.shape == (4 * (3 + 2), 3, 12, 12) and src.class_names == ["ant", "bee", "cat", "dog"]
    assert src.labels.bincount().tolist() == [5, 5, 5, 5]  # 3 of train + 2 of test per class, pooled
    splits = split_classes(len(src.class_names), {"train": 2, "test": 2}, 0)
    sx, sy, qx, qy = ClassEpisodes(src.images, src.labels, splits, 2, 1, 4, 0).episode("test", 3)
    assert sx.shape == (2, 3, 12, 12) and qx.shape == (8, 3, 12, 12)


def test_baselines_solve_separable_episodes_and_fine_tuning_adapts():
    source, _ = _episodes(way=3, shot=2, query=4, n_per_class=10)
    torch.manual_seed(0)
    net = MetaModule({"name": "conv4", "hidden": 16}, 4, 1, (8, 8)).net
    cfg = BaselineConfig(finetune_steps=5, finetune_lr=0.5)
    for name, fn in PARADIGMS.items():  # classes sit 0.5 apart per pixel: random features separate them
        accs = [fn(net, source.episode("test", i), cfg) for i in range(3)]
        assert np.mean(accs) > (0.5 if name == "fine_tuning" else 0.7), name  # chance: 1/3
    untuned = PARADIGMS["fine_tuning"](net, source.episode("test", 0), BaselineConfig(finetune_steps=0))
    assert untuned == pytest.approx(1 / 3)  # a zero head predicts class 0 everywhere: the steps do the work


RESUME_ARGS = ["--episodes.train_episodes", "20", "--episodes.meta_batch", "5", "--episodes.test_episodes", "20",
               "--trainer.max_epochs", "2"]


def _result(run):
    r = json.loads((run / "results.json").read_text())
    state = torch.load(run / "model.ckpt", weights_only=True)["state_dict"]
    return r["test"]["scores"], state


def test_killed_meta_run_resumes_to_the_same_result(tmp_path):
    ref = tmp_path / "ref"
    assert run_cli("meta", "recipes/meta/sinusoid-maml.yaml", "--out", str(ref), *RESUME_ARGS) == 0
    out = tmp_path / "killed"
    env = {**os.environ, "DISTILL_FAULT": "meta:step:6"}  # mid second epoch; epoch 0 is checkpointed
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "meta", "recipes/meta/sinusoid-maml.yaml", "--out",
                           str(out), *RESUME_ARGS], env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "checkpoints" / "last.ckpt").is_file() and not (out / "results.json").exists()
    assert run_cli("meta", "--out", str(out), "--resume") == 0
    (scores, state), (ref_scores, ref_state) = _result(out), _result(ref)
    assert scores == ref_scores
    assert all(torch.equal(state[k], ref_state[k]) for k in ref_state)
    # The resumed run keeps its whole log: the rows of epoch 0 (before the kill) and of epoch 1 (logged again after
    # it), each once, as in the uninterrupted run (Lightning's CSVLogger alone deletes the file when it starts).
    rows, ref_rows = (list(csv.DictReader(open(r / "logs" / "metrics.csv"))) for r in (out, ref))
    assert rows == ref_rows and [r["epoch"] for r in rows] == ["0", "1", "2"]  # epochs 0, 1 and the meta-test


@pytest.mark.parametrize("recipe", sorted(p.name for p in (ROOT / "recipes" / "meta").glob("*.yaml")))
def test_meta_recipes_parse(recipe, capsys):
    assert run_cli("meta", f"recipes/meta/{recipe}", "--print_config") == 0
    assert "method:" in capsys.readouterr().out


def test_bad_meta_input_is_one_line_and_exit_2_before_the_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("meta", "recipes/meta/digits-maml-5way.yaml", "--out", str(out), "--split",
                   '{"train": [0, 1, 2, 3, 4], "test": [4, 5, 6, 7, 8]}') == 2
    assert "two splits" in capsys.readouterr().err and not out.exists()
    assert run_cli("meta", "recipes/meta/digits-maml-5way.yaml", "--out", str(out), "--method", "mamll") == 2
    err = capsys.readouterr().err
    assert "did you mean 'maml'" in err and len(err.strip().splitlines()) == 1 and not out.exists()
    assert run_cli("meta", "recipes/meta/digits-maml-5way.yaml", "--out", str(out), "--inner.steps", "-1") == 2
    assert "inner.steps" in capsys.readouterr().err
    empty = tmp_path / "empty.yaml"
    empty.write_text("")  # the engine's recipe-file checks apply to meta recipes too
    assert run_cli("meta", str(empty), "--out", str(out)) == 2
    assert f"recipe file {empty} is empty" in capsys.readouterr().err and not out.exists()


def test_an_option_of_another_network_is_named_before_the_run_directory(tmp_path, capsys):
    """The sinusoid recipe's mlp ``layers`` left over after ``--network.name conv4``: named with what conv4 takes."""
    out = tmp_path / "run"
    assert run_cli("meta", "recipes/meta/sinusoid-maml.yaml", "--out", str(out), "--network.name", "conv4") == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("network.layers is not an option of conv4 (accepted: blocks, hidden)"), err
    assert len(err.splitlines()) == 1 and not out.exists()
