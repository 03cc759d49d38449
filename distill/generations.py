"""The born-again loop: generation 0 learns from labels (or is loaded), generation k from generation k-1 (or 0..k-1).

For each generation k, as its :class:`~distill.spec.GenerationSpec` says: seed with its seed, ask the task registry
for its LightningModule, fit it (or load its network), save ``gen-k/model.ckpt``, evaluate it (and the ensemble of
generations 0..k) on the test set, then score the un-augmented training set once (or, with ``cache.mode: replay``,
``cache.epochs`` augmented views of it) and store the logits in ``cache/gen-k``. The next student reads that cache by
sample index (and view epoch) and never runs its teacher (unless ``cache.mode: online``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from rich.console import Console

from distill.cache import (
    CacheError,
    CacheLayout,
    CacheMismatchError,
    CacheWriter,
    Manifest,
    SoftLabelCache,
    sha256_file,
)
from distill.cache.replay import CACHE_MODES, build_loader, cache_layout
from distill.callbacks import AtomicCheckpointIO, EpochSeed, FiniteLossGuard, ThrottledProgressBar, resumable_checkpoint
from distill.csv_log import ResumedCSVLogger
from distill.data import DATASETS, DistillDataModule
from distill.distributed import GatherPredictions, barrier, is_global_zero, require_command_launcher
from distill.faults import fault_point
from distill.loaded import load_network, save_network
from distill.losses import DistillLoss
from distill.metrics import agreement, ensemble_logits, evaluate
from distill.models import BackboneError, create_backbone
from distill.plan import RunLayout, Step, make_plan
from distill.preflight import check_cache_settings, check_generation, check_teacher_inputs, same_inputs
from distill.resolve import construct_loss
from distill.spec import GenerationSpec, RunSpec, generation_seed, replay_seed, thaw
from distill.speed import manual_trainer_kwargs
from distill.state import RunState
from distill.tasks import TASKS, TaskContext, parameter_counts
from distill.teachers import CachedTeacher, OnlineTeacher, TeacherSource, ViewEpoch
from distill.user_logs import log_recipe, recipe_params, report, scalars, user_objects

__all__ = ["BornAgainRun", "RunLayout", "build_datamodule", "generation_seed", "replay_seed"]


def build_datamodule(data: Mapping[str, Any]) -> DistillDataModule:
    """Instantiate the data module named by ``data["name"]`` with the other keys, and set it up."""
    options = {k: v for k, v in thaw(data).items() if k != "name"}
    dm = DATASETS.get(data["name"])(**options)
    dm.setup("fit")
    return dm


class BornAgainRun:
    """Runs generations 0..N of a resolved recipe into a run directory.

    Args:
        spec: the resolved run (:func:`distill.resolve.resolve_run`, or ``load_recipe(...).run``).
        out: run directory (created; must not hold another run).
        recipe_name: name recorded in the summary.
        console: where progress and the final table go.
        dm: the data module, if already built.
    """

    def __init__(self, spec: RunSpec, out: str | Path, recipe_name: str, console: Console | None = None,
                 dm: DistillDataModule | None = None) -> None:
        self.run_spec = spec
        self.specs = spec.generations
        self.speed = spec.speed
        self.layout = RunLayout(Path(out))
        self.recipe_name = recipe_name
        self.console = console or Console()
        self.dm = dm
        self._preflight_done = False
        self._fingerprint: dict[str, Any] | None = None
        self._shas: dict[tuple[Path, int, int], str] = {}
        self._loaded: dict[int, torch.nn.Module] = {}
        self._losses: dict[int, DistillLoss] = {}
        self.test_logits: dict[int, torch.Tensor] = {}
        self._reports: dict[int, tuple[list, int]] = {}  # generation -> (the user's loggers, its last step)

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

    def context(self, teacher: TeacherSource | None = None) -> TaskContext:
        """What a task needs from the data and the run besides its spec."""
        return TaskContext(self.dm.num_classes, self.dm.in_chans, self.dm.cache_set[0][0].unsqueeze(0), teacher,
                           self.speed, self.dm.input_stats(), self.dm.batch_size)

    def loss(self, spec: GenerationSpec) -> DistillLoss:
        """Generation ``spec.index``'s one loss, built from ``spec.loss`` on first use: preflight checks the instance
        :meth:`train` then takes over. A value its constructor refuses is a one-line :class:`RecipeError`."""
        if spec.index not in self._losses:
            self._losses[spec.index] = construct_loss(spec)
        return self._losses[spec.index]

    def network(self, spec: GenerationSpec) -> torch.nn.Module:
        """Generation ``spec.index``'s trained network, rebuilt from ``gen-k/model.ckpt``."""
        return TASKS.get(spec.task).network_from_checkpoint(spec, self.context(), self.layout.checkpoint(spec.index))

    def _progress_bar(self, spec: GenerationSpec, doing: str = "Predicting") -> list:
        on = spec.trainer.get("enable_progress_bar", True) is not False
        return [ThrottledProgressBar(leave=True, doing=doing)] if on else []

    def _predict_trainer(self, spec: GenerationSpec, extra: list | None = None, doing: str = "Predicting") -> L.Trainer:
        """A trainer for inference (cache building and evaluation) on the processes and devices of training.

        It takes the recipe's ``accelerator``, ``strategy``, ``devices`` and ``num_nodes``: one device when training
        runs on one device; under DDP the same ranks as training, each scoring a shard of the data (the writer or
        :class:`~distill.distributed.GatherPredictions` puts the shards together).
        """
        kw = spec.trainer
        placement = {key: kw[key] for key in ("strategy", "devices", "num_nodes") if kw.get(key) is not None}
        trainer = L.Trainer(accelerator=kw.get("accelerator", "auto"), **placement, precision=kw.get("precision"),
                            inference_mode=True, logger=False, enable_checkpointing=False, enable_model_summary=False,
                            enable_progress_bar=kw.get("enable_progress_bar", True) is not False,
                            callbacks=self._progress_bar(spec, doing) + (extra or []))
        require_command_launcher(trainer)
        return trainer

    def cache_layout(self, spec: GenerationSpec) -> CacheLayout:
        """The layout of the caches this run builds and reads (views from :func:`replay_seed` in replay mode)."""
        c = spec.cache
        replay = CACHE_MODES.get(c.mode).replay
        return cache_layout(c.mode, c.format, c.topk, c.epochs, self.run_spec.replay_seed,
                            self.dm.augmentation_description() if replay else None, c.embeddings)

    def teacher_source(self, spec: GenerationSpec, loss: DistillLoss) -> TeacherSource | None:
        """Where generation ``spec.index`` reads its teacher from: the members' caches, or their networks online
        (serving the features ``loss`` reads of the teacher)."""
        if not spec.members:
            return None
        if CACHE_MODES.get(spec.cache.mode).online:
            features = loss.feature_names()[1]
            return OnlineTeacher([self.network(self.specs[j]) for j in spec.members], features)
        layout = self.cache_layout(spec)
        return CachedTeacher([SoftLabelCache(self.layout.cache_dir(j), self.fingerprint, self.checkpoint_sha(j),
                                             layout) for j in spec.members], features=loss.feature_names()[1])

    def _user_objects(self, spec: GenerationSpec) -> tuple[list, list]:
        """The user's loggers (``save_dir`` defaults to ``gen-k/``) and callbacks for generation ``spec.index``."""
        return user_objects(spec, str(self.layout.gen_dir(spec.index)))

    def train(self, spec: GenerationSpec) -> tuple[L.LightningModule, float]:
        """Fit a generation from a fresh initialisation (or from its last end-of-epoch checkpoint when resuming).

        Returns the module and the fit wall time. The final state is saved atomically to ``gen-k/model.ckpt``.
        """
        k = spec.index
        L.seed_everything(spec.seed, workers=True, verbose=False)
        loss = self.loss(spec)
        del self._losses[k]  # this training owns it now (training the generation again builds a fresh one)
        teacher = self.teacher_source(spec, loss)
        module = TASKS.get(spec.task).create(spec, self.context(teacher), loss)
        layout = self.cache_layout(spec)
        replayed = layout.replay and isinstance(teacher, CachedTeacher)  # students see the cached views
        self.dm.set_views(layout.view_seed if replayed else None, layout.view_epochs)
        self.dm.steps_per_call = self.speed.steps_per_call
        gen_dir, last = self.layout.gen_dir(k), self.layout.last_checkpoint(k)
        loggers, callbacks = self._user_objects(spec)
        bar = [] if any(isinstance(c, ProgressBar) for c in callbacks) else self._progress_bar(spec)
        every_epoch = ModelCheckpoint(dirpath=last.parent, filename=last.stem, save_top_k=1, every_n_epochs=1,
                                      enable_version_counter=False)
        trainer = L.Trainer(**manual_trainer_kwargs(spec.trainer_kwargs(), self.speed), default_root_dir=gen_dir,
                            logger=[ResumedCSVLogger(gen_dir, name="logs", version=""), *loggers],
                            callbacks=[*bar, EpochSeed(spec.seed), FiniteLossGuard(), every_epoch, *callbacks,
                                       *([ViewEpoch(teacher)] if replayed else [])],
                            plugins=[AtomicCheckpointIO()])
        require_command_launcher(trainer)
        log_recipe(trainer.loggers, recipe_params(self.run_spec, spec))  # the module's own hparams stay out of them
        val = self.dm.val_dataloader() if self.dm.has_val else None
        start = time.perf_counter()
        trainer.fit(module, train_dataloaders=self.dm.train_dataloader(), val_dataloaders=val,
                    ckpt_path=last if resumable_checkpoint(last, self.console) else None, weights_only=True)
        seconds = time.perf_counter() - start
        trainer.save_checkpoint(self.layout.checkpoint(k), weights_only=False)  # every rank calls; rank 0 writes
        self.layout.remove(last)
        self._reports[k] = (loggers, trainer.global_step)
        return module, seconds

    def loaded_network(self, spec: GenerationSpec) -> torch.nn.Module:
        """The network of a loaded generation 0 (``spec.load``), loaded once (preflight) and kept."""
        if spec.index not in self._loaded:
            task, context = TASKS.get(spec.task), self.context()
            self._loaded[spec.index] = load_network(spec, self.dm.num_classes, self.dm.in_chans,
                                                    lambda path: task.network_from_checkpoint(spec, context, path))
        return self._loaded[spec.index]

    def load(self, spec: GenerationSpec) -> tuple[L.LightningModule, float]:
        """A loaded generation 0, saved as ``gen-0/model.ckpt`` like a trained one; 0 training seconds."""
        network = self.loaded_network(spec)
        if is_global_zero():
            save_network(network, self.layout.checkpoint(spec.index), spec)
        barrier()  # under DDP every rank reads the checkpoint's checksum next
        return TASKS.get(spec.task).from_network(spec, self.context(), network), 0.0

    def restore(self, spec: GenerationSpec) -> L.LightningModule:
        """A finished generation's module rebuilt from ``gen-k/model.ckpt`` (to evaluate it or rebuild its cache)."""
        return TASKS.get(spec.task).from_network(spec, self.context(), self.network(spec))

    def build_cache(self, spec: GenerationSpec, module: L.LightningModule) -> str:
        """Score the training set with a generation, write ``cache/gen-k``; return the array's sha256.

        Clean layouts score the un-augmented set; replay layouts every view ``(e, i)``, ``e < cache.epochs``. The
        predict loop runs in inference mode with ``data.eval_batch_size`` samples a batch (and ``trainer.precision``).
        """
        k = spec.index
        ckpt = self.layout.checkpoint(k)
        layout = self.cache_layout(spec)
        writer = CacheWriter(self.layout.cache_dir(k), len(self.dm.cache_set), self.dm.num_classes, spec.cache.dtype,
                             {"generation": k, "teacher_checkpoint": str(ckpt.relative_to(self.layout.root)),
                              "teacher_sha256": self.checkpoint_sha(k), "dataset": self.fingerprint}, layout)
        loader = build_loader(self.dm, layout)
        doing = f"gen-{k}: soft-label cache"
        self._predict_trainer(spec, [writer], doing).predict(module, loader, return_predictions=False)
        return Manifest.read(self.layout.cache_dir(k)).array_sha256

    def evaluate(self, spec: GenerationSpec, module: L.LightningModule, seconds: float) -> dict[str, Any]:
        """Test metrics of a generation and its agreement with its teacher; saves ``gen-k/test_logits.npy``.

        Under DDP each rank scores a shard of the test set and every rank ends with all the logits in dataset order
        (:class:`~distill.distributed.GatherPredictions`); global rank 0 writes the file.
        """
        k = spec.index
        self.test_logits[k] = logits = self._predict(spec, module, self.dm.test_dataloader(), len(self.dm.test_set),
                                                     f"gen-{k}: test set")
        self.layout.write_array(self.layout.test_logits(k), logits.numpy())
        labels = torch.as_tensor(self.dm.test_labels())
        teacher = ensemble_logits([self.test_logits[j] for j in spec.members]) if spec.members else None
        return {
            "generation": k, "backbone": spec.label, "teacher": spec.teacher_label,
            "source": spec.load.describe() if spec.load else "trained",
            "epochs": 0 if spec.load else spec.max_epochs, "seed": spec.seed,
            "train_seconds": round(seconds, 2), "parameters": parameter_counts(module),
            "test": evaluate(logits, labels),
            # Un-augmented training set: whether the network fits its data (born-again gains need a teacher that
            # does). One inference pass, a fraction 1/epochs of training's forward passes.
            "train": evaluate(self._predict(spec, module, self.dm.cache_dataloader(), len(self.dm.cache_set),
                                            f"gen-{k}: training set (accuracy)"),
                              torch.as_tensor(self.dm.train_labels()), calibration=False),
            "agreement_with_teacher": agreement(logits, teacher) if teacher is not None else None,
        }

    def _predict(self, spec: GenerationSpec, module: L.LightningModule, loader: Any, n: int,
                 doing: str = "Predicting") -> torch.Tensor:
        """Logits of ``module`` over ``loader`` in dataset order (gathered from every rank under DDP); ``doing``
        labels the progress bar."""
        gather = GatherPredictions(n)
        self._predict_trainer(spec, [gather], doing).predict(module, loader, return_predictions=False)
        return gather.outputs

    def ensemble(self, k: int) -> dict[str, Any]:
        """Test accuracy and NLL of the probability-average of generations 0..k."""
        metrics = evaluate(ensemble_logits([self.test_logits[j] for j in range(k + 1)]),
                           torch.as_tensor(self.dm.test_labels()), calibration=False)
        return {"members": list(range(k + 1)), "test": {m: metrics[m] for m in ("acc", "nll")}}

    def ensembles(self) -> list[dict[str, Any]]:
        """:meth:`ensemble` of generations 0..k, for every k >= 1."""
        return [self.ensemble(k) for k in sorted(self.test_logits)[1:]]

    def preflight(self) -> None:
        """Build the data and every generation's network, trainer, loggers and callbacks once, before any training:
        a backbone whose output does not fit the dataset, teacher weights that do not load or a callback that cannot
        be built fails now (one line), not after hours of earlier generations (the checks: :mod:`distill.preflight`).
        """
        if self._preflight_done:
            return
        for spec in self.specs:  # each student's one loss, built before any data is loaded
            if spec.members:
                self.loss(spec)
        if self.dm is None:
            self.dm = build_datamodule(self.run_spec.data)
        networks: dict[int, torch.nn.Module] = {}
        for spec in self.specs:
            self.dm.prepare_generation(spec)  # text: tokenised with this generation's tokenizer
            check_teacher_inputs(self.specs, self.dm, spec)
            try:
                model = self.loaded_network(spec) if spec.load is not None else \
                    create_backbone(thaw(spec.backbone), self.dm.num_classes, self.dm.in_chans)
            # bad init_args or a model that cannot take this data (torch's RuntimeError for a negative width,
            # timm's AssertionError for heads that do not divide the width, while the layers are built)
            except (TypeError, ValueError, RuntimeError, AssertionError) as e:
                if isinstance(e, BackboneError):
                    raise
                raise BackboneError(f"backbone {spec.label!r} cannot be built: {e}") from None
            networks[spec.index] = model
            teacher = networks[spec.members[0]] if spec.members and same_inputs(self.specs, self.dm, spec) else None
            check_generation(spec, self.dm, model, teacher, self.loss(spec) if spec.members else None,
                             self._user_objects(spec)[1])
        check_cache_settings(self.specs, self.dm)
        self._preflight_done = True

    def _cache_is_valid(self, k: int, state: RunState) -> bool:
        if str(k) not in state.caches:
            return False
        try:
            SoftLabelCache(self.layout.cache_dir(k), self.fingerprint, self.checkpoint_sha(k),
                           self.cache_layout(self.specs[k]))
        except CacheMismatchError as e:  # intact but computed from something else: never overwritten silently
            raise CacheMismatchError(f"{e}; delete {self.layout.cache_dir(k)} to rebuild it with the current "
                                     "settings") from None
        except CacheError as e:
            self.console.print(f"[yellow]cache of generation {k} is damaged ({e}); rebuilding it[/]")
            return False
        return True

    def plan(self, state: RunState) -> list[Step]:
        """What is done, stale or to do, for every generation (see :func:`distill.plan.make_plan`)."""
        return make_plan(self.specs, self.layout, state, self.checkpoint_sha, lambda k: self._cache_is_valid(k, state))

    def run(self) -> dict[str, Any]:
        """Carry out the plan; return (and write) ``summary.json``.

        A finished generation (checkpoint checksum recorded in ``state.json``) and a valid cache are reused, so
        running again after a crash continues from the last good point.
        """
        self.preflight()
        state = RunState(self.layout.root)
        generations = [self.execute(step, state) for step in self.plan(state)]
        summary = {"recipe": self.recipe_name, "seed": self.run_spec.seed, "generations": generations,
                   "ensembles": self.ensembles()}
        self.layout.write_json(self.layout.root / "summary.json", summary)
        return summary

    def execute(self, step: Step, state: RunState) -> dict[str, Any]:
        """Do one generation's step: train, load, evaluate or reuse it, then (re)build its cache if needed."""
        spec, k = step.spec, step.spec.index
        self._announce(step)
        self.dm.prepare_generation(spec)  # text: this generation's tokens for training, evaluation and its cache
        module = None
        if step.action == "reuse":
            metrics = json.loads(self.layout.metrics(k).read_text())
            self.test_logits[k] = torch.from_numpy(np.load(self.layout.test_logits(k), allow_pickle=False))
        else:
            self.layout.make_gen_dir(k)
            if step.action == "evaluate":  # crashed between saving the checkpoint and writing the metrics
                module, seconds = self.restore(spec), state.train_seconds.get(str(k), float("nan"))
            else:
                module, seconds = self.load(spec) if step.action == "load" else self.train(spec)
                state.mark_generation(k, self.checkpoint_sha(k), round(seconds, 2))
                fault_point(f"fitted:{k}")
            metrics = self.evaluate(spec, module, seconds)
            self.layout.write_json(self.layout.metrics(k), metrics)
            fault_point(f"trained:{k}")
        if step.build_cache:
            module, start = module or self.restore(spec), time.perf_counter()
            state.mark_cache(k, self.build_cache(spec, module))
            metrics["cache_seconds"] = round(time.perf_counter() - start, 2)
            self.layout.write_json(self.layout.metrics(k), metrics)
            fault_point(f"cached:{k}")
        if step.action != "reuse":  # the user's loggers hear what metrics.json holds
            loggers, last_step = self._reports.pop(k, None) or (self._user_objects(spec)[0], 0)
            report(loggers, scalars(metrics, self.ensemble(k) if k else None), last_step,
                   recipe_params(self.run_spec, spec))
        return {key: v for key, v in metrics.items() if key != "seed"}

    def _announce(self, step: Step) -> None:
        spec, n = step.spec, len(self.specs) - 1
        if step.action == "reuse":
            self.console.rule(f"generation {spec.index}/{n} · done, reusing it")
            return
        what = {"evaluate": "trained, evaluating it", "load": spec.load.describe() if spec.load else "",
                "train": f"teacher {spec.teacher_label} ({spec.cache.mode})" if spec.members
                else "cross-entropy on labels"}[step.action]
        self.console.rule(f"[bold]generation {spec.index}/{n}[/] · {spec.label} · {what}")

