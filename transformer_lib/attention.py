"""Lesson 03: scaled dot-product attention.

Legend: B batch, H heads, T query length, S key length, d_k query/key size, d_v value size.
``...`` stands for any batch dimensions (for example ``(B,)`` or ``(B, H)``).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Every query is compared with every key (a dot product), the scores are scaled by 1/sqrt(d_k)
so that their variance does not grow with d_k, turned into weights that sum to 1 over the keys
(softmax), and the output is the weighted average of the values.

Masks are boolean and **True means "may attend"** (the convention of
``torch.nn.functional.scaled_dot_product_attention``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .utils import check_probability, check_tensor


def check_attention_inputs(q, k, v, mask=None) -> None:
    """Raise a ``TypeError``/``ValueError`` that names the shapes when q, k, v, mask do not fit."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, x, floating=True)
        if x.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., length, features), got shape {tuple(x.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same feature size d_k to be compared, "
                         f"got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length S (one value per key), "
                         f"got k {tuple(k.shape)} and v {tuple(v.shape)}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a bool tensor (True = may attend), got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor (True = may attend), got dtype {mask.dtype}; "
                            "for a 0/1 mask use mask.bool(), for an additive float mask use mask == 0")
        try:
            batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        except RuntimeError:
            raise ValueError(f"the batch dimensions of q {tuple(q.shape)}, k {tuple(k.shape)} and "
                             f"v {tuple(v.shape)} do not broadcast") from None
        scores_shape = batch + (q.shape[-2], k.shape[-2])
        try:
            if torch.broadcast_shapes(mask.shape, scores_shape) != scores_shape:
                raise RuntimeError
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(mask.shape)} cannot broadcast to the scores' shape "
                             f"{tuple(scores_shape)} (..., T, S)") from None


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
    """
    check_attention_inputs(q, k, v, mask)
    check_probability("dropout_p", dropout_p)
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)        # (..., T, d_k) @ (..., d_k, S) -> (..., T, S)
    if mask is not None:
        # the most negative finite number, not -inf or -1e9: safe in float16/bfloat16 too
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)                   # (..., T, S), sums to 1 over the keys
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)             # fully masked rows: uniform -> zero
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights                               # (..., T, S) @ (..., S, d_v) -> (..., T, d_v)
