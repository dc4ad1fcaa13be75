"""Lesson 04: multi-head attention.

Legend: B batch, T query length, S key length, D = d_model, H heads, d_k = D / H.

    head_h = Attention(X_q W_q^h, X_k W_k^h, X_v W_v^h)        h = 1..H
    MultiHead(X_q, X_k, X_v) = Concat(head_1, ..., head_H) W_o

The H small projections W_q^h (D x d_k) sit side by side in one D x D matrix, so one
``nn.Linear(D, D)`` computes all heads at once; a reshape then gives each head its own slice.

Masks are boolean, **True = may attend**, broadcastable to ``(B, H, T, S)``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .attention import check_attention_inputs, scaled_dot_product_attention
from .validation import check_flag, check_hidden, check_module, check_positive_int, check_probability, check_tensor

__all__ = ["split_heads", "merge_heads", "project_keys_values", "multi_head_attention_forward", "MultiHeadAttention",
           "fused_attention"]

#: ``keys_values(mha, key, value) -> (k, v)``: where an attention layer gets its keys and values.
KeysValues = Callable[["MultiHeadAttention", torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """``(B, T, D) -> (B, H, T, d_k)``: give each head its own slice of the features.

    Head ``h`` gets the contiguous block of features ``h * d_k : (h + 1) * d_k`` of every
    token, which is what the columns ``h * d_k : (h + 1) * d_k`` of ``w_q``'s output hold.

    Args:
        x: ``(B, T, D)``, contiguous (the output of an ``nn.Linear`` is).
        num_heads: H; ``D`` must be divisible by it.
    """
    check_tensor("x", x)
    if x.dim() != 3:
        raise ValueError(f"split_heads expects (B, T, D), got shape {tuple(x.shape)}")
    check_positive_int("num_heads", num_heads)
    B, T, D = x.shape
    if D % num_heads:
        raise ValueError(f"feature size D={D} is not divisible by num_heads={num_heads}")
    return x.view(B, T, num_heads, D // num_heads).transpose(1, 2)  # (B, T, D) -> (B, T, H, d_k) -> (B, H, T, d_k)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, d_k) -> (B, T, D)``: concatenate the heads' outputs, the inverse of split_heads."""
    check_tensor("x", x)
    if x.dim() != 4:
        raise ValueError(f"merge_heads expects (B, H, T, d_k), got shape {tuple(x.shape)}")
    B, H, T, d_k = x.shape
    return x.transpose(1, 2).reshape(B, T, H * d_k)  # (B, H, T, d_k) -> (B, T, H, d_k) -> (B, T, D)


def project_keys_values(mha: "MultiHeadAttention", key: torch.Tensor, value: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values of every head: ``key, value (B, S, D) -> k, v (B, H, S, d_k)``.

    Where :func:`multi_head_attention_forward` gets its keys and values unless it is given another
    source: lesson 11's key/value cache is one, it projects only the new positions and keeps the others.
    """
    k = split_heads(mha.w_k(key), mha.num_heads)     # (B, S, D) -> (B, H, S, d_k)
    v = split_heads(mha.w_v(value), mha.num_heads)   # (B, S, D) -> (B, H, S, d_k)
    return k, v


def multi_head_attention_forward(mha: "MultiHeadAttention", query: torch.Tensor, key: torch.Tensor,
                                 value: torch.Tensor, mask: torch.Tensor | None = None, *,
                                 need_weights: bool = True, dropout_p: float = 0.0,
                                 keys_values: KeysValues | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The forward pass of ``mha`` written out as a plain function (lesson 04's exercise), which
    :meth:`MultiHeadAttention.forward` calls, as ``nn.MultiheadAttention`` calls
    ``F.multi_head_attention_forward``.

    Project, split into heads, attend in every head at once, merge the heads, project with W^O:

        head_h = Attention(query W_q^h, key W_k^h, value W_v^h),  output = Concat(head_1..head_H) W_o

    Args:
        mha: a :class:`MultiHeadAttention` whose ``w_q, w_k, w_v, w_o`` and ``num_heads`` are used.
        query: ``(B, T, D)``; key, value: ``(B, S, D)``.
        mask: bool, broadcastable to ``(B, H, T, S)``, **True = may attend**.
        need_weights: ``True``: lesson 03's explicit softmax(Q K^T / sqrt(d_k)) V, returning the
            weights; ``False``: PyTorch's fused ``F.scaled_dot_product_attention`` (same result,
            faster), returning ``None`` as weights.
        dropout_p: dropout on the attention weights (pass 0.0 outside training).
        keys_values: a function ``(mha, key, value) -> (k, v)``, each ``(B, H, S, d_k)``; default
            :func:`project_keys_values`. Lesson 11's key/value cache passes itself here.

    Returns:
        ``(output (B, T, D), weights (B, H, T, S) or None)``; equal to ``mha(query, key, value, mask)``
        in eval mode.
    """
    if not isinstance(mha, MultiHeadAttention):
        raise TypeError(f"mha must be a MultiHeadAttention layer (its weights are used), got {type(mha).__name__}")
    mha.check_inputs(query, key, value)
    check_flag("need_weights", need_weights)
    keys_values = project_keys_values if keys_values is None else keys_values
    if not callable(keys_values):
        raise TypeError(f"keys_values must be a function (mha, key, value) -> (k, v), such as a KVCache, "
                        f"got {type(keys_values).__name__}")
    q = split_heads(mha.w_q(query), mha.num_heads)                               # (B, T, D) -> (B, H, T, d_k)
    k, v = keys_values(mha, key, value)                                          # (B, H, S, d_k) each
    if need_weights:
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p)  # (B, H, T, d_k), (B, H, T, S)
    else:
        check_attention_inputs(q, k, v, mask)
        out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p), None
    return mha.w_o(merge_heads(out)), weights                                    # (B, H, T, d_k) -> (B, T, D)


