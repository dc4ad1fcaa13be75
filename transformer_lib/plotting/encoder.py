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

from ..feed_forward import get_activation
from ..vision import image_to_patches
from .core import heatmap, to_numpy

__all__ = ["plot_layer_curves", "influence_matrix", "plot_influence", "plot_activations", "plot_patches"]

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


def plot_activations(names: Sequence[str] = ("relu", "gelu", "gelu_tanh"), low: float = -4.0, high: float = 4.0,
                     title: str = "Activation functions of the feed-forward network"):
    """Two panels: each activation of ``feed_forward.ACTIVATIONS`` and its derivative (by autograd)."""
    x = torch.linspace(low, high, 801, dtype=torch.float64, requires_grad=True)
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(10.0, 3.4))
    styles = ["-", "--", ":"]
    for i, name in enumerate(names):
        y = get_activation(name)(x)
        (dy,) = torch.autograd.grad(y.sum(), x)
        for ax, values in ((ax_f, y), (ax_d, dy)):
            ax.plot(to_numpy(x.detach()), to_numpy(values.detach()), styles[i % len(styles)],
                    color=_COLOURS[i % len(_COLOURS)], label=name, linewidth=1.8)
    for ax, label in ((ax_f, "f(x)"), (ax_d, "f'(x)")):
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.axvline(0, color="grey", linewidth=0.5)
        ax.set_xlabel("x")
        ax.set_ylabel(label)
        ax.legend(frameon=False, fontsize=9)
    ax_f.set_title("the function")
    ax_d.set_title("its derivative")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_patches(image: torch.Tensor, patch_size: int, title: str = ""):
    """A grey image ``(Hi, Wi)`` with its patch grid numbered row by row, beside the patch sequence
    ``(N, p * p)`` that the model reads (one row per patch, one column per pixel)."""
    image = torch.as_tensor(image)
    if image.dim() != 2:
        raise ValueError(f"image must be one grey image (Hi, Wi), got shape {tuple(image.shape)}")
    Hi, Wi = image.shape
    p = int(patch_size)
    if p <= 0 or Hi % p or Wi % p:
        raise ValueError(f"patch_size={patch_size} must be positive and divide the image size {Hi} x {Wi}")
    patches = image_to_patches(image[None, None].float(), p)[0]    # (Hi, Wi) -> (N, p*p)
    fig, (ax_i, ax_s) = plt.subplots(1, 2, figsize=(9.0, 3.6), gridspec_kw={"width_ratios": [1, 1.3]})
    ax_i.imshow(to_numpy(image), cmap="Greys", vmin=0, vmax=1)
    for k in range(1, Hi // p):
        ax_i.axhline(k * p - 0.5, color="#D55E00", linewidth=1.5)
    for k in range(1, Wi // p):
        ax_i.axvline(k * p - 0.5, color="#D55E00", linewidth=1.5)
    for n in range(patches.shape[0]):
        r, c = divmod(n, Wi // p)
        ax_i.text(c * p + 0.2, r * p + 0.9, str(n), color="#0072B2", fontsize=8, fontweight="bold",
                  bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5, "alpha": 0.8})
    ax_i.set_xticks([])
    ax_i.set_yticks([])
    ax_i.set_title(f"{Hi} x {Wi} image, {p} x {p} patches")
    ax_s.imshow(to_numpy(patches), cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax_s.set_xlabel(f"pixel inside the patch (row by row): {p * p} numbers")
    ax_s.set_ylabel("patch = token")
    ax_s.set_yticks(range(patches.shape[0]))
    ax_s.set_title(f"the sequence: {patches.shape[0]} tokens of {p * p} numbers")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
