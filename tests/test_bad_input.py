"""The bad-input matrix (docs/reliability.md): every case is one line naming the problem, exit code 2, no traceback,
and nothing half-written that a later run would accept. Cases already covered in test_cli.py / test_resume.py are
listed in the docs table with their test."""

from __future__ import annotations

import errno
import json
import pickle
import shutil

import pytest
import torch
from conftest import TINY_RUN_ARGS, run_cli
from PIL import Image

RECIPE = "recipes/digits-ban.yaml"


def _one_line_error(capsys, needle: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


def test_missing_dataset_root(tmp_path, capsys):
    out = tmp_path / "run"
    data = json.dumps({"name": "imagefolder", "root": str(tmp_path / "nowhere")})
    assert run_cli("run", RECIPE, "--out", str(out), "--data", data) == 2
    _one_line_error(capsys, "nowhere")
    assert not out.exists()  # checked before the run directory is created


def test_dataset_root_without_train(tmp_path, capsys):
    (tmp_path / "data" / "test" / "a").mkdir(parents=True)
    data = json.dumps({"name": "imagefolder", "root": str(tmp_path / "data")})
    assert run_cli("run", RECIPE, "--out", str(tmp_path / "run"), "--data", data) == 2
    _one_line_error(capsys, "train")


def test_corrupt_image_is_named(tmp_path, capsys):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 60, 10, 200)).save(tmp_path / "data" / split / cls / f"{i}.png")
    bad = tmp_path / "data" / "train" / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    data = json.dumps({"name": "imagefolder", "root": str(tmp_path / "data")})
    assert run_cli("run", RECIPE, "--out", str(tmp_path / "run"), "--data", data) == 2
    _one_line_error(capsys, "broken.png")


def test_backbone_output_size_differs_from_class_count(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), "--backbone", '{"class_path": "conftest.SevenLogits"}') == 2
    _one_line_error(capsys, "expected (1, 10)")
    assert not out.exists()


def test_per_generation_backbone_is_checked_before_training(tmp_path, capsys):
    override = '[{"generation": 2, "backbone": {"class_path": "conftest.SevenLogits"}}]'
    assert run_cli("run", RECIPE, "--out", str(tmp_path / "run"), "--per_generation", override) == 2
    _one_line_error(capsys, "SevenLogits")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("init_args, needle", [
    ({"pretrained": True}, "No pretrained weights exist"),  # our CIFAR families publish none
    ({"pretrained": True, "pretrained_cfg_overlay": {"file": "/nonexistent/w.pth"}}, "/nonexistent/w.pth"),
])
def test_pretrained_weights_that_cannot_be_loaded(tmp_path, capsys, init_args, needle):
    out = tmp_path / "run"
    backbone = json.dumps({"name": "cifar_resnet8x4" if "pretrained_cfg_overlay" not in init_args else "small_cnn",
                           "init_args": init_args})
    assert run_cli("run", RECIPE, "--out", str(out), "--backbone", backbone) == 2
    err = _one_line_error(capsys, "pretrained weights could not be loaded")
    assert needle in err
    assert not out.exists()


def test_missing_timm_checkpoint_path_is_one_line_naming_the_file(tmp_path, capfd):
    """timm logs a line, then raises a FileNotFoundError with no message: the error must name the file, alone."""
    out, missing = tmp_path / "run", tmp_path / "nowhere" / "w.pth"
    backbone = json.dumps({"name": "small_cnn", "init_args": {"checkpoint_path": str(missing)}})
    assert run_cli("run", RECIPE, "--out", str(out), "--backbone", backbone) == 2
    err = _one_line_error(capfd, "checkpoint_path")  # capfd: timm's own log line went to the real stderr
    assert f"{missing} is not a file" in err  # was "(FileNotFoundError: FileNotFoundError)", the path only in the label
    assert not out.exists()


def test_unknown_torchvision_weights_name():
    """An unknown ``weights=`` name was a KeyError traceback from torchvision's enum lookup."""
    from distill.models import BackboneError, create_backbone

    with pytest.raises(BackboneError, match=r"init_args.weights 'NOPE' is not one of \['IMAGENET1K_V1', 'DEFAULT'\]"):
        create_backbone({"name": "squeezenet1_0", "init_args": {"weights": "NOPE"}}, 10, 3)
    with pytest.raises(ValueError, match="num_classes"):  # a known name still reaches torchvision (1000 classes)
        create_backbone({"name": "squeezenet1_0", "init_args": {"weights": "SqueezeNet1_0_Weights.DEFAULT"}}, 10, 3)


