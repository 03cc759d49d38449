"""A user callback's ``monitor`` (EarlyStopping, ModelCheckpoint) must name a metric the generation logs every
epoch: checked before the run directory exists, instead of Lightning's traceback at the end of an epoch."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

from distill.config import RecipeError
from distill.tasks.born_again import GenerationModule
from distill.user_logs import check_monitors

RECIPE = "recipes/digits-ban.yaml"
TINY = ["--data.train_subset", "200", "--generations", "0", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false"]


def _callbacks(monitor: str) -> str:  # mode max: the one epoch metric is an accuracy
    return json.dumps([{"class_path": "EarlyStopping",
                         "init_args": {"monitor": monitor, "mode": "max", "patience": 3}}])


def test_epoch_metrics_follow_the_validation_split():
    assert GenerationModule.monitorable_metrics(False) == {"train/acc"}
    assert GenerationModule.monitorable_metrics(True) == {"train/acc", "val/loss", "val/acc", "val/ece"}


def test_check_monitors_refuses_an_unlogged_name_and_accepts_a_logged_one():
    logged = frozenset({"train/loss", "val/acc"})
    check_monitors([EarlyStopping(monitor="val/acc", mode="max"), LearningRateMonitor()], logged, 0)
    check_monitors([ModelCheckpoint()], logged, 0)  # no monitor: the last epoch
    check_monitors([EarlyStopping(monitor="anything")], None, 0)  # a task that does not say
    with pytest.raises(RecipeError, match=r"generation 2.*ModelCheckpoint monitors 'val_loss'.*train/loss, val/acc"):
        check_monitors([ModelCheckpoint(monitor="val_loss")], logged, 2)


# val_loss: Lightning's own spelling; val/acc: no validation split; train/loss: logged on shown steps only (with 200
# samples and log_every_n_steps 50, never in the epoch), which is why Lightning stops the run there.
@pytest.mark.parametrize("monitor", ["val_loss", "val/acc", "train/loss"])
def test_run_with_an_unlogged_monitor_is_one_line_exit_2_before_the_run_directory(monitor, tmp_path, capsys):
    out = tmp_path / "run"  # digits has no validation split; generation 0 learns from labels alone
    assert run_cli("run", RECIPE, "--out", str(out), *TINY, "--trainer.callbacks", _callbacks(monitor)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"EarlyStopping monitors {monitor!r}" in err, err
    assert not out.exists()


def test_run_with_a_logged_monitor_trains(tmp_path):
    out = tmp_path / "run"
    assert run_cli("run", RECIPE, "--out", str(out), *TINY, "--trainer.callbacks", _callbacks("train/acc")) == 0
    assert (out / "gen-0" / "model.ckpt").is_file()
