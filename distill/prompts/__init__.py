"""Prompt-tuned students: soft prompts on a frozen timm VisionTransformer (see ``docs/prompts.md``).

* :mod:`~distill.prompts.kinds` -- the registered prompt kinds (``PROMPTS``): none, shallow, deep, around,
  input_dependent, input_map;
* :mod:`~distill.prompts.base` -- the frozen base: its source, its sha256, the input it expects;
* :mod:`~distill.prompts.model` -- :class:`PromptedViT` and the ``prompted_vit`` backbone;
* :mod:`~distill.prompts.checkpoint` -- checkpoints that hold what trained plus a reference to the base.
"""

from distill.prompts.base import BaseMismatchError, BaseReference, InputAdapter, load_base, state_sha256
from distill.prompts.checkpoint import check_reference, load_prompted, trainable_state
from distill.prompts.kinds import PROMPTS, Geometry, PromptKind, build_kind
from distill.prompts.model import PromptedViT, prompted_vit

__all__ = ["PROMPTS", "BaseMismatchError", "BaseReference", "Geometry", "InputAdapter", "PromptKind", "PromptedViT",
           "build_kind", "check_reference", "load_base", "load_prompted", "prompted_vit", "state_sha256",
           "trainable_state"]