class BuggyPretrained(torch.nn.Module):
    """A user class taking ``pretrained`` whose constructor has a bug of its own (not a weights failure)."""

    def __init__(self, num_classes: int, pretrained: bool = False) -> None:
        super().__init__()
        torch.zeros(3) + torch.zeros(4)  # a shape bug: must surface as itself


def test_a_user_class_bug_is_not_reported_as_a_weights_failure():
    from distill.models import create_backbone

    with pytest.raises(RuntimeError, match="size of tensor"):
        create_backbone({"class_path": "test_bad_input.BuggyPretrained", "init_args": {"pretrained": True}}, 10, 1)


def test_unimportable_class_path(tmp_path, capsys):
    assert run_cli("run", RECIPE, "--backbone", '{"class_path": "no_such_module.Net"}') == 2
    _one_line_error(capsys, "no_such_module")


def test_cache_from_another_dataset_is_rejected(tmp_path, tiny_run, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    manifest = run / "cache" / "gen-0" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["dataset"]["name"] = "fashion_mnist"
    manifest.write_text(json.dumps(data))
    assert run_cli("run", "--out", str(run), "--resume") == 2
    _one_line_error(capsys, "dataset name='fashion_mnist'")


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert run_cli("run", RECIPE, "--out", str(blocker / "run"), *TINY_RUN_ARGS) == 2
    _one_line_error(capsys, "cannot write")


def test_read_only_filesystem(capsys):
    # /proc refuses new directories even for root, like a read-only mount
    assert run_cli("run", RECIPE, "--out", "/proc/distill-read-only/run", *TINY_RUN_ARGS) == 2
    _one_line_error(capsys, "cannot write")


def test_disk_full_during_cache_write_leaves_no_accepted_cache(tmp_path, monkeypatch, capsys):
    from distill.cache.writer import CacheWriter

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.directory / "logits.npy.partial"))

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(CacheWriter, "write_on_batch_end", full)
        assert run_cli("run", RECIPE, "--out", str(out), *TINY_RUN_ARGS) == 2
    _one_line_error(capsys, "No space left on device")
    assert not (out / "cache" / "gen-0" / "manifest.json").exists()
    assert not (out / "cache" / "gen-0" / "logits.npy").exists()
    assert run_cli("run", "--out", str(out), "--resume") == 0  # the partial file was never taken for a cache
    assert (out / "cache" / "gen-0" / "manifest.json").is_file() and (out / "summary.json").is_file()


class _Bomb:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker file if unpickled


def test_pickle_bomb_checkpoint_does_not_execute(tmp_path, capsys):
    from distill.tasks.born_again import load_student

    marker = tmp_path / "pwned"
    bomb = tmp_path / "bomb.ckpt"
    bomb.write_bytes(pickle.dumps({"state_dict": _Bomb(marker)}))
    with pytest.raises(pickle.UnpicklingError):
        load_student(bomb, "small_cnn", 10, 1)
    assert not marker.exists()


def test_pickle_bomb_resume_checkpoint_is_refused(tmp_path, capsys):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "distill.cli", "run", RECIPE, "--out", str(out), *TINY_RUN_ARGS],
                          env={**os.environ, "DISTILL_FAULT": "fit:0:epoch:0"}, capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    marker = tmp_path / "pwned"
    (out / "gen-0" / "checkpoints" / "last.ckpt").write_bytes(pickle.dumps({"x": _Bomb(marker)}))
    assert run_cli("run", "--out", str(out), "--resume") == 2
    capsys.readouterr()
    assert not marker.exists()


def test_yaml_python_tag_is_not_executed(tmp_path, capsys):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(f"seed: !!python/object/apply:os.system ['touch {marker}']\n")
    assert run_cli("run", str(recipe), "--print_config") == 2
    _one_line_error(capsys, "")
    assert not marker.exists()


def test_unknown_command(capsys):
    assert run_cli("frobnicate") == 2
    _one_line_error(capsys, "unknown command")
