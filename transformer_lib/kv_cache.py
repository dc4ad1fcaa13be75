"""Lesson 11: the key/value cache for fast generation.

Legend: B batch, H heads, S cached length, d_k head size, T new positions.

Generating token t+1 with a decoder re-reads tokens 0..t. Without a cache every step recomputes
the keys and values of all earlier tokens in every layer, so producing n tokens costs O(n^2)
projections. Keys and values of earlier tokens never change (the causal mask means a token
never sees later ones), so each layer can keep them and compute only the new token's.

The cache is an addition to the layers of lessons 04-07, which know nothing of it:

* a :class:`KVCache` belongs to one attention layer and is where that layer gets its keys and
  values (``MultiHeadAttention(..., keys_values=cache)``, lesson 04's hook): self-attention
  (``static=False``) appends the new positions' keys and values; cross-attention
  (``static=True``) computes the encoder memory's once, at the first step, and reuses them;
* a :class:`LayerCache` holds a decoder layer's two, a :class:`DecoderCache` one per layer of a
  stack. ``Transformer.decode``, ``Decoder`` and ``GPT`` take it as ``cache=`` and pass each
  layer its own; ``len(cache)`` positions are already in it, so new positions continue after them.

:func:`new_cache` makes an empty one for a model; :func:`kv_cache_step` is the lesson's exercise,
one generation step of a single attention layer written out.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .decoder import Decoder
from .multi_head_attention import MultiHeadAttention, multi_head_attention_forward, project_keys_values
from .validation import check_flag, check_hidden, check_positive_int, check_tensor

__all__ = ["KVCache", "LayerCache", "DecoderCache", "new_cache", "kv_cache_step"]


@dataclass
class KVCache:
    """Keys and values ``(B, H, S, d_k)`` already computed by one attention layer.

    Call it as the layer's ``keys_values``: ``cache(mha, key, value) -> (k, v)`` projects the new
    positions, appends them and returns all of them (a static cache returns the stored ones).
    """

    static: bool = False
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None

    def __call__(self, mha: MultiHeadAttention, key: torch.Tensor, value: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.static and self.k is not None:
            return self.k, self.v                                  # the memory's keys and values, computed once
        return self.update(*project_keys_values(mha, key, value))  # (B, H, S_cached + T, d_k) each

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    @property
    def nbytes(self) -> int:
        """Memory held by the cached keys and values, in bytes."""
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new ``k, v`` (append, or keep for a static cache) and return all of them."""
        for name, x in (("k", k), ("v", v)):
            check_tensor(name, x, ndim=4, floating=True)
        if k.shape[:3] != v.shape[:3]:
            raise ValueError(f"k (B, H, S, d_k) and v (B, H, S, d_v) must agree on B, H and S, got k {tuple(k.shape)} "
                             f"and v {tuple(v.shape)}")
        grows = self.k is not None and not self.static
        if grows and (k.shape[:2] != self.k.shape[:2] or k.shape[-1] != self.k.shape[-1]):
            raise ValueError(f"the cache holds keys of shape {tuple(self.k.shape)} (B, H, S, d_k), the new keys have "
                             f"shape {tuple(k.shape)}: B, H and d_k must stay the same. A new batch needs a new "
                             f"cache (new_cache(model))")
        if self.k is None or self.static:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=-2)  # (B, H, S, d_k) + (B, H, T, d_k) -> (B, H, S+T, d_k)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (beam search reorders its hypotheses every step)."""
        check_tensor("index", index, ndim=1, floating=False)
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


@dataclass
class LayerCache:
    """The caches of one decoder layer: its self-attention and (if any) its cross-attention."""

    self_attn: KVCache
    cross_attn: KVCache | None = None

    @classmethod
    def new(cls, cross: bool = True) -> "LayerCache":
        check_flag("cross", cross)
        return cls(self_attn=KVCache(), cross_attn=KVCache(static=True) if cross else None)

    @property
    def nbytes(self) -> int:
        return self.self_attn.nbytes + (0 if self.cross_attn is None else self.cross_attn.nbytes)

    def reorder(self, index: torch.Tensor) -> None:
        self.self_attn.reorder(index)
        if self.cross_attn is not None:
            self.cross_attn.reorder(index)


class DecoderCache:
    """The caches of a decoder stack, one :class:`LayerCache` per layer.

    ``len(cache)`` is the number of positions already in it; ``cache.nbytes`` the memory it holds
    (``2 * num_layers * B * H * S * d_k`` numbers for the self-attention part).
    """

    def __init__(self, num_layers: int, cross: bool = True):
        check_positive_int("num_layers", num_layers)
        self.layers = [LayerCache.new(cross=cross) for _ in range(num_layers)]

    def __len__(self) -> int:
        return len(self.layers[0].self_attn)

    def __getitem__(self, i: int) -> LayerCache:
        return self.layers[i]

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` in every layer's cache."""
        for layer in self.layers:
            layer.reorder(index)

    def __repr__(self) -> str:
        return f"DecoderCache({len(self.layers)} layers, {len(self)} positions, {self.nbytes:,} bytes)"


def new_cache(model: nn.Module) -> DecoderCache:
    """An empty cache for the decoder stack of ``model``: a ``Transformer``, a ``GPT`` (anything
    with a ``decoder``) or a :class:`~transformer_lib.decoder.Decoder` itself."""
    decoder = getattr(model, "decoder", model)
    if not isinstance(decoder, Decoder):
        raise TypeError(f"new_cache needs a model with a decoder stack (Transformer, GPT) or a Decoder, "
                        f"got {type(model).__name__}")
    return DecoderCache(len(decoder.layers), cross=decoder.layers[0].cross_attn is not None)


def kv_cache_step(attn: MultiHeadAttention, x: torch.Tensor, past_k: torch.Tensor,
                  past_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One generation step of causal self-attention with a key/value cache (lesson 11's exercise).

    Args:
        attn: the layer's :class:`~transformer_lib.multi_head_attention.MultiHeadAttention`.
        x: ``(B, t + 1, D)`` the inputs of every token so far, the newest last.
        past_k, past_v: ``(B, H, t, d_k)`` keys and values of the first ``t`` tokens.

    Returns:
        ``(out (B, 1, D), k (B, H, t + 1, d_k), v (B, H, t + 1, d_k))``: the newest token's
        output and the cache with its key and value appended. Only the newest token is
        projected: the earlier keys and values are read from the cache, not recomputed.
    """
    if not isinstance(attn, MultiHeadAttention):
        raise TypeError(f"attn must be a MultiHeadAttention layer, got {type(attn).__name__}")
    check_hidden("x", x, attn.d_model, attn.w_q.weight, "the attention layer", length="t + 1")
    B, t = x.shape[0], x.shape[1] - 1
    for name, past in (("past_k", past_k), ("past_v", past_v)):
        check_tensor(name, past, ndim=4, floating=True)
        if tuple(past.shape) != (B, attn.num_heads, t, attn.d_k):
            raise ValueError(f"{name} must be (B, H, t, d_k) = {(B, attn.num_heads, t, attn.d_k)} for x of shape "
                             f"{tuple(x.shape)} (t = the tokens before the newest), got {tuple(past.shape)}")
    cache = KVCache(k=past_k, v=past_v)
    x_new = x[:, -1:]                                                       # (B, 1, D)
    # the newest token may see every key: no mask
    out, _ = multi_head_attention_forward(attn, x_new, x_new, x_new, keys_values=cache)   # (B, 1, D)
    return out, cache.k, cache.v                                            # (B, H, t + 1, d_k) each
