"""Lesson 01: token ids -> vectors.

Legend: B batch, T sequence length, V vocabulary size, D = d_model.

An embedding is a lookup table: row ``i`` of a ``(V, D)`` matrix is the vector of token ``i``.
Multiplying a one-hot vector by the matrix gives the same row,

    one_hot(i) @ W_E = W_E[i],

which is why the table is trained like any other weight. The Transformer multiplies the
looked-up vectors by sqrt(d_model) so that they are on the same scale as the positional
encoding added to them. Cosine similarity compares two vectors by their direction only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_int, check_number, check_positive_int, check_tensor

__all__ = ["one_hot_lookup", "scaled_embedding", "cosine_similarity", "TokenEmbedding"]


def _check_ids(ids: torch.Tensor, vocab_size: int) -> None:
    check_tensor("ids", ids, floating=False)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size}) for a vocabulary of {vocab_size} tokens, "
                         f"got values from {int(ids.min())} to {int(ids.max())}")


def _check_weight(weight: torch.Tensor) -> None:
    check_tensor("weight", weight, ndim=2, floating=True)


def one_hot_lookup(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Embed ``ids`` the slow way: one-hot vectors times the embedding matrix.

    Args:
        ids: integer token ids of any shape ``(...)``, each in ``[0, V)``.
        weight: the embedding matrix ``(V, D)``, one row per token.

    Returns:
        ``(..., D)``: row ``ids[...]`` of ``weight`` for every id, equal to ``weight[ids]``.
    """
    _check_weight(weight)
    _check_ids(ids, weight.shape[0])
    one_hot = F.one_hot(ids.long(), num_classes=weight.shape[0]).to(weight.dtype)  # (...) -> (..., V)
    return one_hot @ weight                                                 # (..., V) @ (V, D) -> (..., D)


def scaled_embedding(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Look up the rows of ``weight`` for ``ids`` and multiply them by sqrt(d_model).

    Args:
        ids: integer token ids of any shape ``(...)``, each in ``[0, V)``.
        weight: the embedding matrix ``(V, D)``.

    Returns:
        ``(..., D)``: ``weight[ids] * sqrt(D)``.
    """
    _check_weight(weight)
    _check_ids(ids, weight.shape[0])
    return weight[ids] * math.sqrt(weight.shape[1])  # (...) -> (..., D)


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosine of the angle between every row of ``a`` and every row of ``b``.

        cos(a_n, b_m) = a_n . b_m / (|a_n| |b_m|)

    Args:
        a: ``(N, D)`` vectors, one per row.
        b: ``(M, D)`` vectors.
        eps: a zero vector has cosine 0 with everything (its norm is clamped to ``eps``).

    Returns:
        ``(N, M)`` matrix with values in [-1, 1].
    """
    check_tensor("a", a, ndim=2, floating=True)
    check_tensor("b", b, ndim=2, floating=True)
    check_number("eps", eps, low=0.0, low_open=True)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same number of features, got a {tuple(a.shape)} and b {tuple(b.shape)}")
    a_unit = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)  # (N, D), every row of length 1
    b_unit = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)  # (M, D)
    return a_unit @ b_unit.T                                  # (N, D) @ (D, M) -> (N, M)


class TokenEmbedding(nn.Module):
    """Look up a vector for every token id and scale it by sqrt(d_model).

    Args:
        vocab_size: number of tokens in the vocabulary.
        d_model: size of each vector.
        padding_idx: optional id whose vector is zero and never trained.

    Shape:
        ids ``(B, T)`` integer (any shape works) -> ``(B, T, D)``.

    The table is initialised as ``nn.Embedding`` does (N(0, 1) entries); the full
    :class:`~transformer_lib.transformer.Transformer` re-initialises it (Xavier), because it
    shares it with the output layer.
    """

    def __init__(self, vocab_size: int, d_model: int, padding_idx: int | None = None):
        super().__init__()
        self.vocab_size = check_positive_int("vocab_size", vocab_size)
        self.d_model = check_positive_int("d_model", d_model)
        if padding_idx is not None:
            check_int("padding_idx", padding_idx, 0, vocab_size - 1, hint="an id of the vocabulary, or None")
        self.embedding = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.scale = math.sqrt(d_model)

    @property
    def weight(self) -> nn.Parameter:
        """The ``(vocab_size, d_model)`` table (shared with the output layer when weights are tied)."""
        return self.embedding.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        _check_ids(ids, self.vocab_size)
        return self.embedding(ids) * self.scale  # (B, T) -> (B, T, D)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, d_model={self.d_model}, scale=sqrt({self.d_model})"
