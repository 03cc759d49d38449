"""Shared fixtures: a tiny finished born-again run on the embedded digits data (built once per session)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from distill.cli import main

# The smallest run that still exercises every stage: 300 digits, 2 epochs, gen 0 + one student.
TINY_RUN_ARGS = ["--data.train_subset", "300", "--generations", "1", "--trainer.max_epochs", "2",
                 "--trainer.enable_progress_bar", "false"]


def run_cli(*args: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return main(list(args))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 1-student digits run directory."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert run_cli("run", "recipes/digits-ban.yaml", "--out", str(out), *TINY_RUN_ARGS) == 0
    return out


class SevenLogits(torch.nn.Module):
    """A user backbone that ignores ``num_classes`` (for the output-size check); importable as conftest.SevenLogits."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = torch.nn.LazyLinear(7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))
