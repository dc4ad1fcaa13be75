"""Lesson 06: the decoder layer and the decoder stack.

Legend: B batch, T target length, S source (memory) length, D = d_model, H heads.

A decoder layer has three sub-layers, each with a residual connection and a LayerNorm:

1. masked self-attention over the target: the causal mask stops position t from seeing
   positions after t, so training on a whole sentence at once cannot cheat;
2. cross-attention: queries from the decoder, keys and values from the encoder's output
   (the "memory"); this is where the output looks at the input;
3. the position-wise feed-forward network.

Masks are boolean, **True = may attend**: ``tgt_mask`` broadcastable to ``(B, H, T, T)``
(causal, usually combined with target padding), ``memory_mask`` to ``(B, H, T, S)``
(source padding).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .config import LayerConfig
from .feed_forward import FeedForward
from .multi_head_attention import MultiHeadAttention
from .validation import check_flag, check_hidden, check_number, check_positive_int, check_tensor


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention and feed-forward, with residuals and LayerNorms.

    Args:
        d_model, num_heads, d_ff, dropout, norm_first, activation, layer_norm_eps: as for
            :class:`~transformer_lib.encoder.EncoderLayer`.
        cross_attention: ``False`` drops cross-attention (and ``norm2``): the block of a
            decoder-only model such as GPT, called with ``memory=None``.

    Shape:
        x ``(B, T, D)``, memory ``(B, S, D)`` -> ``(B, T, D)``.

    ``cache`` is for lesson 11's key/value cache (a ``kv_cache.LayerCache``): an object whose
    ``self_attn`` and ``cross_attn`` are where the two attentions get their keys and values
    (lesson 04's ``keys_values``). ``x`` then holds only the new positions.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 cross_attention: bool = True):
        super().__init__()
        self.norm_first = check_flag("norm_first", norm_first)
        check_flag("cross_attention", cross_attention)
        check_number("layer_norm_eps", layer_norm_eps, low=0.0, low_open=True)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout) if cross_attention else None
        self.feed_forward = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps) if cross_attention else None
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def _self_attention(self, x, mask, keys_values):
        out, _ = self.self_attn(x, x, x, mask=mask, keys_values=keys_values)
        return self.dropout1(out)

    def _cross_attention(self, x, memory, mask, keys_values):
        out, _ = self.cross_attn(x, memory, memory, mask=mask, keys_values=keys_values)
        return self.dropout2(out)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        if (memory is None) != (self.cross_attn is None):
            raise ValueError("memory is required by a layer with cross-attention and must be None without it")
        if cache is not None and not hasattr(cache, "self_attn"):
            raise TypeError(f"cache must be this layer's LayerCache (new_cache(model)[i]), got {type(cache).__name__}")
        self_kv, cross_kv = (None, None) if cache is None else (cache.self_attn, cache.cross_attn)
        D = self.self_attn.d_model
        check_hidden("x", x, D, self.norm1.weight, "the decoder layer", length="T")
        if memory is not None:
            check_hidden("memory", memory, D, self.norm1.weight, "the decoder layer", length="S")
            if memory.shape[0] != x.shape[0]:
                raise ValueError(f"x and memory must have the same batch size B, got x {tuple(x.shape)} and memory "
                                 f"{tuple(memory.shape)}: each target sequence reads its own source's memory")
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), tgt_mask, self_kv)
            if self.cross_attn is not None:
                x = x + self._cross_attention(self.norm2(x), memory, memory_mask, cross_kv)
            return x + self.dropout3(self.feed_forward(self.norm3(x)))
        x = self.norm1(x + self._self_attention(x, tgt_mask, self_kv))
        if self.cross_attn is not None:
            x = self.norm2(x + self._cross_attention(x, memory, memory_mask, cross_kv))
        return self.norm3(x + self.dropout3(self.feed_forward(x)))


class Decoder(nn.Module):
    """A stack of ``num_layers`` decoder layers (final LayerNorm when ``norm_first``).

    Args:
        num_layers: number of layers N.
        config: the :class:`~transformer_lib.config.LayerConfig` every layer is built from.
        cross_attention: ``False`` makes a decoder-only (GPT-style) stack.

    Shape:
        x ``(B, T, D)``, memory ``(B, S, D)`` -> ``(B, T, D)``.
    """

    def __init__(self, num_layers: int, config: LayerConfig, *args, cross_attention: bool = True, **kwargs):
        super().__init__()
        check_positive_int("num_layers", num_layers)
        c = LayerConfig.of(config, args, kwargs, "Decoder")
        self.layers = nn.ModuleList(DecoderLayer(**c.kwargs(), cross_attention=cross_attention)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.norm_first else None

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        """``cache``: lesson 11's ``kv_cache.DecoderCache``, whose ``layers`` holds one cache per layer."""
        if cache is not None and not hasattr(cache, "layers"):
            raise TypeError(f"cache must be a DecoderCache (transformer_lib.kv_cache.new_cache(model)), "
                            f"got {type(cache).__name__}")
        caches = [None] * len(self.layers) if cache is None else cache.layers
        if len(caches) != len(self.layers):
            raise ValueError(f"cache has {len(caches)} layers, the decoder has {len(self.layers)}")
        for layer, layer_cache in zip(self.layers, caches):
            x = layer(x, memory, tgt_mask, memory_mask, layer_cache)
        return x if self.norm is None else self.norm(x)

    def attention_weights(self) -> dict[str, list[torch.Tensor | None]]:
        """The last weights of every layer: ``{"self": [(B, H, T, T)...], "cross": [(B, H, T, S)...]}``."""
        return {"self": [l.self_attn.last_weights for l in self.layers],
                "cross": [None if l.cross_attn is None else l.cross_attn.last_weights for l in self.layers]}


