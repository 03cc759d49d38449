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


ROOT = Path(__file__).resolve().parents[1]


def _checkout_entries() -> set[str]:
    """The checkout's top-level entries and what is under ``runs/`` (where a run without --out would go)."""
    runs = ROOT / "runs"
    return {p.name for p in ROOT.iterdir()} | ({f"runs/{p.name}" for p in runs.iterdir()} if runs.is_dir() else set())


@pytest.fixture(scope="session", autouse=True)
def writes_only_under_tmp_dirs():
    """Tests write only under their temporary directories: the checkout has the same entries after the session
    (caches of pytest, ruff and Python aside)."""
    before = _checkout_entries()
    yield
    new = {e for e in _checkout_entries() - before if not e.startswith((".", "__pycache__"))}
    assert not new, f"tests wrote into the checkout: {sorted(new)}"


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


class TensorBank:
    """An embedding bank held in a tensor (what a cached teacher serves, without the cache)."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[index]
