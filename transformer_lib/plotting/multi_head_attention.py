"""Pictures and the explorer of lesson 04 (multi-head attention)."""
from __future__ import annotations

from typing import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from .core import SEQUENTIAL_CMAP, explorer, plot_attention, to_numpy

__all__ = ["plot_head_split", "head_explorer"]


def plot_head_split(T: int, D: int, H: int):
    """How ``split_heads`` cuts ``(T, D)`` features into ``H`` heads of ``(T, d_k)``.

    Left: the projected tokens, one row per token, each column coloured by the head it goes
    to (head h gets the block of columns h*d_k ... (h+1)*d_k - 1). Right: the H slices, each
    a ``(T, d_k)`` matrix that the head attends with on its own.

    Returns:
        the Figure.
    """
    if D % H:
        raise ValueError(f"D={D} is not divisible by H={H}")
    d_k = D // H
    colours = ListedColormap(plt.get_cmap(SEQUENTIAL_CMAP)(np.linspace(0.1, 0.9, H)))
    owner = np.repeat(np.arange(H), d_k)[None, :].repeat(T, axis=0)       # (T, D): head of each feature
    fig = plt.figure(figsize=(3.0 + 0.25 * D + 1.2 * H, 2.6))
    grid = fig.add_gridspec(1, H + 1, width_ratios=[D] + [d_k] * H, wspace=0.6)
    ax = fig.add_subplot(grid[0])
    ax.imshow(owner, cmap=colours, vmin=-0.5, vmax=H - 0.5, aspect="auto")
    for h in range(1, H):
        ax.axvline(h * d_k - 0.5, color="white", lw=2)
    ax.set_title(f"projected tokens (T={T}, D={D})", fontsize=10)
    ax.set_xlabel("feature")
    ax.set_ylabel("token")
    for h in range(H):
        ax_h = fig.add_subplot(grid[h + 1])
        ax_h.imshow(np.full((T, d_k), h), cmap=colours, vmin=-0.5, vmax=H - 0.5, aspect="auto")
        ax_h.set_title(f"head {h}", fontsize=10)
        ax_h.set_xlabel(f"features {h * d_k}..{(h + 1) * d_k - 1}", fontsize=8)
        ax_h.set_yticks([])
        ax_h.set_xticks([])
    fig.suptitle(f"split_heads: (B, T, D) -> (B, H, T, d_k) with H={H}, d_k={d_k}", fontsize=11)
    fig.subplots_adjust(top=0.78, bottom=0.2)
    return fig


def head_explorer(weights, query_tokens: Sequence[str], key_tokens: Sequence[str] | None = None,
                  head_names: Sequence[str] | None = None):
    """Pick a head; see its ``(T, S)`` attention map.

    Args:
        weights: ``(H, T, S)`` weights of one sequence (e.g. ``mha.last_weights[0]``).
        query_tokens, key_tokens: tick labels (``key_tokens`` defaults to ``query_tokens``).
        head_names: optional descriptions shown in the title of each head.

    Returns:
        the :class:`~transformer_lib.plotting.core.Explorer`.
    """
    w = to_numpy(weights)
    if w.ndim != 3:
        raise ValueError(f"head_explorer expects (H, T, S) weights of one sequence, got shape {w.shape}")
    key_tokens = query_tokens if key_tokens is None else key_tokens
    H = w.shape[0]
    names = list(head_names) if head_names is not None else [""] * H
    if len(names) != H:
        raise ValueError(f"{len(names)} head names for {H} heads")
    head = widgets.Dropdown(options=[(f"head {h}" + (f": {n}" if n else ""), h) for h, n in enumerate(names)],
                            value=0, description="head")

    def draw(head: int):
        fig, ax = plt.subplots(figsize=(5.2, 4.2))
        title = f"head {head}" + (f": {names[head]}" if names[head] else "")
        plot_attention(w[head], query_tokens, key_tokens, title=title, ax=ax)
        fig.tight_layout()
        return fig

    return explorer(draw, head=head)
