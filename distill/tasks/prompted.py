"""The prompted task: a :class:`~distill.prompts.PromptedViT` student (frozen base, trainable prompt and head).

Registered as ``task: prompted``; its backbone must be ``prompted_vit``. It trains like ``born_again`` (labels for
generation 0, any KD loss from the cache or an online teacher for students) with four differences:

* only the parameters that require gradients reach the optimizer; the base stays frozen and in eval mode;
* ``init: sample | kmeans`` sets the prompt from real token states of the first training batches, once;
* ``gen-k/model.ckpt`` (and the per-epoch resume checkpoint) hold the trained tensors only, plus the base's
  source and sha256 under ``prompted_base``; loading rebuilds the base from its source and refuses another hash;
* inputs are re-normalised from the data module's statistics to the base's, grey repeated, resized.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from distill.config import RecipeError
from distill.losses import CrossEntropy, DistillLoss
from distill.models import create_backbone
from distill.optim import build_optimizer
from distill.prompts import PromptedViT, check_reference, load_prompted, trainable_state
from distill.prompts.checkpoint import REFERENCE_KEY
from distill.spec import GenerationSpec, thaw
from distill.speed import apply_speed
from distill.tasks.base import TASKS, TaskContext
from distill.tasks.born_again import GenerationModule

INIT_IMAGES = 512  # training images whose token states seed a data-initialised prompt


def _prepared(network: nn.Module, spec: GenerationSpec, context: TaskContext) -> PromptedViT:
    if not isinstance(network, PromptedViT):
        raise ValueError(f"task prompted needs backbone prompted_vit (a frozen ViT with prompts), got {spec.label!r}")
    if context.input_stats is not None:
        network.adapter.set_data_stats(*context.input_stats)
    return network


def build_network(spec: GenerationSpec, context: TaskContext) -> PromptedViT:
    """The generation's prompted network: base loaded from its source and hashed, fresh prompt and head."""
    return _prepared(create_backbone(thaw(spec.backbone), context.num_classes, context.in_chans), spec, context)


@TASKS.register("prompted")
class PromptedModule(GenerationModule):
    """A :class:`~distill.tasks.born_again.GenerationModule` whose student is a prompted frozen ViT."""

    @classmethod
    def check_network(cls, spec: GenerationSpec, network: nn.Module) -> None:
        """Preflight: the backbone is a prompted ViT (one line, exit 2, before the run directory exists)."""
        if not isinstance(network, PromptedViT):
            raise RecipeError(f"task prompted needs backbone prompted_vit (a frozen ViT with prompts), got "
                              f"{spec.label!r} (generation {spec.index})")

    @classmethod
    def create(cls, spec: GenerationSpec, context: TaskContext, loss: DistillLoss) -> PromptedModule:
        return cls._build(spec, context, build_network(spec, context), loss)

    @classmethod
    def from_network(cls, spec: GenerationSpec, context: TaskContext, network: nn.Module) -> PromptedModule:
        return cls._build(spec, context, _prepared(network, spec, context), CrossEntropy())

    @classmethod
    def network_from_checkpoint(cls, spec: GenerationSpec, context: TaskContext, path: str | Path) -> nn.Module:
        return apply_speed(load_prompted(build_network(spec, context), path).eval(), context.speed)

    @property
    def network(self) -> PromptedViT:
        """The prompted student (unwrapped from ``torch.compile`` when ``speed.compile`` is on)."""
        return getattr(self.student, "_orig_mod", self.student)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Keep the trained tensors only, and record which base they belong to."""
        checkpoint["state_dict"] = trainable_state(checkpoint["state_dict"], self.network, "student.")
        checkpoint[REFERENCE_KEY] = self.network.reference.as_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse another base; put the (verified) base's tensors back so the strict state-dict load succeeds."""
        check_reference(self.network, checkpoint.get(REFERENCE_KEY), "the resumed checkpoint")
        own = self.state_dict()
        frozen = tuple("student." + p for p in self.network.frozen_prefixes())
        for key, value in own.items():
            if frozen and key.startswith(frozen) and key not in checkpoint["state_dict"]:
                checkpoint["state_dict"][key] = value
        super().on_load_checkpoint(checkpoint)

    def on_train_start(self) -> None:
        """:meth:`prepare_prompt`, then the parent's learning-rate fix."""
        self.prepare_prompt()
        super().on_train_start()

    def prepare_prompt(self) -> None:
        """Initialise the prompt from data (``init: sample | kmeans``) once."""
        network = self.network
        if not bool(network.data_initialised):
            images, seen = [], 0
            for batch in self.trainer.train_dataloader:
                images.append(batch[0])
                seen += len(batch[0])
                if seen >= INIT_IMAGES:
                    break
            network.init_from_data(torch.cat(images)[:INIT_IMAGES].to(self.device), seed=self.hparams.generation)
            if dist.is_available() and dist.is_initialized():  # every rank starts from rank 0's prompt
                for tensor in network.prompt.state_dict().values():
                    dist.broadcast(tensor, 0)

    def configure_optimizers(self):
        params = [p for p in [*self.student.parameters(), *self.loss.parameters()] if p.requires_grad]
        opt, sched = build_optimizer(params, self.optimizer_cfg, self.hparams.max_epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
