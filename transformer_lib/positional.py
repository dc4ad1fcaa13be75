"""Lesson 02: where is each token? Sinusoidal and learned positions.

Legend: B batch, T sequence length, D = d_model.

Attention alone treats its input as a set: permute the tokens and the outputs are permuted the
same way. The model learns word order only from a position signal added to every token vector:

    PE[pos, 2i]   = sin(pos / 10000^(2i / d_model))
    PE[pos, 2i+1] = cos(pos / 10000^(2i / d_model))

Each pair of dimensions (2i, 2i+1) is a point on a circle turning at its own frequency, so
PE[pos + k] is PE[pos] rotated pair by pair: a fixed linear map of PE[pos] that depends on k only.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .validation import check_int, check_number, check_positive_int, check_probability, check_tensor

__all__ = ["sinusoidal_positional_encoding", "rotation_for_offset", "PositionalEncoding",
           "LearnedPositionalEmbedding"]


def _check_base(base) -> float:
    return check_number("base", base, low=1.0, low_open=True, hint="10000.0 in the paper")


def _check_offset(offset) -> int:
    return check_int("offset", offset, minimum=0, hint="the position of the first token")


def sinusoidal_positional_encoding(max_len: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The ``(max_len, d_model)`` table of sinusoidal positional encodings.

    Even columns hold sines, odd columns cosines, of ``pos / base^(2i / d_model)``. For an odd
    ``d_model`` the last column is the sine of a last, unpaired frequency.

    Args:
        max_len: number of positions (rows).
        d_model: size of each encoding (columns).
        base: the wavelength base, 10000 in the paper.

    Returns:
        float32 tensor ``(max_len, d_model)`` with values in [-1, 1].
    """
    check_positive_int("max_len", max_len)
    check_positive_int("d_model", d_model)
    base = _check_base(base)
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)            # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)                  # (ceil(D/2),)
    angle = pos / base ** (two_i / d_model)                                   # (max_len, ceil(D/2))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.float()


def rotation_for_offset(k: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The ``(d_model, d_model)`` matrix M_k with PE[pos + k] = M_k @ PE[pos] for every pos.

    With w_i = 1 / base^(2i / d_model), the pair (PE[pos, 2i], PE[pos, 2i+1]) is
    (sin(pos w_i), cos(pos w_i)); the angle-addition formulas give

        sin((pos + k) w_i) =  cos(k w_i) sin(pos w_i) + sin(k w_i) cos(pos w_i)
        cos((pos + k) w_i) = -sin(k w_i) sin(pos w_i) + cos(k w_i) cos(pos w_i)

    so M_k is block-diagonal with one 2x2 block [[cos, sin], [-sin, cos]](k w_i) per pair.
    It depends on k only, never on pos. ``k`` may be negative (M_{-k} is the inverse, M_k^T).

    Args:
        k: the offset, an int.
        d_model: an even size (with an odd size the last column, a sine, has no cosine
            partner, and no such matrix exists).
        base: the wavelength base, 10000 in the paper.

    Returns:
        float32 tensor ``(d_model, d_model)``.
    """
    check_int("k", k, hint="an offset")
    check_positive_int("d_model", d_model)
    base = _check_base(base)
    if d_model % 2:
        raise ValueError(f"d_model must be even, got d_model={d_model}: the last column of an odd-sized "
                         f"table is a sine without its cosine partner, so no fixed matrix maps PE[pos] to PE[pos + k]")
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    for two_i in range(0, d_model, 2):
        w = 1.0 / base ** (two_i / d_model)
        c, s = math.cos(k * w), math.sin(k * w)
        # (sin(a + b), cos(a + b)) = R(b) @ (sin a, cos a) with R(b) = [[cos b, sin b], [-sin b, cos b]]
        m[two_i, two_i], m[two_i, two_i + 1] = c, s
        m[two_i + 1, two_i], m[two_i + 1, two_i + 1] = -s, c
    return m.float()


def _check_input(x: torch.Tensor, max_len: int, d_model: int, offset: int) -> None:
    check_tensor("x", x, ndim=3, floating=True)
    if x.shape[-1] != d_model:
        raise ValueError(f"x has {x.shape[-1]} features in its last dimension, expected d_model={d_model} "
                         f"(x is batch first, (B, T, D)), got shape {tuple(x.shape)}")
    _check_offset(offset)
    T = x.shape[1]
    if offset + T > max_len:
        if offset:
            what = f"positions {offset}..{offset + T - 1} (offset {offset}, length {T}) do not fit"
        else:
            what = f"sequence length {T} is longer than"
        raise ValueError(f"{what} max_len={max_len} (the table has positions 0..{max_len - 1}); "
                         f"build the module with a larger max_len")


class PositionalEncoding(nn.Module):
    """Add the sinusoidal table to a batch-first input, then apply dropout.

    Args:
        d_model: feature size D.
        max_len: longest sequence supported.
        dropout: dropout probability applied after the addition (0.1 in the paper).

    Shape:
        x ``(B, T, D)`` -> ``(B, T, D)``.

    The table is a non-persistent buffer: it moves with ``.to(device)`` but is not saved in
    the ``state_dict`` (it is recomputed from the formula).
    """

    def __init__(self, d_model: int, max_len: int = 5000, dropout: float = 0.0):
        super().__init__()
        self.d_model = check_positive_int("d_model", d_model)
        self.max_len = check_positive_int("max_len", max_len)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        self.register_buffer("pe", sinusoidal_positional_encoding(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Add positions ``offset .. offset+T-1`` (``offset`` > 0 when decoding with a cache)."""
        _check_input(x, self.max_len, self.d_model, offset)
        T = x.shape[1]
        return self.dropout(x + self.pe[offset:offset + T].to(x.dtype))  # (B, T, D) + (T, D)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class LearnedPositionalEmbedding(nn.Module):
    """A trained vector per position (as in BERT and GPT), added to the input.

    Args:
        d_model: feature size D.
        max_len: number of positions (the model cannot read longer sequences).
        dropout: dropout after the addition.

    The arguments come in the order of :class:`PositionalEncoding`'s, so the two are interchangeable.

    Shape:
        x ``(B, T, D)`` -> ``(B, T, D)``.
    """

    def __init__(self, d_model: int, max_len: int, dropout: float = 0.0):
        super().__init__()
        self.d_model = check_positive_int("d_model", d_model)
        self.max_len = check_positive_int("max_len", max_len)
        self.embedding = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))

    @property
    def weight(self) -> nn.Parameter:
        return self.embedding.weight

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_input(x, self.max_len, self.d_model, offset)
        positions = torch.arange(offset, offset + x.shape[1], device=x.device)  # (T,)
        return self.dropout(x + self.embedding(positions))                     # (B, T, D) + (T, D)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"
