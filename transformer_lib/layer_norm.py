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

from .validation import check_dtype_matches, check_number, check_positive_int, check_tensor


def layer_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Normalise every vector along the last dimension, then scale by ``gamma`` and shift by ``beta``.

    Args:
        x: ``(..., D)`` input; each ``x[..., :]`` (one token) is normalised on its own.
        gamma: ``(D,)`` gain, beta: ``(D,)`` bias (learned; 1 and 0 at initialisation).
        eps: added to the variance inside the square root, so a constant vector gives 0, not NaN.

    Returns:
        ``(..., D)``: each vector with mean ``beta`` and standard deviation about ``|gamma|``.
    """
    check_tensor("x", x, floating=True)
    if x.dim() == 0:
        raise ValueError("x must have at least one dimension (..., D), got a 0-d tensor")
    D = x.shape[-1]
    for name, p in (("gamma", gamma), ("beta", beta)):
        check_tensor(name, p, floating=True)
        if tuple(p.shape) != (D,):
            raise ValueError(f"{name} must be (D,) = ({D},) for x of shape {tuple(x.shape)}, "
                             f"got shape {tuple(p.shape)}")
    check_number("eps", eps, low=0.0, low_open=True)
    mean = x.mean(dim=-1, keepdim=True)                        # (..., D) -> (..., 1)
    var = x.var(dim=-1, keepdim=True, correction=0)            # (..., 1), biased: divide by D
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


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
        self.eps = check_number("eps", eps, low=0.0, low_open=True)
        self.weight = nn.Parameter(torch.ones(d_model))   # gamma
        self.bias = nn.Parameter(torch.zeros(d_model))    # beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, floating=True)
        if x.dim() == 0 or x.shape[-1] != self.d_model:
            raise ValueError(f"last dimension must be d_model={self.d_model}, got shape {tuple(x.shape)}")
        check_dtype_matches("x", x, self.weight, "LayerNorm")
        return layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, eps={self.eps}"
