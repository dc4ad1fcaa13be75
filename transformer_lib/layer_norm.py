"""Lesson 05: layer normalisation, from scratch.

Legend: D = the normalised (last) dimension.

    LayerNorm(x) = gamma * (x - mean(x)) / sqrt(var(x) + eps) + beta

mean and var are taken over the last dimension of each token separately, var is the *biased*
variance (divide by D, not D - 1), and eps sits *inside* the square root. The encoder and
decoder layers use ``nn.LayerNorm``, which this module is proven equal to.
"""
from __future__ import annotations

import torch
from torch import nn

from .utils import check_positive_int


class LayerNorm(nn.Module):
    """Layer normalisation over the last dimension, written out.

    Args:
        d_model: size D of the last dimension.
        eps: added to the variance inside the square root (1e-5 in PyTorch, 1e-12 in BERT).

    Shape:
        ``(..., D) -> (..., D)``.
    """

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.d_model = check_positive_int("d_model", d_model)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(d_model))   # gamma
        self.bias = nn.Parameter(torch.zeros(d_model))    # beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"last dimension must be d_model={self.d_model}, got shape {tuple(x.shape)}")
        mean = x.mean(dim=-1, keepdim=True)                        # (..., 1)
        var = x.var(dim=-1, keepdim=True, unbiased=False)          # (..., 1), biased
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, eps={self.eps}"
