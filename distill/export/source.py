"""A network taken out of a finished run: one generation, or the ensemble of generations 0..K, with what it needs.

:func:`open_run` reads ``RUN/config.yaml`` (the resolved recipe), checks that the generations asked for are
finished (``gen-k/model.ckpt`` with the checksum ``state.json`` recorded, ``metrics.json`` and ``test_logits.npy``),
rebuilds each network with its task's ``network_from_checkpoint`` (``weights_only=True``; a prompted student's
frozen base is rebuilt from its source and verified, then merged with the trained tensors into one module) and
rebuilds the data module for the class names, the evaluation transform and real test inputs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from distill.config import RecipeError
from distill.data import DATASETS, DistillDataModule
from distill.export.ensemble import ProbabilityEnsemble
from distill.export.formats import ExportError
from distill.export.preprocess import Preprocess, preprocess_of
from distill.io import sha256_file
from distill.metrics import ensemble_logits
from distill.plan import RunLayout
from distill.resolve import load_backbone, load_recipe
from distill.spec import GenerationSpec, LoadSpec, freeze
from distill.state import RunState
from distill.tasks import TASKS, TaskContext

ENSEMBLE = "ensemble"

__all__ = ["ENSEMBLE", "ExportError", "RunNetwork", "Selection", "open_run", "parse_generation"]


@dataclass(frozen=True)
class Selection:
    """Which network of a run: one generation, or the probability-average of several.

    Attributes:
        members: the generations, ascending.
        ensemble: whether the network averages their probabilities (``--generation ensemble``).
    """

    members: tuple[int, ...]
    ensemble: bool = False

    @property
    def label(self) -> str:
        """``gen-2`` or ``ensemble 0..2`` (as the run's table names them)."""
        return f"ensemble {self.members[0]}..{self.members[-1]}" if self.ensemble else f"gen-{self.members[0]}"


def parse_generation(text: str | int | None, last: int, where: str) -> Selection:
    """``--generation``: ``K`` (0..last), ``ensemble`` (generations 0..last) or ``ensemble:K`` (0..K); default last.

    Raises:
        ExportError: a generation the run does not have, or an ensemble of fewer than two generations.
    """
    text = str(last) if text is None else str(text).strip()
    name, _, upto = text.partition(":")
    ensemble = name == ENSEMBLE
    value = (upto or str(last)) if ensemble else text
    if not value.lstrip("-").isdigit() or (upto and not ensemble):
        raise ExportError(f"--generation must be a generation number, {ENSEMBLE} or {ENSEMBLE}:K, got {text!r}")
    k = int(value)
    if not 0 <= k <= last:
        raise ExportError(f"{where} has no generation {k} (its recipe has generations 0..{last})")
    if ensemble and k < 1:
        raise ExportError(f"--generation {text}: an ensemble needs generations 0..K with K >= 1")
    return Selection(tuple(range(k + 1)), True) if ensemble else Selection((k,))


@dataclass
class RunNetwork:
    """A finished run's network (in eval mode, on the CPU) and what export and predict need besides it.

    Attributes:
        root: the run directory.
        selection: which generation(s).
        network: one module ``(B, C, H, W) -> (B, classes)`` logits (log-probabilities for an ensemble).
        specs: every generation's resolved spec (for the lineage).
        backbones: the backbone spec each member was rebuilt from (a loaded generation 0 keeps its own).
        datamodule: the run's data module (set up on first use of the test set: a prediction needs only its
            class names and transform, not the decoded images).
        preprocess: the run's evaluation transform for image files.
        class_names: class names in label order.
        summary: the run's ``summary.json`` (its generations' entries from ``metrics.json`` while it is running).
        recipe: the text of ``config.yaml``.
        checkpoints: sha256 of each member's ``gen-k/model.ckpt``.
    """

    root: Path
    selection: Selection
    network: nn.Module
    specs: tuple[GenerationSpec, ...]
    backbones: tuple[Any, ...]
    datamodule: DistillDataModule
    preprocess: Preprocess
    class_names: list[str]
    summary: dict[str, Any]
    recipe: str
    checkpoints: dict[int, str]

    @property
    def members(self) -> tuple[GenerationSpec, ...]:
        return tuple(self.specs[k] for k in self.selection.members)

    @property
    def metrics(self) -> dict[str, Any]:
        """The run's own metrics of this network: a generation's entry or the ensemble's, from the summary."""
        return _entry(self.summary, self.selection)

    def test_indices(self, n: int) -> np.ndarray:
        """``n`` test-set indices spread evenly over the test set (image folders are sorted by class)."""
        self.datamodule.setup("fit")  # once; a set-up data module returns at once
        total = len(self.datamodule.test_set)
        return np.unique(np.linspace(0, total - 1, num=min(n, total)).round().astype(np.int64))

    def test_inputs(self, indices: np.ndarray) -> torch.Tensor:
        """The test images at ``indices`` as the network's inputs, transformed exactly as in the run."""
        self.datamodule.setup("fit")
        return torch.stack([torch.as_tensor(self.datamodule.test_set[int(i)][0]).float().cpu() for i in indices])

    def recorded_test_logits(self) -> torch.Tensor:
        """The logits the run itself recorded on the whole test set (``gen-k/test_logits.npy``; ensembled)."""
        layout = RunLayout(self.root)
        return ensemble_logits([torch.from_numpy(np.load(layout.test_logits(k), allow_pickle=False))
                                for k in self.selection.members])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read {path}: {e}") from None


def _check_finished(root: Path, k: int, state: RunState) -> str:
    """sha256 of generation ``k``'s checkpoint; :class:`ExportError` unless it is finished and evaluated."""
    layout = RunLayout(root)
    ckpt, resume = layout.checkpoint(k), f"finish it with `distill run --resume --out {root}`"
    if not ckpt.is_file():
        raise ExportError(f"generation {k} of {root} is not finished (no {ckpt}); {resume}")
    sha = sha256_file(ckpt)
    if state.generation_sha(k) != sha:
        raise ExportError(f"generation {k} of {root} is not finished: {ckpt} is not the checkpoint state.json "
                          f"recorded; {resume}")
    for path in (layout.metrics(k), layout.test_logits(k)):
        if not path.is_file():
            raise ExportError(f"generation {k} of {root} is not evaluated yet (no {path}); {resume}")
    return sha


def _entry(summary: dict[str, Any], selection: Selection) -> dict[str, Any]:
    members = list(selection.members)
    entries = [e for e in summary.get("ensembles", []) if e.get("members") == members] if selection.ensemble else \
        [g for g in summary.get("generations", []) if g.get("generation") == members[0]]
    if not entries:
        raise ExportError(f"the run's summary has no metrics of {selection.label}; finish the run with "
                          "`distill run --resume`")
    return entries[0]


def _summary(root: Path, selection: Selection) -> dict[str, Any]:
    """``summary.json``, or (while later generations still train) one built from the members' ``metrics.json``."""
    path = root / "summary.json"
    if path.is_file():
        return _read_json(path)
    if selection.ensemble:
        raise ExportError(f"{root} has no summary.json yet: the run has not finished, and the ensemble's metrics are "
                          "written at its end")
    layout, name = RunLayout(root), root / "recipe-name"
    entries = [{k: v for k, v in _read_json(layout.metrics(j)).items() if k != "seed"}
               for j in range(selection.members[-1] + 1) if layout.metrics(j).is_file()]
    return {"recipe": name.read_text().strip() if name.is_file() else root.name, "seed": None,
            "generations": entries, "ensembles": []}


def _rebuild(spec: GenerationSpec, backbone: Any, context: TaskContext, ckpt: Path) -> nn.Module:
    spec = dataclasses.replace(spec, backbone=freeze(backbone))
    try:
        return TASKS.get(spec.task).network_from_checkpoint(spec, context, ckpt).eval()
    except (RuntimeError, KeyError) as e:  # tensors that do not fit the recipe's backbone
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{ckpt} does not fit generation {spec.index}'s backbone {spec.label!r}: {first}") from None


def open_run(run_dir: str | Path, generation: str | int | None = None) -> RunNetwork:
    """Open a finished run's generation (default: the last) or ensemble (``"ensemble"``, ``"ensemble:K"``).

    Raises:
        ExportError: not a run directory, no such generation, an unfinished one, a checkpoint that does not fit.
        UserError: the recipe or the data cannot be loaded here (a :class:`~distill.config.RecipeError`,
            :class:`~distill.data.DataError`, ...).
    """
    root = Path(run_dir)
    config = root / "config.yaml"
    if not config.is_file():
        raise ExportError(f"{root} is not a distill run directory (no config.yaml)")
    recipe_text = config.read_text()
    try:  # the run's own files are read: a loaded teacher's source (possibly gone by now) is not needed
        recipe = load_recipe(str(config), ["--load", "null"])
    except RecipeError as e:
        raise ExportError(f"{config}: {e}") from None
    selection = parse_generation(generation, len(recipe.specs) - 1, str(root))
    state = RunState(root)
    checkpoints = {k: _check_finished(root, k, state) for k in selection.members}
    summary = _summary(root, selection)
    _entry(summary, selection)  # the card's numbers are there
    data = dict(recipe.run.data)
    dm = DATASETS.get(data.pop("name"))(**data)  # not set up: decoding the data waits until test images are needed
    preprocess = preprocess_of(dm)
    # rebuilding a network from its checkpoint reads the input's shape only: no training image is decoded for it
    context = TaskContext(dm.num_classes, dm.in_chans, torch.zeros(1, preprocess.channels, *preprocess.size), None,
                          None, dm.input_stats())
    loaded = (yaml.safe_load(recipe_text) or {}).get("load") is not None
    layout = RunLayout(root)
    backbones, networks = [], []
    for k in selection.members:
        spec, ckpt = recipe.specs[k], layout.checkpoint(k)
        # a loaded generation 0 records its own backbone in its checkpoint (the recipe's may name another)
        backbone = load_backbone(LoadSpec("checkpoint", str(ckpt))) if k == 0 and loaded else spec.backbone
        backbones.append(backbone)
        networks.append(_rebuild(spec, backbone, context, ckpt))
    network = ProbabilityEnsemble(networks).eval() if selection.ensemble else networks[0]
    return RunNetwork(root=root, selection=selection, network=network, specs=recipe.specs, backbones=tuple(backbones),
                      datamodule=dm, preprocess=preprocess, class_names=[str(c) for c in dm.class_names],
                      summary=summary, recipe=recipe_text, checkpoints=checkpoints)
