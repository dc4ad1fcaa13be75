"""Copy our weights into PyTorch's own modules, to prove the two compute the same thing.

PyTorch packs the three input projections of ``nn.MultiheadAttention`` into one
``in_proj_weight`` of shape ``(3 D, D)``: rows ``0:D`` are W_q, ``D:2D`` W_k, ``2D:3D`` W_v.
``nn.TransformerEncoderLayer`` calls its FFN ``linear1``/``linear2`` and its attention
``self_attn``; ``nn.TransformerDecoderLayer`` calls cross-attention ``multihead_attn``.

Two differences to remember when comparing:

* boolean masks mean the opposite in PyTorch's modules (True = blocked): use
  :func:`transformer_lib.masks.to_torch_mask`;
* ``nn.Transformer`` always ends both stacks with a LayerNorm, also for post-LN layers, where
  the paper's model (and ours) has none: :func:`copy_transformer` removes them.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .decoder import Decoder, DecoderLayer
from .encoder import Encoder, EncoderLayer
from .multi_head_attention import MultiHeadAttention
from .transformer import Transformer


def _check_ours(ours, our_type: type | tuple[type, ...]) -> None:
    if not isinstance(ours, our_type):
        names = " or ".join(t.__name__ for t in (our_type if isinstance(our_type, tuple) else (our_type,)))
        raise TypeError(f"ours must be transformer_lib's {names}, got {type(ours).__name__}")


def _check_pair(ours, our_type: type, theirs, their_type: type) -> None:
    """``ours`` must be one of our modules and ``theirs`` the matching PyTorch module."""
    _check_ours(ours, our_type)
    if not isinstance(theirs, their_type):
        raise TypeError(f"theirs must be a torch.nn.{their_type.__name__}, got {type(theirs).__name__}")


def _copy(dst: torch.Tensor, src: torch.Tensor, what: str) -> None:
    if dst.shape != src.shape:
        raise ValueError(f"{what}: shape {tuple(src.shape)} does not fit PyTorch's {tuple(dst.shape)}")
    dst.copy_(src)


@torch.no_grad()
def copy_mha(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> nn.MultiheadAttention:
    """Copy ``w_q, w_k, w_v, w_o`` into a ``batch_first`` ``nn.MultiheadAttention``."""
    _check_pair(ours, MultiHeadAttention, theirs, nn.MultiheadAttention)
    if not theirs.batch_first:
        raise ValueError("use nn.MultiheadAttention(..., batch_first=True): our layers are batch first")
    _copy(theirs.in_proj_weight, torch.cat([ours.w_q.weight, ours.w_k.weight, ours.w_v.weight]), "in_proj_weight")
    _copy(theirs.out_proj.weight, ours.w_o.weight, "out_proj.weight")
    if ours.w_q.bias is not None:
        _copy(theirs.in_proj_bias, torch.cat([ours.w_q.bias, ours.w_k.bias, ours.w_v.bias]), "in_proj_bias")
        _copy(theirs.out_proj.bias, ours.w_o.bias, "out_proj.bias")
    return theirs


def _copy_linear(dst: nn.Linear, src: nn.Linear, what: str) -> None:
    _copy(dst.weight, src.weight, f"{what}.weight")
    _copy(dst.bias, src.bias, f"{what}.bias")


@torch.no_grad()
def copy_encoder_layer(ours: EncoderLayer, theirs: nn.TransformerEncoderLayer) -> nn.TransformerEncoderLayer:
    """Copy an :class:`EncoderLayer` into ``nn.TransformerEncoderLayer(batch_first=True)``."""
    _check_pair(ours, EncoderLayer, theirs, nn.TransformerEncoderLayer)
    copy_mha(ours.self_attn, theirs.self_attn)
    _copy_linear(theirs.linear1, ours.feed_forward.linear1, "linear1")
    _copy_linear(theirs.linear2, ours.feed_forward.linear2, "linear2")
    for n in ("norm1", "norm2"):
        _copy_linear(getattr(theirs, n), getattr(ours, n), n)
    return theirs


@torch.no_grad()
def copy_decoder_layer(ours: DecoderLayer, theirs: nn.TransformerDecoderLayer) -> nn.TransformerDecoderLayer:
    """Copy a :class:`DecoderLayer` into ``nn.TransformerDecoderLayer(batch_first=True)``."""
    _check_pair(ours, DecoderLayer, theirs, nn.TransformerDecoderLayer)
    if ours.cross_attn is None:
        raise ValueError("this DecoderLayer has no cross-attention (a GPT-style block): nn.TransformerDecoderLayer "
                         "always has one, so there is nothing to copy it into")
    copy_mha(ours.self_attn, theirs.self_attn)
    copy_mha(ours.cross_attn, theirs.multihead_attn)
    _copy_linear(theirs.linear1, ours.feed_forward.linear1, "linear1")
    _copy_linear(theirs.linear2, ours.feed_forward.linear2, "linear2")
    for n in ("norm1", "norm2", "norm3"):
        _copy_linear(getattr(theirs, n), getattr(ours, n), n)
    return theirs


@torch.no_grad()
def copy_stack(ours: Encoder | Decoder, theirs: nn.TransformerEncoder | nn.TransformerDecoder):
    """Copy an :class:`Encoder`/:class:`Decoder` stack, final norm included."""
    if isinstance(ours, Encoder):
        _check_pair(ours, Encoder, theirs, nn.TransformerEncoder)
    else:
        _check_pair(ours, Decoder, theirs, nn.TransformerDecoder)
    if len(ours.layers) != len(theirs.layers):
        raise ValueError(f"{len(ours.layers)} layers do not fit PyTorch's {len(theirs.layers)}")
    copy_layer = copy_encoder_layer if isinstance(ours, Encoder) else copy_decoder_layer
    for a, b in zip(ours.layers, theirs.layers):
        copy_layer(a, b)
    if ours.norm is None:
        theirs.norm = None
    else:
        if theirs.norm is None:
            theirs.norm = nn.LayerNorm(ours.norm.normalized_shape, eps=ours.norm.eps)
        _copy_linear(theirs.norm, ours.norm, "norm")
    return theirs


@torch.no_grad()
def copy_transformer(ours: Transformer, theirs: nn.Transformer) -> nn.Transformer:
    """Copy both stacks of a :class:`Transformer` into ``nn.Transformer(batch_first=True)``.

    ``nn.Transformer`` works on embedded inputs: embeddings, positions and the generator stay
    outside it. Its final LayerNorms are removed for post-LN models (ours has none).
    """
    _check_pair(ours, Transformer, theirs, nn.Transformer)
    copy_stack(ours.encoder, theirs.encoder)
    copy_stack(ours.decoder, theirs.decoder)
    return theirs


def _layer_settings(ours: EncoderLayer | DecoderLayer) -> dict:
    """The constructor arguments of PyTorch's layer that match ``ours``."""
    _check_ours(ours, (EncoderLayer, DecoderLayer))
    a = ours.self_attn
    return dict(d_model=a.d_model, nhead=a.num_heads, dim_feedforward=ours.feed_forward.linear1.out_features,
                dropout=a.dropout, activation=_torch_activation(ours.feed_forward.activation_name),
                layer_norm_eps=ours.norm1.eps, batch_first=True, norm_first=ours.norm_first)


