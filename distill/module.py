"""One generation as a LightningModule: a student, a pluggable loss and (for students) a teacher source."""

from __future__ import annotations

from dataclasses import asdict

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from distill.losses import DistillLoss
from distill.optim import OptimizerConfig, build_optimizer
from distill.teachers import TeacherSource


class GenerationModule(L.LightningModule):
    """Trains ``student`` with ``loss``; students get teacher logits from ``teacher`` for every batch.

    Batches are ``(images, labels, dataset_indices)``; the indices let a cached teacher look its scores up.
    ``predict_step`` returns the student's logits (used to build the next cache and to evaluate).

    Args:
        student: freshly initialised backbone.
        loss: a :class:`~distill.losses.DistillLoss`; its ``needs_teacher`` says whether ``teacher`` is used.
        teacher: teacher source for students, None for generation 0.
        num_classes: number of classes (for the accuracy metrics).
        optimizer: optimizer and schedule settings.
        max_epochs: schedule length (for the cosine schedule).
        generation: generation number (logged as a hyper-parameter).
    """

    def __init__(self, student: nn.Module, loss: DistillLoss, teacher: TeacherSource | None, num_classes: int,
                 optimizer: OptimizerConfig, max_epochs: int, generation: int = 0) -> None:
        super().__init__()
        # Plain values only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters({"num_classes": num_classes, "max_epochs": max_epochs, "generation": generation,
                                   "optimizer": asdict(optimizer)})
        if loss.needs_teacher and teacher is None:
            raise ValueError(f"{type(loss).__name__} needs a teacher")
        self.student = student
        self.loss = loss
        self.teacher = teacher  # plain attribute (not an nn.Module): stays out of the module tree
        self.optimizer_cfg = optimizer
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.teacher.to(self.device)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y, index = batch
        logits = self.student(x)
        teacher = self.teacher(x, index) if self.loss.needs_teacher else None
        loss = self.loss(logits, y, teacher)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y, _ = batch
        logits = self.student(x)
        self.val_acc(logits, y)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), sync_dist=True)  # mean over DDP ranks
        self.log("val/acc", self.val_acc, prog_bar=True)

    def predict_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self.student(batch[0]).float()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Remember how the recipe's learning rate differs from the checkpoint's (a resume after a NaN, say)."""
        old = checkpoint.get("hyper_parameters", {}).get("optimizer", {}).get("lr")
        self._lr_rescale = self.optimizer_cfg.lr / old if old else 1.0

    def on_train_start(self) -> None:
        """Apply a changed learning rate to the restored optimizer and schedule (same shape, new scale)."""
        ratio = getattr(self, "_lr_rescale", 1.0)
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
        opt, sched = build_optimizer(self.student.parameters(), self.optimizer_cfg, self.hparams.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