@torch.no_grad()
def leaks_future(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, atol: float = 1e-6) -> bool:
    """Does ``fn`` let an output position see later input positions? (The no-peeking test.)

    For every position t, the inputs *after* t are replaced by random values; if any output at
    positions ``0..t`` changes by more than ``atol``, information flows from the future to the
    past and the function leaks. Random values, not a constant shift: LayerNorm removes a
    constant added to every feature, which would hide the leak of a pre-LN layer.

    Args:
        fn: maps ``(B, T, D)`` to ``(B, T, D)``, e.g. ``lambda x: layer(x, None, causal_mask(T))``.
        x: an input ``(B, T, D)`` (not modified).
        atol: the largest change that still counts as "unchanged" (float rounding).

    Returns:
        ``True`` if some output depends on a later input, ``False`` otherwise.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function of x (B, T, D), e.g. lambda x: layer(x, None, causal_mask(T)), "
                        f"got {type(fn).__name__}")
    check_tensor("x", x, ndim=3, floating=True)
    check_number("atol", atol, low=0.0)
    reference = fn(x)                                                   # (B, T, D)
    generator = torch.Generator().manual_seed(0)
    for t in range(x.shape[1] - 1):
        changed = x.clone()
        future = changed[:, t + 1:]                                     # (B, T - t - 1, D), a view
        future.copy_(torch.randn(future.shape, generator=generator, dtype=x.dtype))
        if not torch.allclose(fn(changed)[:, :t + 1], reference[:, :t + 1], atol=atol, rtol=0.0):
            return True
    return False


def decoder_layer_forward(layer: DecoderLayer, x: torch.Tensor, memory: torch.Tensor,
                          tgt_mask: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The forward pass of a :class:`DecoderLayer` (with cross-attention) written out (lesson 06's exercise).

    post-LN: ``x = norm1(x + SelfAttn(x)); x = norm2(x + CrossAttn(x, memory)); x = norm3(x + FFN(x))``;
    pre-LN:  ``x = x + SelfAttn(norm1(x)); x = x + CrossAttn(norm2(x), memory); x = x + FFN(norm3(x))``.

    Args:
        layer: the layer whose attentions, ``feed_forward``, norms and dropouts are used.
        x: ``(B, T, D)``; memory: ``(B, S, D)``.
        tgt_mask: bool, broadcastable to ``(B, H, T, T)`` (causal & target padding), True = may attend.
        memory_mask: bool, broadcastable to ``(B, H, T, S)`` (source padding), True = may attend.

    Returns:
        ``(B, T, D)``, equal to ``layer(x, memory, tgt_mask, memory_mask)``.
    """
    def self_attention(h):
        out, _ = layer.self_attn(h, h, h, mask=tgt_mask)              # queries, keys, values: the target
        return layer.dropout1(out)

    def cross_attention(h):
        out, _ = layer.cross_attn(h, memory, memory, mask=memory_mask)  # queries: target; keys, values: memory
        return layer.dropout2(out)

    def ffn(h):
        return layer.dropout3(layer.feed_forward(h))

    if layer.norm_first:
        x = x + self_attention(layer.norm1(x))
        x = x + cross_attention(layer.norm2(x))
        return x + ffn(layer.norm3(x))
    x = layer.norm1(x + self_attention(x))
    x = layer.norm2(x + cross_attention(x))
    return layer.norm3(x + ffn(x))
