"""Lesson 03: scaled dot-product attention.

Legend: B batch, H heads, T query length, S key length, d_k query/key size, d_v value size.
``...`` stands for any batch dimensions (for example ``(B,)`` or ``(B, H)``).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Every query is compared with every key (a dot product), the scores are scaled by 1/sqrt(d_k)
so that their variance does not grow with d_k, turned into weights that sum to 1 over the keys
(softmax), and the output is the weighted average of the values.

Masks are boolean and **True means "may attend"** (the convention of
``torch.nn.functional.scaled_dot_product_attention``).

The lesson builds the function in three steps, each of which is here as a reference for its
exercise: :func:`attention_scores`, :func:`softmax` and :func:`scaled_dot_product_attention`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .utils import check_probability, check_tensor

__all__ = ["attention_scores", "softmax", "scaled_dot_product_attention", "check_attention_inputs"]


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def check_attention_inputs(q, k, v, mask=None) -> None:
    """Raise a ``TypeError``/``ValueError`` that names the shapes when q, k, v, mask do not fit.

    Args:
        q: ``(..., T, d_k)``; k: ``(..., S, d_k)``; v: ``(..., S, d_v)``, all floating point.
        mask: ``None`` or a bool tensor broadcastable to ``(..., T, S)`` (True = may attend).
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x, floating=True)
        if x.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., length, features), got shape {_shape(x)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same feature size d_k to be compared, "
                         f"got q {_shape(q)} (d_k={q.shape[-1]}) and k {_shape(k)} (d_k={k.shape[-1]})")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length S (one value per key), "
                         f"got k {_shape(k)} (S={k.shape[-2]}) and v {_shape(v)} (S={v.shape[-2]})")
    if q.shape[:-2] == k.shape[:-2] == v.shape[:-2]:      # the common case, without broadcasting work
        batch = q.shape[:-2]
    else:
        try:
            batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        except RuntimeError:
            raise ValueError(f"the batch dimensions of q {_shape(q)}, k {_shape(k)} and v {_shape(v)} "
                             f"do not broadcast") from None
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a bool tensor (True = may attend), got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}; "
                            "for a 0/1 mask use mask.bool(), for an additive float mask (0 / -inf) use mask == 0")
        scores_shape = tuple(batch) + (q.shape[-2], k.shape[-2])
        try:
            ok = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"mask of shape {_shape(mask)} cannot broadcast to the scores' shape "
                             f"{scores_shape} (..., T, S)")


def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The scaled scores ``q k^T / sqrt(d_k)``: how well every query matches every key.

    Args:
        q: queries ``(..., T, d_k)``.
        k: keys ``(..., S, d_k)``.

    Returns:
        ``(..., T, S)``: row ``i`` holds query ``i``'s score for every key.
    """
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, d_k) @ (..., d_k, S) -> (..., T, S)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax written out: ``exp(x - max) / sum(exp(x - max))`` along ``dim``.

    Subtracting each row's maximum changes nothing mathematically (it cancels in the ratio)
    but keeps ``exp`` from overflowing: ``exp(1000.)`` is ``inf`` in float32. Equal to
    ``torch.softmax(x, dim)``, which the library uses.
    """
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None,
                                 dropout_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d_k)) v, returning the output and the attention weights.

    Args:
        q: queries ``(..., T, d_k)``.
        k: keys ``(..., S, d_k)``.
        v: values ``(..., S, d_v)``.
        mask: optional bool tensor broadcastable to ``(..., T, S)``; **True = may attend**.
            A query whose keys are all masked gets zero weights and a zero output (never NaN).
        dropout_p: dropout on the weights, applied only when > 0 (pass 0.0 at evaluation).

    Returns:
        ``(output (..., T, d_v), weights (..., T, S))``; each row of ``weights`` sums to 1
        (or to 0 for a fully masked row) before dropout.

    Equal to ``F.scaled_dot_product_attention(q, k, v, attn_mask=mask)``, which does not
    return the weights.
    """
    check_attention_inputs(q, k, v, mask)
    check_probability("dropout_p", dropout_p)
    scores = attention_scores(q, k)                           # (..., T, S)
    if mask is not None:
        blocked = ~mask
        # the most negative finite number, not -inf (a fully masked row would give 0/0 = NaN)
        # and not -1e9 (it overflows float16): safe in every dtype
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)                   # (..., T, S), sums to 1 over the keys
    if mask is not None:
        weights = weights.masked_fill(blocked, 0.0)           # fully masked rows: uniform -> zero
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights                               # (..., T, S) @ (..., S, d_v) -> (..., T, d_v)
