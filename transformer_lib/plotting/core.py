"""Shared plotting helpers: the course's figure style, heat maps, attention pictures, explorers.

This package is the only part of ``transformer_lib`` that imports matplotlib and ipywidgets,
so the model code imports fast.
"""
from __future__ import annotations

import io
from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["use_course_style", "heatmap", "plot_attention", "plot_attention_heads", "to_numpy", "explorer", "Explorer"]

#: Perceptually uniform, colour-blind safe colour maps used throughout the course.
SEQUENTIAL_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"


#: The figure style of every lesson: small PNGs (72 dpi) so the notebooks stay small in git.
COURSE_STYLE = {
    "figure.dpi": 72, "savefig.dpi": 72, "figure.figsize": (6.0, 3.6),
    "image.cmap": SEQUENTIAL_CMAP, "axes.grid": False, "font.size": 10,
    "axes.titlesize": 11, "axes.spines.top": False, "axes.spines.right": False,
}


def use_course_style() -> None:
    """Set matplotlib's defaults to :data:`COURSE_STYLE` (``runtime.setup_notebook`` calls it)."""
    mpl.rcParams.update(COURSE_STYLE)


def to_numpy(x) -> np.ndarray:
    """A detached CPU NumPy copy of a tensor (or an array as is)."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def heatmap(matrix, x_labels: Sequence[str] | None = None, y_labels: Sequence[str] | None = None,
            title: str = "", xlabel: str = "", ylabel: str = "", ax=None, cmap: str = SEQUENTIAL_CMAP,
            vmin: float | None = None, vmax: float | None = None, colorbar: bool = True, annotate: bool = False):
    """Draw a 2-D array as a heat map with optional tick labels; returns the axes."""
    m = to_numpy(matrix)
    if m.ndim != 2:
        raise ValueError(f"heatmap draws a 2-D matrix, got shape {m.shape}")
    if ax is None:
        _, ax = plt.subplots()
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    for labels, set_ticks, set_labels, n in ((x_labels, ax.set_xticks, ax.set_xticklabels, m.shape[1]),
                                             (y_labels, ax.set_yticks, ax.set_yticklabels, m.shape[0])):
        if labels is not None:
            if len(labels) != n:
                raise ValueError(f"{len(labels)} labels for {n} rows/columns")
            set_ticks(range(n))
            set_labels(list(labels))
    if x_labels is not None and max((len(str(s)) for s in x_labels), default=0) > 2:
        plt.setp(ax.get_xticklabels(), rotation=90)
    if annotate:
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v < (np.nanmax(m) + np.nanmin(m)) / 2 else "black")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_attention(weights, query_tokens: Sequence[str] | None = None, key_tokens: Sequence[str] | None = None,
                   title: str = "Attention weights", ax=None, colorbar: bool = True):
    """Heat map of one ``(T, S)`` attention matrix: row = query, column = key, colour = weight."""
    w = to_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"plot_attention draws one (T, S) matrix, got shape {w.shape}; pick a batch element and head")
    return heatmap(w, key_tokens, query_tokens, title=title, xlabel="key (attended to)",
                   ylabel="query (attending)", ax=ax, vmin=0.0, vmax=1.0, colorbar=colorbar)


def plot_attention_heads(weights, query_tokens: Sequence[str] | None = None, key_tokens: Sequence[str] | None = None,
                         title: str = "", layer_names: Sequence[str] | None = None, size: float = 2.2):
    """A grid of attention maps: ``(H, T, S)`` gives one row of heads, ``(L, H, T, S)`` one row per layer."""
    w = to_numpy(weights)
    if w.ndim == 3:
        w = w[None]
    if w.ndim != 4:
        raise ValueError(f"expected (H, T, S) or (L, H, T, S) weights, got shape {w.shape}")
    L, H = w.shape[:2]
    fig, axes = plt.subplots(L, H, figsize=(size * H + 0.6, size * L + 0.6), squeeze=False)
    for l in range(L):
        for h in range(H):
            ax = axes[l, h]
            ax.imshow(w[l, h], cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
            ax.set_title(f"head {h}" if L == 1 else f"{(layer_names or [f'layer {i}' for i in range(L)])[l]}, head {h}",
                         fontsize=9)
            show_y, show_x = h == 0, l == L - 1
            ax.set_yticks(range(w.shape[2]) if show_y and query_tokens is not None else [])
            if show_y and query_tokens is not None:
                ax.set_yticklabels(query_tokens, fontsize=8)
            ax.set_xticks(range(w.shape[3]) if show_x and key_tokens is not None else [])
            if show_x and key_tokens is not None:
                ax.set_xticklabels(key_tokens, fontsize=8, rotation=90)
    fig.supxlabel("key (attended to)", fontsize=9)
    fig.supylabel("query (attending)", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class Explorer(widgets.VBox):
    """Controls above a picture that is redrawn whenever a control changes.

    The picture is a PNG in an ``ipywidgets.Image`` (no Output widget), so the explorer behaves
    the same in JupyterLab, on Binder and when a notebook is executed by the tests. Where
    widgets cannot be shown (a notebook viewed on GitHub) its text says so; each lesson puts a
    static picture beside every explorer.
    """

    def __init__(self, draw: Callable[..., "plt.Figure"], controls: dict[str, widgets.ValueWidget]):
        self._draw, self.controls = draw, controls
        self.image = widgets.Image(format="png")
        for control in controls.values():
            control.observe(lambda change: self.redraw(), names="value")
        super().__init__([widgets.HBox(list(controls.values())), self.image])
        self.redraw()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self) -> None:
        with plt.ioff():
            fig = self._draw(**self.values())
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=mpl.rcParams["figure.dpi"], bbox_inches="tight")
            plt.close(fig)
        self.image.value = buffer.getvalue()

    def __repr__(self) -> str:
        return f"Explorer({', '.join(self.controls)}): run it in Jupyter to use the controls"


def explorer(draw: Callable[..., "plt.Figure"], **controls: widgets.ValueWidget) -> Explorer:
    """An interactive explorer: ``draw(**values)`` must return a matplotlib Figure.

    Example:
        explorer(lambda d: plot_something(d), d=widgets.IntSlider(8, 2, 64, description="d_model"))
    """
    if not controls:
        raise ValueError("explorer needs at least one control, e.g. n=widgets.IntSlider(3, 1, 10)")
    for name, control in controls.items():
        if not isinstance(control, widgets.ValueWidget):
            raise TypeError(f"control {name!r} must be an ipywidgets value widget, got {type(control).__name__}")
        control.continuous_update = False
    return Explorer(draw, controls)