def torch_encoder_layer_like(ours: EncoderLayer) -> nn.TransformerEncoderLayer:
    """A fresh ``nn.TransformerEncoderLayer`` with the same sizes and settings as ``ours``, weights copied."""
    return copy_encoder_layer(ours, nn.TransformerEncoderLayer(**_layer_settings(ours)))


def torch_decoder_layer_like(ours: DecoderLayer) -> nn.TransformerDecoderLayer:
    """A fresh ``nn.TransformerDecoderLayer`` like ``ours``, weights copied."""
    return copy_decoder_layer(ours, nn.TransformerDecoderLayer(**_layer_settings(ours)))


def torch_transformer_like(ours: Transformer) -> nn.Transformer:
    """A fresh ``nn.Transformer`` with the sizes of ``ours`` and its weights copied."""
    _check_ours(ours, Transformer)
    c = ours.config
    with warnings.catch_warnings():      # "enable_nested_tensor is True, but ...": its fast path is off, fine
        warnings.filterwarnings("ignore", message="enable_nested_tensor", category=UserWarning)
        theirs = nn.Transformer(c.d_model, c.num_heads, c.encoder_layers, c.decoder_layers, c.d_ff, c.dropout,
                                activation=_torch_activation(c.activation), layer_norm_eps=c.layer_norm_eps,
                                batch_first=True, norm_first=c.norm_first)
    return copy_transformer(ours, theirs)


def _torch_activation(name: str):
    if name == "gelu_tanh":
        return lambda x: nn.functional.gelu(x, approximate="tanh")
    return name
