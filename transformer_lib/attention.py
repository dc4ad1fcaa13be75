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

from .validation import check_bool_mask, check_int, check_probability, check_same_dtype, check_tensor

__all__ = ["attention_scores", "softmax", "scaled_dot_product_attention", "check_attention_inputs",
           "check_mask_shape"]


def _shape(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def check_attention_inputs(q, k, v, mask=None) -> None:
    """Raise a ``TypeError``/``ValueError`` that names the shapes when q, k, v, mask do not fit.

    Args:
        q: ``(..., T, d_k)``; k: ``(..., S, d_k)``; v: ``(..., S, d_v)``, all floating point
            and of one dtype.
        mask: ``None`` or a bool tensor broadcastable to ``(..., T, S)`` (True = may attend).
            A mask whose first dimension has the batch's size but would be read as another
            dimension of the same size (a ``(B, S)`` padding mask when ``B == T``) is an
            error, unless both readings mean the same (see :func:`check_mask_shape`).
    """
    _check_q_k(q=q, k=k, v=v)
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
        check_bool_mask("mask", mask)
        check_mask_shape(mask, tuple(batch) + (q.shape[-2], k.shape[-2]))


def _check_q_k(**tensors) -> None:
    """q ``(..., T, d_k)`` and k ``(..., S, d_k)`` (and v): float tensors of one dtype, one d_k."""
    q, k = tensors["q"], tensors["k"]
    for name, x in tensors.items():
        check_tensor(name, x, floating=True)
        if x.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., length, features), got shape {_shape(x)}")
    check_same_dtype(**tensors)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same feature size d_k to be compared, "
                         f"got q {_shape(q)} (d_k={q.shape[-1]}) and k {_shape(k)} (d_k={k.shape[-1]})")


def _dimension_names(n: int) -> list[str]:
    """Names of the scores' dimensions: ``(B, H, T, S)``, ``(B, T, S)``, ``(T, S)``..."""
    batch = {0: [], 1: ["B"], 2: ["B", "H"]}.get(n - 2, [f"dim {i}" for i in range(n - 2)])
    return batch + ["T", "S"]


def check_mask_shape(mask: torch.Tensor, scores_shape: tuple[int, ...]) -> None:
    """The bool ``mask`` must broadcast to ``scores_shape`` ``(..., T, S)``, and mean one thing.

    Broadcasting lines shapes up from the right, so a mask with fewer dimensions than the
    scores has its first dimension read as a later one: a ``(B, S)`` padding mask is read as
    ``(T, S)``, one row per query. When B != T that fails to broadcast; when B == T it would
    be silently wrong, so it is an error too, unless the two readings mean the same (every
    row equal) or the mask is causal (``causal_mask``: the usual ``(T, S)`` mask, whose rows
    hold 1, 2, 3, ... allowed keys). The check looks at the mask's values only in that
    ambiguous case. One padding mask it cannot tell from a causal one: right padding whose
    lengths happen to be exactly 1, 2, ..., T in batch order.
    """
    missing = len(scores_shape) - mask.dim()                   # leading dimensions the mask lacks
    ok = missing >= 0 and all(m in (1, s) for m, s in zip(mask.shape, scores_shape[missing:]))  # broadcasts
    batch_first = (missing > 0 and mask.dim() >= 2 and len(scores_shape) > 2
                   and mask.shape[0] == scores_shape[0] > 1)   # its first dimension may be meant as B
    if ok and (not batch_first or (mask.dim() == 2 and _is_causal(mask)) or _same_along_first_dim(mask)):
        return
    names = _dimension_names(len(scores_shape))
    read_as = names[missing] if missing > 0 else ""
    if not ok and not batch_first:
        raise ValueError(f"mask of shape {_shape(mask)} cannot broadcast to the scores' shape "
                         f"{tuple(scores_shape)} (..., T, S)")
    meant = "(B, " + ", ".join(names[len(names) - mask.dim() + 1:]) + ")"   # what a batch-first mask means
    as_batch = "mask[:" + ", None" * missing + "]"            # (B, S) -> (B, 1, 1, S), (B, T, S) -> (B, 1, T, S)
    fix = (f"use padding_mask(ids, pad_id), which gives (B, 1, 1, S), or {as_batch}" if mask.dim() == 2 else
           f"use {as_batch}, of shape {tuple(mask.shape[:1]) + (1,) * missing + tuple(mask.shape[1:])}")
    if not ok:
        raise ValueError(f"mask of shape {_shape(mask)} cannot broadcast to the scores' shape {tuple(scores_shape)} "
                         f"(..., T, S). A mask lines up with the scores from the right, so its first dimension is "
                         f"read as {read_as}, not as the batch B. For a mask of shape {meant}, {fix}")
    per_query = "mask[" + ", ".join(["None"] * missing) + "]"
    raise ValueError(
        f"mask of shape {_shape(mask)} is ambiguous for scores of shape {tuple(scores_shape)} "
        f"({', '.join(names)}): a mask lines up with the scores from the right, so its first dimension is read "
        f"as {read_as} ({mask.shape[0]}), but the batch B has the same size, and a mask of shape {meant} would "
        f"be silently misread. If yours is one, {fix}; if its first dimension really is {read_as}, say so "
        f"with {per_query}, of shape {tuple([1] * missing + list(mask.shape))}")


def _same_along_first_dim(mask: torch.Tensor) -> bool:
    return bool((mask == mask[:1]).all())


def _is_causal(mask: torch.Tensor) -> bool:
    """Is the 2-D ``mask`` lower-triangular with its first row's offset (``causal_mask``)?"""
    offset = int(mask[0].sum()) - 1
    return torch.equal(mask, torch.ones_like(mask).tril(offset))


def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The scaled scores ``q k^T / sqrt(d_k)``: how well every query matches every key.

    Args:
        q: queries ``(..., T, d_k)``.
        k: keys ``(..., S, d_k)``.

    Returns:
        ``(..., T, S)``: row ``i`` holds query ``i``'s score for every key.
    """
    _check_q_k(q=q, k=k)
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, d_k) @ (..., d_k, S) -> (..., T, S)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax written out: ``exp(x - max) / sum(exp(x - max))`` along ``dim``.

    Subtracting each row's maximum changes nothing mathematically (it cancels in the ratio)
    but keeps ``exp`` from overflowing: ``exp(1000.)`` is ``inf`` in float32. Equal to
    ``torch.softmax(x, dim)``, which the library uses.
    """
    check_tensor("x", x, floating=True)
    n = max(x.dim(), 1)
    check_int("dim", dim, -n, n - 1, hint=f"a dimension of x, which has shape {tuple(x.shape)}")
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