class MultiHeadAttention(nn.Module):
    """Multi-head attention of "Attention Is All You Need", batch first: a holder of the four
    projections whose forward is :func:`multi_head_attention_forward`.

    Args:
        d_model: model size D; must be divisible by ``num_heads``.
        num_heads: number of heads H; each works in d_k = D / H dimensions.
        dropout: dropout on the attention weights during training.
        bias: whether the four projections have biases.

    Shape:
        query ``(B, T, D)``, key and value ``(B, S, D)``, mask bool broadcastable to
        ``(B, H, T, S)`` with **True = may attend** -> output ``(B, T, D)``,
        weights ``(B, H, T, S)``.

    Which kernel runs is a choice, not a side effect of ``train()``/``eval()``: the attribute
    ``need_weights`` (default ``True``) computes the weights explicitly and keeps them, detached,
    in ``last_weights``, so a notebook can draw every head without changing the model;
    ``need_weights = False`` (or :func:`fused_attention`, which ``training.train`` uses) calls
    PyTorch's fused ``F.scaled_dot_product_attention`` (same result, faster) and keeps none.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("num_heads", num_heads)
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}: "
                             f"each head needs d_model / num_heads features")
        self.d_model, self.num_heads, self.d_k = d_model, num_heads, d_model // num_heads
        self.dropout = check_probability("dropout", dropout)
        check_flag("bias", bias)
        self.w_q = nn.Linear(d_model, d_model, bias=bias)
        self.w_k = nn.Linear(d_model, d_model, bias=bias)
        self.w_v = nn.Linear(d_model, d_model, bias=bias)
        self.w_o = nn.Linear(d_model, d_model, bias=bias)
        self.need_weights = True
        self.last_weights: torch.Tensor | None = None

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None, need_weights: bool | None = None,
                keys_values: KeysValues | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query: ``(B, T, D)``.
            key, value: ``(B, S, D)`` (the same tensor as ``query`` for self-attention).
            mask: bool, broadcastable to ``(B, H, T, S)``, **True = may attend**.
            need_weights: explicit path with weights, or the fused kernel (``None``: the layer's
                ``need_weights``).
            keys_values: where keys and values come from (see :func:`multi_head_attention_forward`).

        Returns:
            ``(output (B, T, D), weights (B, H, T, S) or None)``.
        """
        need_weights = self.need_weights if need_weights is None else need_weights
        out, weights = multi_head_attention_forward(self, query, key, value, mask, need_weights=need_weights,
                                                    dropout_p=self.dropout if self.training else 0.0,
                                                    keys_values=keys_values)
        self.last_weights = None if weights is None else weights.detach()
        return out, weights

    def check_inputs(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
        """Raise a clear error unless query ``(B, T, D)``, key and value ``(B, S, D)`` fit the layer:
        float tensors of the weights' dtype, ``D = d_model``, one batch size B, one length S."""
        weight = self.w_q.weight
        for name, x in (("query", query), ("key", key), ("value", value)):
            check_hidden(name, x, self.d_model, weight, "the attention layer")
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(f"key and value must have the same (B, S), "
                             f"got {tuple(key.shape)} and {tuple(value.shape)}")
        if query.shape[0] != key.shape[0]:
            raise ValueError(f"query and key must have the same batch size B, got query {tuple(query.shape)} and "
                             f"key {tuple(key.shape)}: every sequence attends to its own keys")

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, num_heads={self.num_heads}, d_k={self.d_k}, dropout={self.dropout}"


@contextmanager
def fused_attention(model: nn.Module) -> Iterator[None]:
    """Within the ``with`` block every :class:`MultiHeadAttention` of ``model`` uses PyTorch's fused
    kernel (``need_weights = False``): faster, and no weights are kept. Afterwards each layer's own
    setting is back. ``transformer_lib.training.train`` runs its training steps inside it.
    """
    check_module("model", model)
    layers = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    before = [layer.need_weights for layer in layers]
    for layer in layers:
        layer.need_weights = False
    try:
        yield
    finally:
        for layer, setting in zip(layers, before):
            layer.need_weights = setting
