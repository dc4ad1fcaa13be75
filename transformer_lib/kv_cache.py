"""Lesson 11: the key/value cache for fast generation.

Generating token t+1 with a decoder re-reads tokens 0..t. Without a cache every step recomputes
the keys and values of all earlier tokens in every layer, so producing n tokens costs O(n^2)
projections. Keys and values of earlier tokens never change (the causal mask means a token
never sees later ones), so each layer can keep them and compute only the new token's.

A :class:`KVCache` belongs to one attention layer:

* self-attention (``static=False``): every step appends the new keys/values;
* cross-attention (``static=True``): keys/values come from the encoder memory, are computed at
  the first step and reused unchanged afterwards.

Legend: B batch, H heads, S cached length, d_k head size.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .validation import check_flag, check_positive_int, check_tensor


@dataclass
class KVCache:
    """Keys and values ``(B, H, S, d_k)`` already computed by one attention layer."""

    static: bool = False
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None

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
                             f"cache (model.new_cache())")
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

    def reorder(self, index: torch.Tensor) -> None:
        self.self_attn.reorder(index)
        if self.cross_attn is not None:
            self.cross_attn.reorder(index)


def new_cache(num_layers: int, cross: bool = True) -> list[LayerCache]:
    """An empty cache for a decoder stack of ``num_layers`` layers."""
    check_positive_int("num_layers", num_layers)
    return [LayerCache.new(cross=cross) for _ in range(num_layers)]


def cache_length(cache: list[LayerCache] | None) -> int:
    """Number of positions already in a stack's cache (0 for ``None`` or an empty cache)."""
    if cache is not None and not (isinstance(cache, (list, tuple)) and all(isinstance(c, LayerCache) for c in cache)):
        raise TypeError(f"cache must be a list of LayerCache, one per layer (model.new_cache()), "
                        f"got {type(cache).__name__}")
    return 0 if not cache else len(cache[0].self_attn)


def cache_nbytes(cache: list[LayerCache] | None) -> int:
    """Bytes held by every key and value in a stack's cache (self- and cross-attention):
    ``2 * num_layers * B * H * S * d_k`` numbers for the self-attention part."""
    cache_length(cache)                                   # checks that it is a list of LayerCache
    total = 0
    for layer in cache or []:
        total += layer.self_attn.nbytes + (layer.cross_attn.nbytes if layer.cross_attn is not None else 0)
    return total


def reorder_cache(cache: list[LayerCache] | None, index: torch.Tensor) -> None:
    """Keep the batch rows ``index`` in every layer's cache."""
    cache_length(cache)                                   # checks that it is a list of LayerCache
    for layer in cache or []:
        layer.reorder(index)
