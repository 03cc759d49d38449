"""The prompted language-model task: a :class:`~distill.text.prompted.PromptedLM` student (frozen HF base, trainable
prompt and head) on a text data module.

Registered as ``task: prompted_lm``; its backbone must be ``prompted_lm``. It is the ``prompted`` task (the ViT's)
with a language model: only what requires gradients reaches the optimizer; ``gen-k/model.ckpt`` and the resume
checkpoint hold the trained tensors plus the base's reference (``source``, ``sha256``, ``kind``) under
``prompted_base``; resuming refuses another base hash, and loading rebuilds the base from its source (which verifies
its hash) before the checkpoint's own check. Instead of a data initialisation it writes ``gen-k/prompt_tokens.json``:
each block-0 prompt vector's nearest vocabulary token and cosine at the ``start`` and the ``end`` of training.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from distill.config import RecipeError
from distill.io import atomic_write_json
from distill.losses import CrossEntropy, DistillLoss
from distill.models import create_backbone
from distill.prompts import load_prompted
from distill.spec import GenerationSpec, thaw
from distill.speed import apply_speed
from distill.tasks.base import TASKS, TaskContext
from distill.tasks.prompted import PromptedModule
from distill.text.prompted import PromptedLM

REPORT = "prompt_tokens.json"


def _checked(network: nn.Module, spec: GenerationSpec) -> PromptedLM:
    if not isinstance(network, PromptedLM):
        raise RecipeError(f"task prompted_lm needs backbone prompted_lm (a frozen language model with prompts), got "
                          f"{spec.label!r} (generation {spec.index})")
    return network


def build_network(spec: GenerationSpec, context: TaskContext) -> PromptedLM:
    """The generation's prompted LM: base loaded from its source and verified, fresh prompt and scorer."""
    return _checked(create_backbone(thaw(spec.backbone), context.num_classes, context.in_chans), spec)


@TASKS.register("prompted_lm")
class PromptedLMModule(PromptedModule):
    """A :class:`~distill.tasks.prompted.PromptedModule` whose student is a prompted language model."""

    @classmethod
    def check_network(cls, spec: GenerationSpec, network: nn.Module) -> None:
        """Preflight: the backbone is a prompted LM (one line, exit 2, before the run directory exists)."""
        _checked(network, spec)

    @classmethod
    def create(cls, spec: GenerationSpec, context: TaskContext, loss: DistillLoss) -> PromptedLMModule:
        return cls._build(spec, context, build_network(spec, context), loss)

    @classmethod
    def from_network(cls, spec: GenerationSpec, context: TaskContext, network: nn.Module) -> PromptedLMModule:
        return cls._build(spec, context, _checked(network, spec), CrossEntropy())

    @classmethod
    def network_from_checkpoint(cls, spec: GenerationSpec, context: TaskContext, path: str | Path) -> nn.Module:
        return apply_speed(load_prompted(build_network(spec, context), path).eval(), context.speed)

    def _report(self, when: str) -> None:
        """Add ``when``'s nearest tokens to ``gen-k/prompt_tokens.json`` (rank 0; a resumed run keeps its start)."""
        if not self.trainer.is_global_zero:
            return
        path = Path(self.trainer.default_root_dir) / REPORT
        report = {} if when == "start" else self._read(path)
        if when == "start" and path.is_file():
            return
        report[when] = self.network.nearest_tokens()
        atomic_write_json(path, report)

    @staticmethod
    def _read(path: Path) -> dict:
        return json.loads(path.read_text()) if path.is_file() else {}

    def prepare_prompt(self) -> None:
        """Record where the prompt starts (its init is done when the network is built)."""
        self._report("start")

    def on_train_end(self) -> None:
        """Record where the prompt ended."""
        self._report("end")
