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

from .validation import check_dtype_matches, check_feature_size, check_positive_int, check_probability, check_tensor

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,                                          # exact: x * Phi(x), with erf
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),    # the tanh approximation (GPT-2)
}


def get_activation(name: str):
    """The activation function called ``name`` (one of ``ACTIVATIONS``)."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def feed_forward(x: torch.Tensor, w_1: torch.Tensor, b_1: torch.Tensor, w_2: torch.Tensor, b_2: torch.Tensor,
                 activation: str = "relu") -> torch.Tensor:
    """The paper's FFN written with its own matrices: ``activation(x W_1 + b_1) W_2 + b_2``.

    Args:
        x: ``(..., D)``; every position (every vector along the last dimension) goes through
            the same network on its own.
        w_1: ``(D, d_ff)``, b_1: ``(d_ff,)``, w_2: ``(d_ff, D)``, b_2: ``(D,)``. Vectors are rows,
            so these are the *transposes* of ``nn.Linear``'s ``weight`` (``linear1.weight.T``).
        activation: ``"relu"`` (the paper), ``"gelu"`` or ``"gelu_tanh"``.

    Returns:
        ``(..., D)``.
    """
    check_tensor("x", x, floating=True)
    D = x.shape[-1] if x.dim() else 0
    d_ff = w_1.shape[-1] if isinstance(w_1, torch.Tensor) and w_1.dim() else 0
    for name, w, shape, layout in (("w_1", w_1, (D, d_ff), "(D, d_ff)"), ("b_1", b_1, (d_ff,), "(d_ff,)"),
                                   ("w_2", w_2, (d_ff, D), "(d_ff, D)"), ("b_2", b_2, (D,), "(D,)")):
        check_tensor(name, w, floating=True)
        if tuple(w.shape) != shape:
            raise ValueError(f"{name} must be {layout} = {shape} for x of shape {tuple(x.shape)}, got shape "
                             f"{tuple(w.shape)}; nn.Linear stores the transpose: pass linear.weight.T")
        check_dtype_matches("x", x, w, "the network")
    hidden = get_activation(activation)(x @ w_1 + b_1)   # (..., D) @ (D, d_ff) -> (..., d_ff)
    return hidden @ w_2 + b_2                           # (..., d_ff) @ (d_ff, D) -> (..., D)


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
        self.d_model, self.d_ff = d_model, d_ff
        self.activation_name = activation
        self.activation = get_activation(activation)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.dropout = nn.Dropout(check_probability("dropout", dropout))
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, floating=True)
        check_feature_size("x", x, self.d_model, layout="(..., D)")
        check_dtype_matches("x", x, self.linear1.weight, "FeedForward")
        return self.linear2(self.dropout(self.activation(self.linear1(x))))  # (..., D) -> (..., d_ff) -> (..., D)

    def extra_repr(self) -> str:
        return f"activation={self.activation_name!r}"
