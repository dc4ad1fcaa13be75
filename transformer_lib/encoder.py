"""Lesson 05: the encoder layer and the encoder stack.

Legend: B batch, T sequence length, D = d_model, H heads.

One encoder layer is two sub-layers, each wrapped in a residual connection and a LayerNorm:

    post-LN (the paper):   x = norm1(x + SelfAttn(x));   x = norm2(x + FFN(x))
    pre-LN  (GPT-2 on):    x = x + SelfAttn(norm1(x));   x = x + FFN(norm2(x))

Pre-LN keeps an un-normalised residual path from input to output, which keeps gradients
well-scaled in deep stacks; such a stack needs one final LayerNorm at its end.

Masks are boolean, **True = may attend**, broadcastable to ``(B, H, T, T)``.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import LayerConfig
from .feed_forward import FeedForward
from .multi_head_attention import MultiHeadAttention
from .validation import check_flag, check_hidden, check_number, check_positive_int


class EncoderLayer(nn.Module):
    """Self-attention + feed-forward, each with residual connection and LayerNorm.

    Args:
        d_model: model size D.
        num_heads: attention heads H (D must be divisible by H).
        d_ff: hidden size of the feed-forward network.
        dropout: dropout on attention weights, after each sub-layer and inside the FFN.
        norm_first: ``False`` for post-LN (the paper), ``True`` for pre-LN.
        activation: ``"relu"``, ``"gelu"`` or ``"gelu_tanh"``.
        layer_norm_eps: eps of both LayerNorms.

    Shape:
        x ``(B, T, D)``, mask bool broadcastable to ``(B, H, T, T)`` (True = may attend)
        -> ``(B, T, D)``.

    The attention weights are kept in ``self_attn.last_weights`` (unless the attention layer is
    set to its fused kernel, see :class:`~transformer_lib.multi_head_attention.MultiHeadAttention`).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False, activation: str = "relu", layer_norm_eps: float = 1e-5):
        super().__init__()
        self.norm_first = check_flag("norm_first", norm_first)
        check_number("layer_norm_eps", layer_norm_eps, low=0.0, low_open=True)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout=dropout)
        self.feed_forward = FeedForward(d_model, d_ff, dropout=dropout, activation=activation)
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def _self_attention(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out, _ = self.self_attn(x, x, x, mask=mask)
        return self.dropout1(out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        check_hidden("x", x, self.self_attn.d_model, self.norm1.weight, "the encoder layer", length="T")
        if self.norm_first:
            x = x + self._self_attention(self.norm1(x), mask)
            return x + self.dropout2(self.feed_forward(self.norm2(x)))
        x = self.norm1(x + self._self_attention(x, mask))
        return self.norm2(x + self.dropout2(self.feed_forward(x)))


class Encoder(nn.Module):
    """A stack of ``num_layers`` identical (independently initialised) encoder layers.

    Args:
        num_layers: number of layers N.
        config: the :class:`~transformer_lib.config.LayerConfig` every layer is built from.

    With ``norm_first=True`` a final LayerNorm (``self.norm``) normalises the output, as in
    ``nn.TransformerEncoder(..., norm=LayerNorm)``; post-LN layers end in a norm already.

    Shape:
        x ``(B, T, D)``, mask as for :class:`EncoderLayer` -> ``(B, T, D)``.
    """

    def __init__(self, num_layers: int, config: LayerConfig, *args, **kwargs):
        super().__init__()
        check_positive_int("num_layers", num_layers)
        c = LayerConfig.of(config, args, kwargs, "Encoder")
        self.layers = nn.ModuleList(EncoderLayer(**c.kwargs()) for _ in range(num_layers))
        self.norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps) if c.norm_first else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x if self.norm is None else self.norm(x)

    def attention_weights(self) -> list[torch.Tensor | None]:
        """The last self-attention weights ``(B, H, T, T)`` of every layer."""
        return [layer.self_attn.last_weights for layer in self.layers]


def encoder_layer_forward(layer: EncoderLayer, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The forward pass of an :class:`EncoderLayer` written out from its parts (lesson 05's exercise).

    post-LN (``layer.norm_first`` False): ``x = norm1(x + SelfAttn(x)); x = norm2(x + FFN(x))``;
    pre-LN (True): ``x = x + SelfAttn(norm1(x)); x = x + FFN(norm2(x))``.

    Args:
        layer: the layer whose ``self_attn``, ``feed_forward``, ``norm1``, ``norm2`` and dropouts are used.
        x: ``(B, T, D)``.
        mask: bool, broadcastable to ``(B, H, T, T)``, **True = may attend**.

    Returns:
        ``(B, T, D)``, equal to ``layer(x, mask)``.
    """
    def self_attention(h):
        out, _ = layer.self_attn(h, h, h, mask=mask)       # (B, T, D), weights (B, H, T, T)
        return layer.dropout1(out)

    def ffn(h):
        return layer.dropout2(layer.feed_forward(h))

    if layer.norm_first:
        x = x + self_attention(layer.norm1(x))
        return x + ffn(layer.norm2(x))
    x = layer.norm1(x + self_attention(x))
    return layer.norm2(x + ffn(x))
