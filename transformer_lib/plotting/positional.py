"""Lesson 02's pictures: the sinusoidal table, its wavelengths, relative positions, an explorer."""
from __future__ import annotations

from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from ..positional import sinusoidal_positional_encoding
from .core import DIVERGING_CMAP, Explorer, explorer, heatmap, to_numpy
from .course import OKABE_ITO

STYLES = ["-", "--", "-.", ":"]

__all__ = ["plot_positional_encoding", "plot_pe_curves", "plot_pe_dot_products", "plot_rotation_matrix",
           "draw_positional_encoding", "positional_encoding_explorer"]


def _crisp():
    """Draw heat maps cell by cell (no resampling): sharper, and PNGs a third of the size."""
    return mpl.rc_context({"image.interpolation": "nearest"})


def plot_positional_encoding(pe, title: str = "Sinusoidal positional encoding", ax=None):
    """Heat map of a ``(max_len, d_model)`` table: one row per position, one column per
    dimension, blue -1 to red +1. Returns the axes."""
    m = to_numpy(pe)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.8))
    with _crisp():
        heatmap(m, title=title, xlabel="dimension (column of the table)", ylabel="position", ax=ax,
                cmap=DIVERGING_CMAP, vmin=-1.0, vmax=1.0)
    ax.images[-1].colorbar.set_label("PE value")
    return ax


def plot_pe_curves(pe, dims: Sequence[int], ax=None, title: str = "A few columns of the table"):
    """Columns ``dims`` of a ``(max_len, d_model)`` table as curves over the positions.
    Returns the axes."""
    m = to_numpy(pe)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.0, 3.2))
    for n, d in enumerate(dims):
        kind = "sin" if d % 2 == 0 else "cos"
        ax.plot(np.arange(m.shape[0]), m[:, d], label=f"dim {d} ({kind}, i={d // 2})", linewidth=1.6,
                color=OKABE_ITO[n % len(OKABE_ITO)], linestyle=STYLES[n % len(STYLES)])
    ax.set_xlabel("position")
    ax.set_ylabel("value")
    ax.set_ylim(-1.15, 1.15)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_pe_dot_products(pe, starts: Sequence[int] = (0, 20, 40), max_offset: int = 40):
    """Left: the ``(max_len, max_len)`` matrix of dot products PE[p] . PE[q]. Right: PE[p] . PE[p + k]
    as a function of the offset k for several p (the curves coincide). Returns the Figure."""
    m = to_numpy(pe)
    gram = m @ m.T                                                  # (max_len, D) @ (D, max_len) -> (max_len, max_len)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    with _crisp():
        heatmap(gram, title="PE[p] · PE[q] for every pair of positions", xlabel="position q", ylabel="position p",
                ax=left)
    left.images[-1].colorbar.set_label("dot product")
    for n, p in enumerate(starts):
        ks = np.arange(-min(p, max_offset), min(m.shape[0] - 1 - p, max_offset) + 1)
        right.plot(ks, gram[p, p + ks], label=f"p = {p}", linewidth=3.0 if n == 0 else 1.4,
                   color=OKABE_ITO[n % len(OKABE_ITO)], linestyle=STYLES[n % len(STYLES)])
    right.axhline(0, color="grey", linewidth=0.6)
    right.set_xlabel("offset k = q − p")
    right.set_ylabel("PE[p] · PE[p + k]")
    right.set_title("The dot product depends on the offset k only")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_rotation_matrix(m, k: int):
    """Heat map of the ``(d_model, d_model)`` matrix M_k with PE[pos + k] = M_k PE[pos]. Returns the Figure."""
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    with _crisp():
        heatmap(m, title=f"M_k for k = {k}: one 2×2 rotation per pair", xlabel="column", ylabel="row", ax=ax,
                cmap=DIVERGING_CMAP, vmin=-1.0, vmax=1.0)
    ax.images[-1].colorbar.set_label("entry of M_k")
    d_model = to_numpy(m).shape[0]
    ax.set_xticks(range(0, d_model, 2))
    ax.set_yticks(range(0, d_model, 2))
    fig.tight_layout()
    return fig


def draw_positional_encoding(d_model: int = 64, max_len: int = 100, dimension: int = 6,
                             table_fn: Callable = sinusoidal_positional_encoding):
    """The table for ``(max_len, d_model)`` (left) and its column ``dimension`` with its pair
    partner (right). ``dimension`` is clipped to the table. Returns the Figure."""
    pe = to_numpy(table_fn(max_len, d_model))
    dimension = min(dimension, d_model - 1)
    pair = dimension - dimension % 2
    i = pair // 2
    wavelength = 2 * np.pi * 10000.0 ** (pair / d_model)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8), gridspec_kw={"width_ratios": [1.1, 1.0]})
    plot_positional_encoding(pe, title=f"PE table, max_len={max_len}, d_model={d_model}", ax=left)
    left.axvline(dimension, color="black", linewidth=1.2, linestyle="--")     # the column drawn on the right
    positions = np.arange(max_len)
    for n, d in enumerate((pair, pair + 1)):
        if d < d_model:
            right.plot(positions, pe[:, d], label=f"dim {d} ({'sin' if d % 2 == 0 else 'cos'})",
                       linewidth=2.4 if d == dimension else 1.2, color=OKABE_ITO[n], linestyle=STYLES[n])
    right.set_ylim(-1.15, 1.6)                                      # head-room for the legend
    right.set_xlabel("position")
    right.set_ylabel("value")
    right.set_title(f"pair i={i}: wavelength 2π·10000^({pair}/{d_model}) ≈ {wavelength:,.1f}")
    right.legend(fontsize=8, loc="upper center", ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def positional_encoding_explorer(d_model: int = 64, max_len: int = 100, dimension: int = 6,
                                 table_fn: Callable = sinusoidal_positional_encoding) -> Explorer:
    """Sliders for ``d_model``, ``max_len`` and the ``dimension`` shown as a curve, redrawing
    :func:`draw_positional_encoding` with ``table_fn`` (the lesson passes its own function)."""
    controls = dict(
        d_model=widgets.IntSlider(d_model, min=2, max=128, step=2, description="d_model"),
        max_len=widgets.IntSlider(max_len, min=10, max=300, step=10, description="max_len"),
        dimension=widgets.IntSlider(dimension, min=0, max=127, step=1, description="dimension"),
    )
    return explorer(lambda **v: draw_positional_encoding(**v, table_fn=table_fn), **controls)
