"""Lesson 05 (and 06): per-layer curves and "which input position influences which output".

``influence_matrix`` measures how strongly every output position of a sequence function depends
on every input position (the norm of each block of its Jacobian): a position-wise network gives a
diagonal, self-attention a full square, masked self-attention a lower triangle.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .core import heatmap, to_numpy

__all__ = ["plot_layer_curves", "influence_matrix", "plot_influence"]

# Okabe-Ito colours, distinguishable with colour blindness, in a fixed order
_COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
_MARKERS = ["o", "s", "^", "D", "v", "P"]


def plot_layer_curves(curves: Mapping[str, Sequence[float]], title: str = "", xlabel: str = "layer",
                      ylabel: str = "gradient norm", logy: bool = False, x: Sequence[float] | None = None, ax=None):
    """One line per entry of ``curves`` (label -> one value per layer); returns the Figure.

    Args:
        curves: e.g. ``{"post-LN": [...], "pre-LN": [...]}``.
        logy: logarithmic y axis (for values spanning many orders of magnitude).
        x: the x positions (default 0, 1, 2, ...).
    """
    if not curves:
        raise ValueError("curves is empty: pass {label: values}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.4))
    for i, (label, values) in enumerate(curves.items()):
        v = to_numpy(torch.as_tensor(values, dtype=torch.float64))
        xs = np.arange(len(v)) if x is None else np.asarray(x)
        if len(xs) != len(v):
            raise ValueError(f"curve {label!r} has {len(v)} values for {len(xs)} x positions")
        ax.plot(xs, v, marker=_MARKERS[i % len(_MARKERS)], color=_COLOURS[i % len(_COLOURS)], label=label,
                markersize=4, linewidth=1.5)
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


def influence_matrix(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``(T, T)`` matrix: entry ``[t, u]`` is the size of d output[t] / d input[u] (a Frobenius norm).

    Args:
        fn: maps ``(1, T, D)`` to ``(1, T, D')``.
        x: ``(1, T, D)`` input (one sequence).

    Row t says which input positions output t depends on; an exact zero means "not at all".
    """
    if x.dim() != 3 or x.shape[0] != 1:
        raise ValueError(f"x must be one sequence of shape (1, T, D), got {tuple(x.shape)}")
    jac = torch.autograd.functional.jacobian(lambda inp: fn(inp)[0], x)[:, :, 0]   # (T, D', T, D)
    return jac.pow(2).sum(dim=(1, 3)).sqrt()                                        # (T, T)


def plot_influence(matrices: Mapping[str, torch.Tensor], tokens: Sequence[str] | None = None, title: str = "",
                   size: float = 2.6):
    """Side-by-side influence maps (see :func:`influence_matrix`); zeros are drawn in white."""
    n = len(matrices)
    if n == 0:
        raise ValueError("matrices is empty: pass {title: (T, T) matrix}")
    fig, axes = plt.subplots(1, n, figsize=(size * n + 0.8, size + 0.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        m = to_numpy(m).astype(float)
        shown = np.where(m == 0, np.nan, m / m.max() if m.max() > 0 else m)     # exact zeros: drawn blank
        heatmap(shown, tokens, tokens, title=name, xlabel="input position u", ylabel="output position t",
                ax=ax, vmin=0.0, vmax=1.0, colorbar=False)
        ax.set_facecolor("white")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
