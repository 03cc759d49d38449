"""CLI: user mistakes give one line naming the problem and exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from distill.resolve import load_recipe

RECIPES = sorted(Path("recipes").glob("*.yaml"))
BAD_OVERRIDES = {
    "unknown key": (["--kd.alpah", "0.5"], "alpah"),
    "unknown top-level key": (["--epochs", "3"], "epochs"),
    "wrong type": (["--trainer.max_epochs", "many"], "trainer.max_epochs"),
    "alpha above 1": (["--kd.alpha", "1.5"], "kd.alpha"),
    "alpha below 0": (["--kd.alpha", "-0.1"], "kd.alpha"),
    "temperature zero": (["--kd.temperature", "0"], "kd.temperature"),
    "negative generations": (["--generations", "-1"], "generations"),
    "unknown variant": (["--kd.variant", "cwmt"], "cwtm"),
    "unknown teacher": (["--kd.teacher", "best"], "kd.teacher"),
    "unknown cache mode": (["--cache.mode", "replay2"], "cache.mode"),
    "unknown backbone": (["--backbone", "small_cnnn"], "small_cnn"),
    "prompted task on a plain backbone": (["--task", "prompted"], "task prompted needs backbone prompted_vit"),
    "unknown dataset": (["--data", '{"name": "digitz"}'], "digits"),
    "unknown data option": (["--data", '{"name": "digits", "batchsize": 3}'], "data.batchsize"),
    "unknown optimizer": (["--optimizer.name", "sgdd"], "sgd"),
    "zero epochs": (["--trainer.max_epochs", "0"], "trainer.max_epochs"),
    "accelerator not on this machine": (["--trainer.accelerator", "tpu"], "trainer"),
    "bad backbone init_args": (["--backbone", '{"name": "small_cnn", "init_args": {"nope": 1}}'], "nope"),
    "3-channel backbone on grey data": (["--backbone", "alexnet"], "3-channel"),
    "per_generation kd not a mapping": (["--per_generation", '[{"generation": 1, "kd": 5}]'], "per_generation[0].kd"),
    "per_generation boolean generation": (["--per_generation", '[{"generation": true}]'], "generation"),
    "zero batch size": (["--data", '{"name": "digits", "batch_size": 0}'], "data.batch_size"),
    "non-integer subset": (["--data", '{"name": "digits", "train_subset": "x"}'], "data.train_subset"),
    "override of a fixed key": (["--per_generation", '[{"generation": 1, "seed": 3}]'], "per_generation[0].seed"),
    "override out of range": (["--per_generation", '[{"generation": 7}]'], "per_generation[0].generation"),
    "bad override value": (["--per_generation", '[{"generation": 1, "kd": {"alpha": 2}}]'], "kd.alpha"),
    "kd override of generation 0": (["--per_generation", '[{"generation": 0, "kd": {"variant": "rkd"}}]'],
                                    "per_generation[0].kd: generation 0 learns from the labels"),
}


@pytest.mark.parametrize("case", sorted(BAD_OVERRIDES))
def test_bad_overrides_exit_2_with_one_line(case, capsys):
    args, needle = BAD_OVERRIDES[case]
    assert run_cli("run", "recipes/digits-ban.yaml", *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err, err


def test_missing_recipe_and_malformed_yaml(tmp_path, capsys):
    assert run_cli("run", str(tmp_path / "nope.yaml")) == 2
    assert "recipe file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("kd: {alpha: [1\n")
    assert run_cli("run", str(bad)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n")
    assert run_cli("run", str(empty)) == 2
    assert "is empty" in capsys.readouterr().err
    assert run_cli("run", str(tmp_path)) == 2
    assert "is a directory" in capsys.readouterr().err


def test_existing_output_directory_is_refused(tmp_path, capsys):
    (tmp_path / "x").write_text("")
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(tmp_path)) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_recipe_prints_its_config(recipe, capsys, tiny_run):
    # A recipe that loads its generation 0 from an earlier run gets a run that exists here.
    load = ["--load", json.dumps({"checkpoint": str(tiny_run / "gen-0" / "model.ckpt")})] \
        if "\nload:" in recipe.read_text() else []
    assert run_cli("run", str(recipe), "--print_config", *load) == 0
    out = capsys.readouterr().out
    assert "generations:" in out and "kd:" in out and "trainer:" in out
    # printing opens nothing; every generation must also resolve (names, values, the loaded checkpoint)
    recipe_obj = load_recipe(str(recipe), load)
    assert len(recipe_obj.specs) == recipe_obj.cfg.generations + 1


def test_print_config_round_trips(tmp_path, capsys):
    assert run_cli("run", "recipes/digits-ban.yaml", "--kd.alpha", "0.3", "--print_config") == 0
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(capsys.readouterr().out)
    assert run_cli("run", str(resolved), "--print_config") == 0
    assert "alpha: 0.3" in capsys.readouterr().out


def test_console_script_help_and_error_exit_codes():
    def distill(*args):
        return subprocess.run([sys.executable, "-m", "distill.cli", *args], capture_output=True, text=True)

    # Two real processes (each pays the ~10 s import of torch + Lightning here); the other two exit codes are
    # main()'s return values, which the console script passes to sys.exit unchanged.
    assert run_cli("--help") == 0
    helped = distill("run", "--help")
    assert helped.returncode == 0 and "--kd.temperature" in helped.stdout and "--trainer.max_epochs" in helped.stdout
    bad = distill("run", "recipes/digits-ban.yaml", "--kd.alpha", "2")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "kd.alpha" in bad.stderr
    assert run_cli("frobnicate") == 2
