"""Lesson 01: token ids -> vectors.

Legend: B batch, T sequence length, D = d_model.

An embedding is a lookup table: row ``i`` of a ``(vocab_size, d_model)`` matrix is the vector
of token ``i``. Multiplying a one-hot vector by the matrix gives the same row, which is why the
table is trained like any other weight. The Transformer multiplies the looked-up vectors by
sqrt(d_model) so that they are on the same scale as the positional encoding added to them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .utils import check_positive_int, check_tensor


class TokenEmbedding(nn.Module):
    """Look up a vector for every token id and scale it by sqrt(d_model).

    Args:
        vocab_size: number of tokens in the vocabulary.
        d_model: size of each vector.
        padding_idx: optional id whose vector is zero and never trained.

    Shape:
        ids ``(B, T)`` integer -> ``(B, T, D)``.
    """

    def __init__(self, vocab_size: int, d_model: int, padding_idx: int | None = None):
        super().__init__()
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.d_model = check_positive_int("d_model", d_model)
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.scale = math.sqrt(d_model)

    @property
    def weight(self) -> nn.Parameter:
        """The ``(vocab_size, d_model)`` table (shared with the output layer when weights are tied)."""
        return self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        check_tensor("ids", ids, floating=False)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.vocab_size}), "
                             f"got values from {int(ids.min())} to {int(ids.max())}")
        return self.embedding(ids) * self.scale  # (B, T) -> (B, T, D)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, d_model={self.d_model}, scale=sqrt({self.d_model})"
