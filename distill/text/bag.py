"""``token_bag``: a bag-of-token-embeddings classifier trained from scratch, the smallest network text data feeds.

It reads ``x[:, 0]`` (token ids) and ``x[:, 1]`` (attention mask) of a text batch, averages the embeddings of the
real tokens and classifies the average linearly: a baseline without any pretrained knowledge (a country's region
from its name's word pieces alone), and a fast network for tests of the engine on text.
"""

from __future__ import annotations

import torch
from torch import nn

from distill.models import register_backbone
from distill.text.bases import load_tokenizer


@register_backbone("token_bag")
class TokenBag(nn.Module):
    """Mean of the real tokens' embeddings, then a linear classifier.

    Args:
        num_classes: classes of the data.
        base: a base source whose tokenizer the data uses (``package:...``, a folder, a ``.gguf``); it sets the
            vocabulary size and, through the data module, the tokens this network reads.
        vocab_size: the vocabulary size when no ``base`` is given (then ``data.tokenizer`` tokenises).
        dim: embedding width.
    """

    def __init__(self, num_classes: int, base: str | None = None, vocab_size: int | None = None,
                 dim: int = 32) -> None:
        super().__init__()
        if (base is None) == (vocab_size is None):
            raise ValueError("token_bag needs exactly one of init_args.base (a tokenizer's base) and vocab_size")
        size = len(load_tokenizer(base)) if base is not None else int(vocab_size)
        self.embed = nn.EmbeddingBag(size, dim, mode="sum")
        self.fc = nn.Linear(dim, num_classes)

    def get_classifier(self) -> nn.Module:
        """The linear classifier (timm's contract): its input, the mean embedding, is the ``embedding`` feature."""
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, 3, L)`` long -> ``(B, num_classes)`` logits."""
        if x.ndim != 3 or x.shape[1] != 3 or x.dtype != torch.long:
            raise ValueError(f"token_bag reads text batches (B, 3, L) of token ids and masks, got {tuple(x.shape)} "
                             f"{x.dtype}")
        mask = x[:, 1].to(self.fc.weight.dtype)
        summed = self.embed(x[:, 0], per_sample_weights=mask)
        return self.fc(summed / mask.sum(1, keepdim=True).clamp_min(1))
