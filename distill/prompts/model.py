"""A prompted student: a frozen timm VisionTransformer, a prompt kind and a new classification head.

``PromptedViT`` keeps timm's backbone contract (``forward_features`` -> tokens, ``forward_head`` -> logits,
``reset_classifier``, ``num_classes``, ``num_features``). Registered as the backbone ``prompted_vit``::

    backbone:
      name: prompted_vit
      init_args:
        base: vit_tiny_patch16_224          # any timm VisionTransformer name
        base_args: {img_size: 32, patch_size: 4, embed_dim: 96, depth: 4, num_heads: 3}
        source: {checkpoint: runs/src/gen-0/model.ckpt}   # or {file: w.safetensors} | {pretrained: true} | {seed: 0}
        prompt: {kind: deep, length: 8}
        init: random                         # or sample / kmeans: from real patch embeddings
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distill.models import register_backbone
from distill.prompts.base import (
    BaseReference,
    FrozenBase,
    InputAdapter,
    describe_source,
    load_base,
    state_sha256,
)
from distill.prompts.kinds import INITS, Geometry, PromptKind, build_kind


class PromptedViT(FrozenBase):
    """A frozen ViT ``base`` with the tokens of ``prompt`` in every block and a trainable ``head``.

    Args:
        base: a timm ``VisionTransformer`` without classifier (``num_classes=0``).
        prompt: the prompt kind (built for this base's geometry).
        num_classes: classifier outputs.
        reference: the base's source and sha256 (recorded in checkpoints instead of the base's weights).
        train_head: train the new head (else it stays at its initialisation).
        train_base: train the base too (full fine-tuning; the checkpoint then holds the base's weights).
        init: ``random`` (VPT's uniform Xavier) or ``sample`` / ``kmeans`` of real token states, done once on the
            first training batches (:meth:`init_from_data`).
    """

    def __init__(self, base: nn.Module, prompt: PromptKind, num_classes: int, reference: BaseReference,
                 train_head: bool = True, train_base: bool = False, init: str = "random") -> None:
        super().__init__()
        if init not in INITS:
            raise ValueError(f"prompted_vit init must be one of {', '.join(INITS)}, got {init!r}")
        if not (train_head or train_base or any(p.requires_grad for p in prompt.parameters())):
            raise ValueError(f"prompted_vit trains nothing: prompt kind {type(prompt).__name__} has no parameters, "
                             "train_head and train_base are false")
        self.base = base
        self.prompt = prompt
        self.adapter = InputAdapter(base)
        self.num_features = base.num_features
        self.num_classes = num_classes
        self.head = nn.Linear(base.num_features, num_classes) if num_classes else nn.Identity()
        self.reference = reference
        self.train_base = bool(train_base)
        self.init = init
        # 1 once the prompt was set from data (checkpointed, so a resumed run does not redo it)
        self.register_buffer("data_initialised", torch.tensor(init == "random"))
        self.base.requires_grad_(self.train_base)
        self.head.requires_grad_(bool(train_head))
        self.base.train(False)

    # -- the frozen part ------------------------------------------------------------------------------------------
    @property
    def trains_base(self) -> bool:
        return self.train_base

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and total parameters."""
        params = list(self.parameters())
        return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}

    # -- timm contract --------------------------------------------------------------------------------------------
    @property
    def num_prefix_tokens(self) -> int:
        return self.base.num_prefix_tokens

    def _patches(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.base.patch_embed(self.adapter(x))
        return patches.flatten(1, 2) if patches.dim() == 4 else patches  # dynamic_img_size gives NHWC

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after the last block and norm: ``[prefix | before | patches | after]``, ``(B, T, D)``."""
        patches = self.prompt.map_patches(self._patches(x))
        context = patches.mean(1)
        t = self.base.norm_pre(self.base.patch_drop(self.base._pos_embed(patches)))  # no position embedding on prompts
        p, nb, na = self.base.num_prefix_tokens, self.prompt.n_before, self.prompt.n_after
        n = t.shape[1] - p
        if nb + na:
            first = self.prompt.tokens(0, context).expand(t.shape[0], -1, -1).to(t.dtype)
            t = torch.cat([t[:, :p], first[:, :nb], t[:, p:], first[:, nb:]], dim=1)
        for i, block in enumerate(self.base.blocks):
            new = self.prompt.tokens(i, context) if i and nb + na else None
            if new is not None:
                new = new.expand(t.shape[0], -1, -1).to(t.dtype)
                t = torch.cat([t[:, :p], new[:, :nb], t[:, p + nb:p + nb + n], new[:, nb:]], dim=1)
            t = block(t)
        return self.base.norm(t)

    def strip_prompts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prefix and patch tokens only (what the base's pooling sees)."""
        p, nb, na = self.base.num_prefix_tokens, self.prompt.n_before, self.prompt.n_after
        return torch.cat([tokens[:, :p], tokens[:, p + nb:tokens.shape[1] - na]], dim=1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (the base's ``global_pool``) over prefix and patch tokens, never prompt tokens, then the head."""
        pooled = self.base.forward_head(self.strip_prompts(x), pre_logits=True)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh (trainable) head with ``num_classes`` outputs; ``global_pool`` is passed to the base."""
        if global_pool is not None:
            self.base.reset_classifier(0, global_pool)
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    # -- initialisation from data ---------------------------------------------------------------------------------
    @torch.no_grad()
    def token_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Patch tokens of ``x`` without prompts: the embeddings, then the input of blocks 1..depth-1, ``(M, D)``."""
        patches = self.prompt.map_patches(self._patches(x))
        t = self.base.norm_pre(self.base.patch_drop(self.base._pos_embed(patches)))
        p = self.base.num_prefix_tokens
        states = [patches.flatten(0, 1)]
        for block in list(self.base.blocks)[:-1]:
            t = block(t)
            states.append(t[:, p:].flatten(0, 1))
        return states

    def init_from_data(self, images: torch.Tensor, seed: int = 0) -> None:
        """Set the prompt's static tokens from real token states of ``images`` (``init: sample | kmeans``)."""
        if bool(self.data_initialised):
            return
        was = self.training
        self.eval()
        generator = torch.Generator().manual_seed(seed)
        states = [s.float().cpu() for s in self.token_states(images)]
        self.prompt.cpu().init_from_data(states, self.init, generator)
        self.prompt.to(images.device)
        self.data_initialised.fill_(True)
        self.train(was)


@register_backbone("prompted_vit")
def prompted_vit(num_classes: int, base: str = "vit_tiny_patch16_224", base_args: dict[str, Any] | None = None,
                 source: dict[str, Any] | None = None, prompt: dict[str, Any] | str = "shallow",
                 init: str = "random", train_head: bool = True, train_base: bool = False,
                 base_sha256: str | None = None, in_chans: int = 3) -> PromptedViT:
    """Build a :class:`PromptedViT`: load and hash the base, then add the prompt and a head.

    Args:
        num_classes: classes of the target task.
        base: timm VisionTransformer name.
        base_args: its keyword arguments (``img_size``, ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``...).
        source: where the base's weights come from (see :mod:`distill.prompts.base`); default ``{seed: 0}``.
        prompt: ``{kind: NAME, ...its arguments}`` (see :mod:`distill.prompts.kinds`).
        init: ``random``, ``sample`` or ``kmeans``.
        train_head: train the new classification head.
        train_base: full fine-tuning of the base as well.
        base_sha256: the base's expected sha256; a base that hashes differently is refused.
        in_chans: input channels of the data (1 is repeated to 3; the base always takes 3).
    """
    model = load_base(base, base_args, source)
    sha = state_sha256(model)
    if base_sha256 is not None and sha != base_sha256:
        raise ValueError(f"prompted_vit base {base} from {describe_source(source)} has sha256 {sha[:12]}..., "
                         f"not base_sha256 {base_sha256[:12]}...")
    patch = model.patch_embed.patch_size
    geometry = Geometry(dim=model.num_features, depth=len(model.blocks), patch_numel=3 * patch[0] * patch[1])
    kind = build_kind(prompt, geometry)
    return PromptedViT(model, kind, num_classes, BaseReference(describe_source(source), sha), train_head,
                       train_base, init)
