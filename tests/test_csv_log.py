"""ResumedCSVLogger: a resumed run's metrics.csv keeps the earlier session's rows before the first new step, drops
the ones logged again after the last checkpoint and a torn last line."""

from __future__ import annotations

import csv
import warnings

from distill.csv_log import ResumedCSVLogger


def test_earlier_rows_are_kept_rows_logged_again_and_a_torn_line_dropped(tmp_path) -> None:
    log = tmp_path / "logs" / "metrics.csv"
    log.parent.mkdir()
    # session 1 logged steps 0..3, was killed while writing step 4; its last checkpoint was at step 2
    log.write_text("epoch,step,train/loss\n0,0,2.5\n0,1,2.0\n1,2,1.5\n1,3,1.25\n1,4")
    logger = ResumedCSVLogger(tmp_path, name="logs", version="")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "previous log files will be deleted" warning: they are not
        logger.log_metrics({"epoch": 1, "train/loss": 1.4, "val/acc": 0.5}, step=2)
    logger.save()
    rows = list(csv.DictReader(open(log)))
    assert [(r["step"], r["train/loss"], r["val/acc"]) for r in rows] == [
        ("0", "2.5", ""), ("1", "2.0", ""), ("2", "1.4", "0.5")]


def test_a_torn_last_line_is_dropped_even_before_the_new_step(tmp_path) -> None:
    log = tmp_path / "logs" / "metrics.csv"
    log.parent.mkdir()
    log.write_text("epoch,step,train/loss\n0,0,2.5\n0,1")  # killed while writing step 1's row
    logger = ResumedCSVLogger(tmp_path, name="logs", version="")
    logger.log_metrics({"epoch": 1, "train/loss": 1.0}, step=5)
    logger.save()
    assert [(r["step"], r["train/loss"]) for r in csv.DictReader(open(log))] == [("0", "2.5"), ("5", "1.0")]


def test_a_fresh_log_is_written_as_csvlogger_writes_it(tmp_path) -> None:
    logger = ResumedCSVLogger(tmp_path, name="logs", version="")
    logger.log_metrics({"a": 1.0}, step=0)
    logger.save()
    assert (tmp_path / "logs" / "metrics.csv").read_text().splitlines() == ["a,step", "1.0,0"]
