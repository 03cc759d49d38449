"""The born-again loop: generation 0 learns from labels, generation k from generation k-1 (or the ensemble 0..k-1).

For each generation k: seed with :func:`generation_seed`, build a fresh backbone, fit it, save ``gen-k/model.ckpt``,
evaluate it (and the ensemble of generations 0..k) on the test set, then score the un-augmented training set once
(or, with ``cache.mode: replay``, ``cache.epochs`` augmented views of it) and store the logits in ``cache/gen-k``. The
next student reads that cache by sample index (and view epoch) and never runs its teacher (unless ``cache.mode:
online``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console

from distill.cache import (
    CacheError,
    CacheLayout,
    CacheMismatchError,
    CacheWriter,
    Manifest,
    SoftLabelCache,
    atomic_write_json,
    sha256_file,
)
from distill.cache.formats import build_format
from distill.cache.replay import CACHE_MODES, build_loader, cache_layout, require_replay
from distill.callbacks import AtomicCheckpointIO, EpochSeed, FiniteLossGuard, resumable_checkpoint
from distill.config import CacheConfig, KDConfig, RecipeError, generation_config
from distill.data import DATASETS, DistillDataModule
from distill.distributed import GatherPredictions, is_global_zero, require_command_launcher
from distill.faults import fault_point
from distill.losses import build_loss
from distill.metrics import agreement, ensemble_logits, evaluate
from distill.models import BackboneError, backbone_label, check_output, create_backbone
from distill.module import GenerationModule
from distill.optim import OptimizerConfig
from distill.speed import SpeedConfig, apply_speed
from distill.state import RunState
from distill.teachers import CachedTeacher, OnlineTeacher, TeacherSource, ViewEpoch

REPLAY_SEED_STREAM = 10_000  # generation_seed(seed, REPLAY_SEED_STREAM): the view seed of cache.mode replay


def generation_seed(seed: int, generation: int) -> int:
    """Seed of one generation: a 32-bit value derived from (run seed, generation) by numpy's SeedSequence.

    Distinct generations get statistically independent initialisations and data orders; the same pair always gives
    the same seed.
    """
    return int(np.random.SeedSequence([seed, generation]).generate_state(1)[0])


def replay_seed(seed: int, data_seed: int | None = None) -> int:
    """View seed of ``cache.mode: replay``: one per run, shared by every generation's cache build and training.

    ``data.seed`` when the recipe sets it (it then fixes every generation's views anyway), else
    ``generation_seed(seed, 10_000)``: derived from the run seed like a generation's seed, but from a stream no
    generation uses, so the views are independent of every generation's initialisation and data order.
    """
    return int(data_seed) if data_seed is not None else generation_seed(seed, REPLAY_SEED_STREAM)


@dataclass
class RunLayout:
    """Paths inside a run directory."""

    root: Path

    def gen_dir(self, k: int) -> Path:
        return self.root / f"gen-{k}"

    def checkpoint(self, k: int) -> Path:
        return self.gen_dir(k) / "model.ckpt"

    def cache_dir(self, k: int) -> Path:
        return self.root / "cache" / f"gen-{k}"

    def test_logits(self, k: int) -> Path:
        return self.gen_dir(k) / "test_logits.npy"

    def last_checkpoint(self, k: int) -> Path:
        """End-of-epoch checkpoint with the full trainer state, for resuming an interrupted generation."""
        return self.gen_dir(k) / "checkpoints" / "last.ckpt"


def build_datamodule(data: dict[str, Any]) -> DistillDataModule:
    """Instantiate the data module named by ``data["name"]`` with the other keys, and set it up."""
    options = {k: v for k, v in data.items() if k != "name"}
    dm = DATASETS.get(data["name"])(**options)
    dm.setup("fit")
    return dm


def teacher_members(generation: int, kd: KDConfig) -> list[int]:
    """Generations whose scores teach ``generation``: the previous one, or all earlier ones for an ensemble."""
    if generation == 0:
        return []
    return list(range(generation)) if kd.teacher == "ensemble" else [generation - 1]


def load_student(path: Path, backbone: Any, num_classes: int, in_chans: int) -> torch.nn.Module:
    """Rebuild a generation's network from its checkpoint (``weights_only=True``: no pickled code runs)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    model = create_backbone(backbone, num_classes, in_chans)
    model.load_state_dict({k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")})
    return model.eval()


class BornAgainRun:
    """Runs generations 0..N of a parsed recipe into a run directory.

    Args:
        cfg: the validated recipe (from :func:`distill.config.parse_recipe`).
        out: run directory (created; must not hold another run).
        recipe_name: name recorded in the summary.
        console: where progress and the final table go.
    """

    def __init__(self, cfg: Namespace, out: str | Path, recipe_name: str, console: Console | None = None,
                 dm: DistillDataModule | None = None) -> None:
        self.cfg = cfg
        self.layout = RunLayout(Path(out))
        self.recipe_name = recipe_name
        self.console = console or Console()
        self.dm = dm
        self._preflight_done = False
        self._fingerprint: dict[str, Any] | None = None
        self._shas: dict[tuple[Path, int, int], str] = {}
        self.test_logits: list[torch.Tensor] = []

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The training set's fingerprint, computed once (it hashes every label)."""
        if self._fingerprint is None:
            self._fingerprint = self.dm.fingerprint()
        return self._fingerprint

    def checkpoint_sha(self, k: int) -> str:
        """sha256 of ``gen-k/model.ckpt``, re-read only when the file's size or modification time changed."""
        path = self.layout.checkpoint(k)
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._shas:
            self._shas[key] = sha256_file(path)
        return self._shas[key]

    def trainer_kwargs(self, g: Namespace) -> dict[str, Any]:
        return dict(g.trainer.as_dict() if isinstance(g.trainer, Namespace) else g.trainer)

    def _callbacks(self, kwargs: dict[str, Any]) -> list:
        return [RichProgressBar(leave=True)] if kwargs.get("enable_progress_bar", True) is not False else []

    def _predict_trainer(self, g: Namespace, extra: list | None = None) -> L.Trainer:
        """A trainer for inference (cache building and evaluation) on the processes and devices of training.

        It takes the recipe's ``accelerator``, ``strategy``, ``devices`` and ``num_nodes``: one device when training
        runs on one device; under DDP the same ranks as training, each scoring a shard of the data (the writer or
        :class:`~distill.distributed.GatherPredictions` puts the shards together).
        """
        kw = self.trainer_kwargs(g)
        placement = {key: kw[key] for key in ("strategy", "devices", "num_nodes") if kw.get(key) is not None}
        trainer = L.Trainer(accelerator=kw.get("accelerator", "auto"), **placement, precision=kw.get("precision"),
                            inference_mode=True, logger=False, enable_checkpointing=False, enable_model_summary=False,
                            enable_progress_bar=kw.get("enable_progress_bar", True) is not False,
                            callbacks=self._callbacks(kw) + (extra or []))
        require_command_launcher(trainer)
        return trainer

    @property
    def speed(self) -> SpeedConfig:
        """The recipe's ``speed`` section."""
        return SpeedConfig(**self.cfg.speed.as_dict()) if "speed" in self.cfg else SpeedConfig()

    def cache_layout(self, g: Namespace) -> CacheLayout:
        """The layout of the caches this run builds and reads (views from :func:`replay_seed` in replay mode)."""
        c = CacheConfig(**g.cache.as_dict())
        replay = CACHE_MODES.get(c.mode).replay
        return cache_layout(c.mode, c.format, c.topk, c.epochs, replay_seed(self.cfg.seed, self.cfg.data.get("seed")),
                            self.dm.augmentation_description() if replay else None)

    def check_cache_settings(self) -> None:
        """Fail before any training when the ``cache`` section cannot work with the data (DataError / CacheError)."""
        c = CacheConfig(**self.cfg.cache.as_dict())
        if CACHE_MODES.get(c.mode).replay:
            require_replay(self.dm)
        build_format(c.format, self.dm.num_classes, c.dtype, c.topk)

    def teacher_source(self, k: int, g: Namespace) -> TeacherSource | None:
        members = teacher_members(k, KDConfig(**g.kd.as_dict()))
        if not members:
            return None
        if CACHE_MODES.get(CacheConfig(**g.cache.as_dict()).mode).online:
            models = [apply_speed(load_student(self.layout.checkpoint(j), generation_config(self.cfg, j).backbone,
                                               self.dm.num_classes, self.dm.in_chans), self.speed) for j in members]
            return OnlineTeacher(models)
        layout = self.cache_layout(g)
        return CachedTeacher([SoftLabelCache(self.layout.cache_dir(j), self.fingerprint, self.checkpoint_sha(j), layout)
                              for j in members])

    def train(self, k: int, g: Namespace) -> tuple[GenerationModule, float]:
        """Fit generation ``k`` from a fresh initialisation (or from its last end-of-epoch checkpoint when resuming).

        Returns the module and the fit wall time. The final state is saved atomically to ``gen-k/model.ckpt``.
        """
        seed = generation_seed(self.cfg.seed, k)
        L.seed_everything(seed, workers=True, verbose=False)
        kd = KDConfig(**g.kd.as_dict())
        student = apply_speed(create_backbone(g.backbone, self.dm.num_classes, self.dm.in_chans), self.speed)
        kw = self.trainer_kwargs(g)
        teacher = self.teacher_source(k, g)
        module = GenerationModule(student, build_loss(k, kd.variant, kd.alpha, kd.temperature),
                                  teacher, self.dm.num_classes,
                                  OptimizerConfig(**g.optimizer.as_dict()), max_epochs=kw["max_epochs"], generation=k)
        layout = self.cache_layout(g)
        replayed = layout.replay and isinstance(teacher, CachedTeacher)  # students of a replay run see the views
        if callable(getattr(self.dm, "set_views", None)):  # image data modules; digits has one view per sample
            self.dm.set_views(layout.view_seed if replayed else None, layout.view_epochs)
        gen_dir = self.layout.gen_dir(k)
        last = self.layout.last_checkpoint(k)
        every_epoch = ModelCheckpoint(dirpath=last.parent, filename=last.stem, save_top_k=1, every_n_epochs=1,
                                      enable_version_counter=False)
        trainer = L.Trainer(**kw, default_root_dir=gen_dir, logger=CSVLogger(gen_dir, name="logs", version=""),
                            callbacks=[*self._callbacks(kw), EpochSeed(seed), FiniteLossGuard(), every_epoch,
                                       *([ViewEpoch(teacher)] if replayed else [])],
                            plugins=[AtomicCheckpointIO()])
        require_command_launcher(trainer)
        val = self.dm.val_dataloader() if self.dm.has_val else None
        start = time.perf_counter()
        trainer.fit(module, train_dataloaders=self.dm.train_dataloader(), val_dataloaders=val,
                    ckpt_path=last if resumable_checkpoint(last, self.console) else None, weights_only=True)
        seconds = time.perf_counter() - start
        trainer.save_checkpoint(self.layout.checkpoint(k), weights_only=False)  # every rank calls; rank 0 writes
        if is_global_zero():
            last.unlink(missing_ok=True)
        return module, seconds

    def load_module(self, k: int, g: Namespace) -> GenerationModule:
        """A finished generation's module rebuilt from ``gen-k/model.ckpt`` (for re-building its cache)."""
        student = apply_speed(load_student(self.layout.checkpoint(k), g.backbone, self.dm.num_classes,
                                           self.dm.in_chans), self.speed)
        kd = KDConfig(**g.kd.as_dict())
        return GenerationModule(student, build_loss(0, kd.variant, kd.alpha, kd.temperature), None,
                                self.dm.num_classes, OptimizerConfig(**g.optimizer.as_dict()),
                                max_epochs=self.trainer_kwargs(g)["max_epochs"], generation=k)

    def build_cache(self, k: int, g: Namespace, module: GenerationModule) -> str:
        """Score the training set with generation ``k``, write ``cache/gen-k``; return the array's sha256.

        Clean layouts score the un-augmented set; replay layouts every view ``(e, i)``, ``e < cache.epochs``. The
        predict loop runs in inference mode with ``data.eval_batch_size`` samples a batch (and ``trainer.precision``).
        """
        ckpt = self.layout.checkpoint(k)
        layout = self.cache_layout(g)
        writer = CacheWriter(self.layout.cache_dir(k), len(self.dm.cache_set), self.dm.num_classes,
                             CacheConfig(**g.cache.as_dict()).dtype,
                             {"generation": k, "teacher_checkpoint": str(ckpt.relative_to(self.layout.root)),
                              "teacher_sha256": self.checkpoint_sha(k), "dataset": self.fingerprint}, layout)
        loader = build_loader(self.dm, layout)
        self._predict_trainer(g, [writer]).predict(module, loader, return_predictions=False)
        return Manifest.read(self.layout.cache_dir(k)).array_sha256

    def evaluate(self, k: int, g: Namespace, module: GenerationModule, seconds: float) -> dict[str, Any]:
        """Test metrics of generation ``k`` and its agreement with its teacher; saves ``gen-k/test_logits.npy``.

        Under DDP each rank scores a shard of the test set and every rank ends with all the logits in dataset order
        (:class:`~distill.distributed.GatherPredictions`); global rank 0 writes the file.
        """
        gather = GatherPredictions(len(self.dm.test_set))
        self._predict_trainer(g, [gather]).predict(module, self.dm.test_dataloader(), return_predictions=False)
        logits = gather.outputs
        if is_global_zero():
            tmp = self.layout.gen_dir(k) / ".test_logits.tmp.npy"
            np.save(tmp, logits.numpy())
            os.replace(tmp, self.layout.test_logits(k))
        self.test_logits.append(logits)
        labels = torch.as_tensor(self.dm.test_labels())
        members = teacher_members(k, KDConfig(**g.kd.as_dict()))
        teacher = ensemble_logits([self.test_logits[j] for j in members]) if members else None
        return {
            "generation": k, "backbone": backbone_label(g.backbone),
            "teacher": "+".join(f"gen-{j}" for j in members) or None,
            "epochs": int(self.trainer_kwargs(g)["max_epochs"]), "seed": generation_seed(self.cfg.seed, k),
            "train_seconds": round(seconds, 2), "test": evaluate(logits, labels),
            "agreement_with_teacher": agreement(logits, teacher) if teacher is not None else None,
        }

    def ensembles(self) -> list[dict[str, Any]]:
        """Test accuracy and NLL of the probability-average of generations 0..k, for every k >= 1."""
        labels = torch.as_tensor(self.dm.test_labels())
        out = []
        for k in range(1, len(self.test_logits)):
            metrics = evaluate(ensemble_logits(self.test_logits[: k + 1]), labels, calibration=False)
            out.append({"members": list(range(k + 1)), "test": {m: metrics[m] for m in ("acc", "nll")}})
        return out

    def preflight(self) -> None:
        """Build the data and every generation's backbone once, before any training: a backbone whose output does
        not fit the dataset fails now (:class:`~distill.models.BackboneError`), not after hours of earlier generations.
        """
        if self._preflight_done:
            return
        if self.dm is None:
            self.dm = build_datamodule(self.cfg.data)
        sample = self.dm.cache_set[0][0]
        for k in range(self.cfg.generations + 1):
            g = generation_config(self.cfg, k)
            try:
                model = create_backbone(g.backbone, self.dm.num_classes, self.dm.in_chans)
            except (TypeError, ValueError) as e:  # bad init_args or a model that cannot take this data
                raise BackboneError(f"backbone {backbone_label(g.backbone)!r} cannot be built: {e}") from None
            check_output(model, sample, self.dm.num_classes, backbone_label(g.backbone))
            try:  # Lightning validates accelerator/devices/strategy/precision when a Trainer is made
                L.Trainer(**{**self.trainer_kwargs(g), "logger": False, "enable_checkpointing": False,
                             "enable_progress_bar": False})
            except Exception as e:  # any rejection of the user's trainer settings, in one line
                raise RecipeError(f"trainer (generation {k}): {type(e).__name__}: {e}") from None
        self._preflight_done = True

    def _cache_is_valid(self, k: int, state: RunState) -> bool:
        if str(k) not in state.caches:
            return False
        try:
            SoftLabelCache(self.layout.cache_dir(k), self.fingerprint, self.checkpoint_sha(k),
                           self.cache_layout(generation_config(self.cfg, k)))
        except CacheMismatchError as e:  # intact but computed from something else: never overwritten silently
            raise CacheMismatchError(f"{e}; delete {self.layout.cache_dir(k)} to rebuild it with the current "
                                     "settings") from None
        except CacheError as e:
            self.console.print(f"[yellow]cache of generation {k} is damaged ({e}); rebuilding it[/]")
            return False
        return True

    def _is_trained(self, k: int, state: RunState) -> bool:
        """Generation ``k``'s final checkpoint exists with the checksum recorded when it was saved."""
        ckpt, sha = self.layout.checkpoint(k), state.generation_sha(k)
        return sha is not None and ckpt.is_file() and self.checkpoint_sha(k) == sha

    def _is_evaluated(self, k: int) -> bool:
        return (self.layout.gen_dir(k) / "metrics.json").is_file() and self.layout.test_logits(k).is_file()

    def run(self) -> dict[str, Any]:
        """Train every generation not already finished in the run directory; return (and write) ``summary.json``.

        A finished generation (checkpoint checksum recorded in ``state.json``) and a valid cache are reused, so
        running again after a crash continues from the last good point.

        Under DDP every rank runs this loop and takes the same decisions (they depend on files that only change after
        a collective every rank has reached); only global rank 0 writes files.
        """
        self.preflight()
        self.check_cache_settings()
        state = RunState(self.layout.root)
        generations = []
        for k in range(self.cfg.generations + 1):
            g = generation_config(self.cfg, k)
            teacher = teacher_members(k, KDConfig(**g.kd.as_dict()))
            title = (f"teacher {'+'.join(f'gen-{j}' for j in teacher)} ({g.cache.mode})" if teacher
                     else "cross-entropy on labels")
            module = None
            trained = self._is_trained(k, state)
            if trained and self._is_evaluated(k):
                self.console.rule(f"generation {k}/{self.cfg.generations} · done, reusing it")
                metrics = json.loads((self.layout.gen_dir(k) / "metrics.json").read_text())
                self.test_logits.append(torch.from_numpy(np.load(self.layout.test_logits(k), allow_pickle=False)))
            else:
                self.console.rule(f"[bold]generation {k}/{self.cfg.generations}[/] · {backbone_label(g.backbone)} · "
                                  + (title if not trained else "trained, evaluating it"))
                if is_global_zero():
                    self.layout.gen_dir(k).mkdir(parents=True, exist_ok=True)
                if trained:  # crashed between saving the checkpoint and writing the metrics: never retrain
                    module, seconds = self.load_module(k, g), state.train_seconds.get(str(k), float("nan"))
                else:
                    module, seconds = self.train(k, g)
                    state.mark_generation(k, self.checkpoint_sha(k), round(seconds, 2))
                    fault_point(f"fitted:{k}")
                metrics = self.evaluate(k, g, module, seconds)
                if is_global_zero():
                    atomic_write_json(self.layout.gen_dir(k) / "metrics.json", metrics)
                fault_point(f"trained:{k}")
            if not self._cache_is_valid(k, state):
                state.mark_cache(k, self.build_cache(k, g, module or self.load_module(k, g)))
                fault_point(f"cached:{k}")
            generations.append({key: v for key, v in metrics.items() if key != "seed"})
        summary = {"recipe": self.recipe_name, "seed": self.cfg.seed, "generations": generations,
                   "ensembles": self.ensembles()}
        if is_global_zero():
            atomic_write_json(self.layout.root / "summary.json", summary)
        return summary
