"""Storage formats of the soft-label cache (recipe key ``cache.format``): how one view's teacher scores are stored.

A format turns a batch of float32 logits ``(B, C)`` into rows of one numpy dtype (:meth:`CacheFormat.encode`) and
rows back into float32 logits (:meth:`CacheFormat.decode`). Reading goes through torch tensors
(:meth:`CacheFormat.tensors` then :meth:`CacheFormat.decode_tensors`), so the same decoding runs on rows gathered from
the memory map and on rows held on a GPU.

* ``full``: the logits themselves, float16 (default) or float32 (``cache.dtype``): ``C * 2`` or ``C * 4`` bytes a view.
* ``topk``: the ``k`` largest log-probabilities as float16 and their class indices as int16: ``4 k`` bytes a view
  (40 bytes for k = 10, whatever the number of classes), the rest of the probability mass spread evenly over the
  other classes (formula in :class:`TopKFormat`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from distill.cache.manifest import CacheError
from distill.registry import Registry

CACHE_DTYPES = {"float16": np.float16, "float32": np.float32}
INT16_MAX = np.iinfo(np.int16).max
FLOAT16_MIN = float(np.finfo(np.float16).min)


class CacheFormat:
    """Base of the storage formats.

    Args:
        num_classes: number of classes ``C``.
        dtype: value dtype name (``cache.dtype``; formats with a fixed value dtype ignore it).
        k: the format's size parameter (``cache.topk``) for formats that take one (:attr:`takes_k`).
    """

    takes_k: bool = False

    def __init__(self, num_classes: int, dtype: str = "float16", k: int | None = None) -> None:
        self.num_classes = int(num_classes)
        self.dtype, self.k = dtype, k

    @property
    def value_dtype(self) -> str:
        """Dtype name of the stored score values (recorded as the manifest's ``dtype``)."""
        return self.dtype

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype of one stored row."""
        raise NotImplementedError

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Trailing shape of one view's row in the stored array (``(C,)``, or ``()`` for a structured row)."""
        raise NotImplementedError

    @property
    def bytes_per_view(self) -> int:
        """Bytes one (view, sample) takes in the stored array."""
        return int(self.numpy_dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64)))

    def encode(self, logits: torch.Tensor) -> np.ndarray:
        """Rows to store for ``(B, C)`` logits."""
        raise NotImplementedError

    def tensors(self, rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Stored rows (numpy, any leading shape) as the torch tensors :meth:`decode_tensors` takes (no copy)."""
        raise NotImplementedError

    def decode_tensors(self, *parts: torch.Tensor) -> torch.Tensor:
        """float32 ``(..., C)`` logits from the tensors of :meth:`tensors` (on any device)."""
        raise NotImplementedError

    def decode(self, rows: np.ndarray) -> torch.Tensor:
        """float32 ``(..., C)`` logits of stored rows."""
        return self.decode_tensors(*self.tensors(np.ascontiguousarray(rows)))


FORMATS: Registry[type[CacheFormat]] = Registry("cache.format")


@FORMATS.register("full")
class FullFormat(CacheFormat):
    """The teacher's logits as they are, rounded to ``dtype`` (float16: ~3 significant digits, enough for a softmax)."""

    def __init__(self, num_classes: int, dtype: str = "float16", k: int | None = None) -> None:
        if dtype not in CACHE_DTYPES:
            raise CacheError(f"cache.dtype must be one of {sorted(CACHE_DTYPES)}, got {dtype!r}")
        super().__init__(num_classes, dtype, None)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(CACHE_DTYPES[self.dtype])

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (self.num_classes,)

    def encode(self, logits: torch.Tensor) -> np.ndarray:
        return logits.detach().float().cpu().numpy().astype(self.numpy_dtype)

    def tensors(self, rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy(rows),)

    def decode_tensors(self, *parts: torch.Tensor) -> torch.Tensor:
        return parts[0].float()


@FORMATS.register("topk")
class TopKFormat(CacheFormat):
    """Top-k log-probabilities (float16) and their classes (int16); the remaining mass spread over the other classes.

    With teacher logits ``z``, ``p = softmax(z)`` and ``S`` the ``k`` classes of largest ``p``, a view stores
    ``l_i = fp16(log p_i)`` and ``i`` for ``i in S``. Reading reconstructs

    ``q_i = exp(l_i)`` for ``i in S``,   ``q_j = max(1 - sum_{i in S} exp(l_i), eps) / (C - k)`` for ``j not in S``,

    ``p_hat = q / sum_c q_c``, and returns ``log p_hat`` as the "logits" (so ``softmax`` of them is ``p_hat``, and a
    temperature ``T`` gives ``p_hat^(1/T)`` normalised, as it gives ``p^(1/T)`` for the full logits). The floor
    ``eps = 1e-6`` keeps every log-probability finite when float16 rounding makes the top-k mass reach 1; the final
    normalisation makes ``p_hat`` sum to 1 despite that rounding. Everything is computed in log space. With
    ``k = C`` there is no spread term and ``p_hat`` equals ``p`` up to float16 rounding of the log-probabilities
    (relative error about 1e-3 per probability); for ``k < C`` the spread mass inherits the rounding of the top-k
    mass, an absolute error of a few 1e-4.
    """

    takes_k = True
    EPS = 1e-6

    def __init__(self, num_classes: int, dtype: str = "float16", k: int | None = None) -> None:
        super().__init__(num_classes, "float16", k)
        if k is None or not 1 <= int(k) <= num_classes:
            raise CacheError(f"cache.topk must be in [1, {num_classes}] (the number of classes), got {k}")
        if num_classes > INT16_MAX + 1:
            raise CacheError(f"cache.format topk stores class indices as int16: at most {INT16_MAX + 1} classes, "
                             f"got {num_classes}")
        self.k = int(k)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype([("logp", np.float16, (self.k,)), ("index", np.int16, (self.k,))])

    @property
    def row_shape(self) -> tuple[int, ...]:
        return ()

    def encode(self, logits: torch.Tensor) -> np.ndarray:
        logp = F.log_softmax(logits.detach().float(), dim=-1)
        values, index = logp.topk(self.k, dim=-1)
        rows = np.empty(values.shape[:-1], dtype=self.numpy_dtype)
        rows["logp"] = values.clamp_min(FLOAT16_MIN).cpu().numpy().astype(np.float16)
        rows["index"] = index.cpu().numpy().astype(np.int16)
        return rows

    def tensors(self, rows: np.ndarray) -> tuple[torch.Tensor, ...]:
        return torch.from_numpy(np.ascontiguousarray(rows["logp"])), torch.from_numpy(np.ascontiguousarray(
            rows["index"]))

    def decode_tensors(self, *parts: torch.Tensor) -> torch.Tensor:
        logp, index = parts[0].float(), parts[1].long()
        c, k = self.num_classes, self.k
        if k == c:
            out = torch.empty(*logp.shape[:-1], c, dtype=torch.float32, device=logp.device)
            out.scatter_(-1, index, logp)
            return out - torch.logsumexp(out, dim=-1, keepdim=True)
        rest = (1 - logp.exp().sum(dim=-1, keepdim=True)).clamp_min(self.EPS)  # mass outside the top k
        log_rest_each = rest.log() - np.log(c - k)
        out = log_rest_each.expand(*logp.shape[:-1], c).contiguous()
        out.scatter_(-1, index, logp)
        log_z = torch.logaddexp(torch.logsumexp(logp, dim=-1, keepdim=True), rest.log())  # log sum_c q_c
        return out - log_z


def build_format(name: str, num_classes: int, dtype: str, k: int | None) -> CacheFormat:
    """The registered format ``name`` for ``num_classes`` classes (``k`` is ignored by formats without one)."""
    return FORMATS.get(name)(num_classes, dtype, k)
