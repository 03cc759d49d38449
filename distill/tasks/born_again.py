"""The born-again classification task: a student network, a pluggable loss and (for students) a teacher source.

Registered as ``task: born_again`` (the default). Generation 0 learns from labels; generation k from the teacher
source its spec names, through the loss ``kd.variant``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from distill.callbacks import ThrottledProgressBar
from distill.losses import CrossEntropy, DistillLoss, LossOutput, Progress
from distill.metrics import ECE_BINS
from distill.models import create_backbone
from distill.optim import OptimizerConfig, build_optimizer
from distill.outputs import FeatureTap, ModelOutput
from distill.spec import GenerationSpec, thaw
from distill.speed import apply_speed
from distill.tasks.base import TASKS, Task, TaskContext
from distill.teachers import TeacherSource


def load_student(path: str | Path, backbone: object, num_classes: int, in_chans: int) -> nn.Module:
    """Rebuild a generation's network from its checkpoint (``weights_only=True``: no pickled code runs).

    Only the ``student.`` entries are read: a loss's own parameters (a FitNets regressor) are not part of the network.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    model = create_backbone(thaw(backbone), num_classes, in_chans)
    model.load_state_dict({k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")})
    return model.eval()


class RunningAccuracy:
    """Top-1 accuracy accumulated over an epoch on the device: two counters, no host sync until :meth:`compute`.

    The training step's accuracy, a tenth of the cost of a torchmetrics update per step (which also validates its
    arguments, a device sync each on a GPU). :meth:`compute` sums the counts over DDP ranks when a process group runs.
    """

    def __init__(self) -> None:
        self.correct: torch.Tensor | None = None
        self.seen = 0

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        hits = (logits.detach().argmax(-1) == target).sum()
        self.correct = hits if self.correct is None else self.correct + hits
        self.seen += target.numel()

    __call__ = update

    def compute(self) -> torch.Tensor:
        """float32 accuracy of everything seen since the last :meth:`reset` (0 if nothing was)."""
        if self.correct is None:
            return torch.tensor(0.0)
        counts = torch.stack([self.correct.double(), torch.tensor(float(self.seen), dtype=torch.float64,
                                                                  device=self.correct.device)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        return (counts[0] / counts[1].clamp_min(1)).float()

    def reset(self) -> None:
        self.correct, self.seen = None, 0


@TASKS.register("born_again")
class GenerationModule(Task):
    """Trains ``student`` with ``loss``; students get the teacher's output from ``teacher`` for every batch.

    Batches are ``(images, labels, dataset_indices)``; the indices let a cached teacher look its scores up. The loss
    gets :class:`~distill.outputs.ModelOutput` of student and teacher (with the named features it asked for) and the
    current :class:`~distill.losses.Progress`; its own parameters train with the student and are checkpointed under
    ``loss.``. ``train/loss`` and, for a loss of several terms, each term (``train/<name>``) are logged on the steps a
    logger writes or the progress bar draws. ``predict_step`` returns the student's logits (used to build the next
    cache and to evaluate).

    Args:
        student: freshly initialised backbone.
        loss: a :class:`~distill.losses.DistillLoss`; its ``needs_teacher`` says whether ``teacher`` is used.
        teacher: teacher source for students, None for generation 0.
        num_classes: number of classes (for the accuracy metrics).
        optimizer: optimizer and schedule settings.
        max_epochs: schedule length (for the cosine schedule).
        generation: generation number (logged as a hyper-parameter).
        steps_per_call: K optimizer steps per Lightning step (``speed.steps_per_call``); K > 1 switches to manual
            optimization (:meth:`training_step` splits the call into batches of ``batch_size``).
        batch_size: samples per optimizer step (needed when ``steps_per_call`` > 1).
        gradient_clip: the recipe's ``(trainer.gradient_clip_val, trainer.gradient_clip_algorithm)``, applied per
            optimizer step when ``steps_per_call`` > 1 (Lightning clips itself when it is 1).
    """

    def __init__(self, student: nn.Module, loss: DistillLoss, teacher: TeacherSource | None, num_classes: int,
                 optimizer: OptimizerConfig, max_epochs: int, generation: int = 0, steps_per_call: int = 1,
                 batch_size: int | None = None, gradient_clip: tuple[float | None, str | None] = (None, None)) -> None:
        super().__init__()
        # Plain values only, so checkpoints load with torch.load(weights_only=True). Not logged: the engine gives the
        # loggers the whole recipe instead (distill.user_logs.log_recipe).
        self.save_hyperparameters({"num_classes": num_classes, "max_epochs": max_epochs, "generation": generation,
                                   "optimizer": asdict(optimizer)}, logger=False)
        if loss.needs_teacher and teacher is None:
            raise ValueError(f"{type(loss).__name__} needs a teacher")
        if steps_per_call > 1 and not batch_size:
            raise ValueError("steps_per_call > 1 needs the batch size to split each call into")
        self.automatic_optimization = steps_per_call == 1  # K = 1: Lightning's own loop, unchanged
        self.steps_per_call, self.batch_size, self.gradient_clip = steps_per_call, batch_size, gradient_clip
        self.student = student
        self.loss = loss
        self.teacher = teacher  # plain attribute (not an nn.Module): stays out of the module tree
        self.optimizer_cfg = optimizer
        self.train_acc = RunningAccuracy()
        self._train_acc_logged = False
        self._lr_rescale = 1.0
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_ece = MulticlassCalibrationError(num_classes=num_classes, n_bins=ECE_BINS, norm="l1")  # as the test's
        names = loss.feature_names()[0]
        self._tap = FeatureTap(student, names) if names else None  # plain callable: the student appears once

    @classmethod
    def create(cls, spec: GenerationSpec, context: TaskContext, loss: DistillLoss) -> GenerationModule:
        """A freshly initialised student for ``spec`` (seed the RNGs first), ``loss`` bound to one batch's shapes."""
        network = create_backbone(thaw(spec.backbone), context.num_classes, context.in_chans)
        return cls._build(spec, context, network, loss)

    @classmethod
    def from_network(cls, spec: GenerationSpec, context: TaskContext, network: nn.Module) -> GenerationModule:
        """A module around a trained network, for evaluation and cache building (cross-entropy, no teacher)."""
        return cls._build(spec, context, network, CrossEntropy())

    @classmethod
    def network_from_checkpoint(cls, spec: GenerationSpec, context: TaskContext, path: str | Path) -> nn.Module:
        return apply_speed(load_student(path, spec.backbone, context.num_classes, context.in_chans), context.speed)

    @classmethod
    def monitorable_metrics(cls, has_val: bool) -> frozenset[str]:
        """``train/acc``, and ``val/loss``, ``val/acc``, ``val/ece`` with a validation split. ``train/loss`` and the
        loss's terms are logged on the shown steps only (``log_every_n_steps``), so an epoch may end without them."""
        return frozenset({"train/acc"} | ({"val/loss", "val/acc", "val/ece"} if has_val else set()))

    @classmethod
    def _build(cls, spec: GenerationSpec, context: TaskContext, network: nn.Module,
               loss: DistillLoss) -> GenerationModule:
        module = cls(apply_speed(network, context.speed), loss, context.teacher if loss.needs_teacher else None,
                     context.num_classes, spec.optimizer, max_epochs=spec.max_epochs, generation=spec.index,
                     steps_per_call=context.speed.steps_per_call if context.speed is not None else 1,
                     batch_size=context.batch_size,
                     gradient_clip=(spec.trainer.get("gradient_clip_val"), spec.trainer.get("gradient_clip_algorithm")))
        if loss.has_parameters:  # shapes of one batch, for the loss's own parameters
            was_training = network.training
            network.eval()
            with torch.no_grad():
                source = module.teacher.to(context.sample.device) if module.teacher is not None else None
                teacher = source(context.sample, torch.zeros(1, dtype=torch.long)) if source is not None else None
                loss.bind(module.student_output(context.sample), teacher)
            network.train(was_training)
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def student_output(self, x: torch.Tensor) -> ModelOutput:
        """The student's logits, with the features its loss reads."""
        return self._tap(x) if self._tap is not None else ModelOutput(self.student(x))

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                      batch_idx: int) -> torch.Tensor:
        """One optimizer step on ``batch`` (K = 1), or ``steps_per_call`` of them on its consecutive slices."""
        if self.automatic_optimization:
            result = self._step_loss(*batch)
            totals, terms = result.total, result.terms
        else:
            totals, terms = self._manual_steps(batch)
        if self._step_is_shown():  # K > 1: once per call, the mean over its steps
            self.log("train/loss", totals.mean() if totals.ndim else totals, prog_bar=True)
            if len(terms) > 1:  # a lone term is the total itself
                self.log_dict({f"train/{name}": value for name, value in terms.items()})
        if batch_idx + 1 == self.trainer.num_training_batches:  # the epoch's accuracy, computed once
            self._log_train_acc()
        if totals.ndim == 0:
            return totals
        bad = ~torch.isfinite(totals)  # the call's first non-finite step loss, else its last: no host sync
        return totals.detach()[torch.where(bad.any(), bad.int().argmax(), len(totals) - 1)]

    def _step_loss(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> LossOutput:
        """The loss of one batch; counts the batch's training accuracy."""
        out = self.student_output(x)
        teacher = self.teacher(x, index) if self.loss.needs_teacher else None
        result = self.loss(out, y, teacher, Progress(self.current_epoch, self.global_step, self.hparams.max_epochs))
        self.train_acc.update(out.logits.detach(), y)  # accumulate only: the epoch value is logged once, at its end
        return result

    def _manual_steps(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """K optimizer steps on consecutive slices (views) of ``batch``, as Lightning's automatic loop takes one.

        The order of one step is Lightning's: forward and loss, ``zero_grad``, backward through the precision plugin
        (which also prepares DDP's gradient synchronisation for each backward), then ``optimizer.step`` -- whose
        precision plugin unscales and calls :meth:`on_before_optimizer_step`, where the gradients are clipped. Returns
        the steps' detached losses ``(K,)`` and their terms averaged over the call.
        """
        opt = self.optimizers()
        totals, terms = [], {}
        for j, (x, y, index) in enumerate(zip(*(t.split(self.batch_size) for t in batch), strict=True)):
            result = self._step_loss(x, y, index)
            opt.zero_grad()
            self.manual_backward(result.total)
            opt.step()
            self._step_schedulers("step", self.trainer.fit_loop.epoch_loop.batch_idx * self.steps_per_call + j)
            totals.append(result.total.detach())
            for name, value in result.terms.items():
                terms.setdefault(name, []).append(value.detach())
        return torch.stack(totals), {name: torch.stack(values).mean() for name, values in terms.items()}

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """K > 1: clip this optimizer step's (unscaled) gradients as ``trainer.gradient_clip_*`` asks."""
        value, algorithm = self.gradient_clip
        if not self.automatic_optimization and value:
            self.configure_gradient_clipping(optimizer, gradient_clip_val=value,
                                             gradient_clip_algorithm=algorithm or "norm")

    def _step_schedulers(self, interval: str, index: int) -> None:
        """K > 1: step the schedules of ``interval`` as Lightning's automatic loop does (``index`` counts from 0)."""
        for config in self.trainer.lr_scheduler_configs:
            if config.interval == interval and not config.reduce_on_plateau and (index + 1) % config.frequency == 0:
                self.lr_scheduler_step(config.scheduler, None)

    def _log_train_acc(self) -> None:
        self.log("train/acc", self.train_acc.compute(), on_step=False, on_epoch=True, prog_bar=True)
        self._train_acc_logged = True

    def _step_is_shown(self) -> bool:
        """Whether anyone reads this step's ``train/loss`` (and terms): a logger writes this step, or the progress bar
        draws it.

        ``self.log`` costs about a millisecond of Lightning bookkeeping per call, as much as a small GPU step; the
        loggers write every ``trainer.log_every_n_steps``-th step only, and :class:`~distill.callbacks.
        ThrottledProgressBar` draws a few times a second, so the other steps skip it (``metrics.csv`` is unchanged).
        A progress bar of another kind gets the loss on every step, as before.
        """
        trainer = self.trainer
        if trainer.fast_dev_run or trainer._logger_connector.should_update_logs:  # what the loggers will write
            return True
        bar = trainer.progress_bar_callback
        return bar is not None and (bar.draw_this_batch if isinstance(bar, ThrottledProgressBar) else True)

    def on_train_epoch_end(self) -> None:
        """Start the next epoch's accuracy count afresh (logging ``train/acc`` here if the loader had no length).

        The epoch's ``train/acc`` is computed once, on its last batch: logging the metric object on every step
        would cost Lightning a walk over it per step (moving its state to the device), for the same value.
        """
        if not self._train_acc_logged:
            self._log_train_acc()
        self._train_acc_logged = False
        self.train_acc.reset()
        if not self.automatic_optimization:
            self._step_schedulers("epoch", self.current_epoch)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y, _ = batch
        logits = self.student(x)
        self.val_acc(logits, y)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), sync_dist=True)  # mean over DDP ranks
        self.log("val/acc", self.val_acc, prog_bar=True)
        self.val_ece(logits.float().softmax(dim=1), y)
        self.log("val/ece", self.val_ece)

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.student(batch[0]).float()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Remember how the recipe's learning rate differs from the checkpoint's (a resume after a NaN, say)."""
        old = checkpoint.get("hyper_parameters", {}).get("optimizer", {}).get("lr")
        self._lr_rescale = self.optimizer_cfg.lr / old if old else 1.0

    def on_train_start(self) -> None:
        """Apply a changed learning rate to the restored optimizer and schedule (same shape, new scale)."""
        ratio = self._lr_rescale
        if ratio == 1.0:
            return
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] *= ratio
                if "initial_lr" in group:
                    group["initial_lr"] *= ratio
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler.base_lrs = [lr * ratio for lr in config.scheduler.base_lrs]
        self._lr_rescale = 1.0

    def configure_optimizers(self):
        params = [*self.student.parameters(), *self.loss.parameters()]  # a loss's own parameters train too
        opt, sched = build_optimizer(params, self.optimizer_cfg, self.hparams.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
