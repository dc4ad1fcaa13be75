"""Lesson 05: the position-wise feed-forward network.

Legend: B batch, T sequence length, D = d_model, d_ff hidden size.

    FFN(x) = activation(x W_1 + b_1) W_2 + b_2

"Position-wise": the same two-layer MLP is applied to every token on its own (it equals a
1x1 convolution over the sequence). It is where most of a Transformer's parameters live:
2 * D * d_ff of them per layer, against 4 * D^2 for attention.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .utils import check_positive_int, check_probability

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,                                          # exact: x * Phi(x), with erf
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),    # the tanh approximation (GPT-2)
}


def get_activation(name: str):
    """The activation function called ``name`` (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class FeedForward(nn.Module):
    """Two linear layers with an activation between them, applied at every position.

    Args:
        d_model: input and output size D.
        d_ff: hidden size (2048 = 4 * 512 in the paper).
        dropout: dropout after the activation.
        activation: ``"relu"`` (the paper), ``"gelu"`` (exact, BERT) or ``"gelu_tanh"``.

    Shape:
        ``(..., D) -> (..., D)``.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        check_positive_int("d_model", d_model)
        check_positive_int("d_ff", d_ff)
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))  # (..., D) -> (..., d_ff) -> (..., D)

    def extra_repr(self) -> str:
        return f"activation={self.activation_name!r}"
