"""Pictures and the explorer of lesson 03 (scaled dot-product attention).

Attention heat maps themselves are :func:`~transformer_lib.plotting.core.plot_attention` (one
``(T, S)`` matrix) and :func:`~transformer_lib.plotting.core.plot_attention_heads` (a grid).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from .core import SEQUENTIAL_CMAP, explorer, heatmap, plot_attention, to_numpy

__all__ = ["plot_scaling_experiment", "plot_weight_bars", "plot_masks", "plot_rnn_vs_attention",
           "plot_recall_vs_length", "plot_query_attention", "attention_explorer"]


def plot_scaling_experiment(d_ks: Sequence[int], variance: Mapping[str, Sequence[float]],
                            max_weight: Mapping[str, Sequence[float]], grad_norm: Mapping[str, Sequence[float]]):
    """Three panels against d_k: the variance of q·k, the largest softmax weight, the softmax's gradient.

    Args:
        d_ks: the sizes d_k that were tried (x axis, log scale).
        variance, max_weight, grad_norm: ``{"unscaled": [...], "scaled": [...]}``, one value per d_k,
            for scores q·k and q·k / √d_k.

    Returns:
        the Figure.
    """
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.4))
    colours = {"unscaled": plt.get_cmap(SEQUENTIAL_CMAP)(0.15), "scaled": plt.get_cmap(SEQUENTIAL_CMAP)(0.7)}
    labels = {"unscaled": r"$q \cdot k$", "scaled": r"$q \cdot k / \sqrt{d_k}$"}
    panels = [(variance, "variance of the scores", "the scores' variance grows with $d_k$", True),
              (max_weight, "largest softmax weight", "unscaled, the softmax saturates", False),
              (grad_norm, "size of the softmax's gradient", "... and its gradient vanishes", False)]
    for ax, (data, ylabel, title, logy) in zip(axes, panels):
        for name in ("unscaled", "scaled"):
            ax.plot(d_ks, data[name], "o-", color=colours[name], label=labels[name], markersize=4)
        ax.set_xscale("log", base=2)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("$d_k$ (size of queries and keys)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    axes[1].set_ylim(0, 1.05)
    axes[2].set_ylim(0, None)
    axes[0].legend(loc="upper left", fontsize=9)
    fig.tight_layout()
    return fig


def plot_weight_bars(weights, key_tokens: Sequence[str], title: str = "Attention weights of one query",
                     ax=None, highlight: int | None = None):
    """Bar chart of one query's weights over the keys (they sum to 1).

    Args:
        weights: ``(S,)`` weights of one query.
        key_tokens: the ``S`` key tokens (x tick labels).
        highlight: index of a key to draw in another colour (e.g. the query's own position).

    Returns:
        the axes.
    """
    w = to_numpy(weights)
    if w.ndim != 1 or len(w) != len(key_tokens):
        raise ValueError(f"expected ({len(key_tokens)},) weights for {len(key_tokens)} keys, got shape {w.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.55 * len(w) + 1.5), 3.0))
    cmap = plt.get_cmap(SEQUENTIAL_CMAP)
    colours = [cmap(0.8) if i == highlight else cmap(0.3) for i in range(len(w))]
    ax.bar(range(len(w)), w, color=colours)
    for i, value in enumerate(w):
        ax.text(i, value + 0.02, f"{value:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(w)))
    ax.set_xticklabels(list(key_tokens), rotation=45 if max(len(t) for t in key_tokens) > 3 else 0)
    ax.set_ylim(0, 1.12)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("weight")
    ax.set_title(title)
    return ax


def plot_masks(masks: Mapping[str, object], query_tokens: Sequence[str] | None = None,
               key_tokens: Sequence[str] | None = None):
    """Draw bool masks side by side: yellow = may attend (True), dark = blocked (False).

    Args:
        masks: ``{title: (T, S) bool mask}``.
        query_tokens, key_tokens: tick labels (rows are queries, columns keys).

    Returns:
        the Figure.
    """
    fig, axes = plt.subplots(1, len(masks), figsize=(3.3 * len(masks) + 0.4, 3.3), squeeze=False)
    for ax, (title, mask) in zip(axes[0], masks.items()):
        m = to_numpy(mask).astype(float)
        heatmap(m, key_tokens, query_tokens, title=title, xlabel="key", ylabel="query", ax=ax, vmin=0, vmax=1,
                colorbar=False)
        for (i, j), value in np.ndenumerate(m):
            ax.text(j, i, "✓" if value else "·", ha="center", va="center", fontsize=9,
                    color="black" if value else "white")
    fig.suptitle("✓ yellow = True, may attend      · dark = False, blocked", fontsize=9, y=0.02, va="bottom")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_rnn_vs_attention(lengths: Sequence[int], rnn_ms: Sequence[float], attention_ms: Sequence[float],
                          title: str = "RNN vs attention on the CPU"):
    """Time of one forward pass of ``nn.RNN`` and of attention against the sequence length (log-log).

    Returns:
        the Figure.
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    cmap = plt.get_cmap(SEQUENTIAL_CMAP)
    ax.plot(lengths, rnn_ms, "o-", color=cmap(0.15), label="nn.RNN: T sequential steps")
    ax.plot(lengths, attention_ms, "s-", color=cmap(0.7), label="attention: all pairs at once")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("time of one forward pass (ms)")
    ax.set_title(title)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_recall_vs_length(lengths: Sequence[int], accuracy: Mapping[str, Sequence[float]], chance: float,
                          title: str = "Recall the first token, same training budget"):
    """Held-out accuracy of each model (``{"name": [accuracy per length]}``) against the distance
    the answer lies back (log x axis), with the chance level as a dashed line.

    Returns:
        the Figure.
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    cmap = plt.get_cmap(SEQUENTIAL_CMAP)
    for n, (name, values) in enumerate(accuracy.items()):
        ax.plot(lengths, values, "os"[n % 2] + "-", color=cmap(0.15 + 0.55 * n), label=name)
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance (1/{round(1 / chance)})")
    ax.set_xscale("log")
    ax.set_xticks(list(lengths), [str(t) for t in lengths])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("T: how many tokens back the answer lies")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def plot_query_attention(weights, tokens: Sequence[str], query: int):
    """One query's weights as bars (left) beside the whole ``(T, T)`` matrix with its row framed (right).

    Returns:
        the Figure.
    """
    w = to_numpy(weights)
    if w.ndim != 2 or w.shape != (len(tokens), len(tokens)):
        raise ValueError(f"expected ({len(tokens)}, {len(tokens)}) self-attention weights, got shape {w.shape}")
    if not 0 <= query < len(tokens):
        raise ValueError(f"query must be a position in 0..{len(tokens) - 1}, got {query}")
    fig, (ax_bars, ax_map) = plt.subplots(1, 2, figsize=(10.5, 3.6), gridspec_kw={"width_ratios": [1.2, 1]})
    plot_weight_bars(w[query], tokens, title=f"query {query} '{tokens[query]}' attends to ... (light bar: itself)",
                     ax=ax_bars, highlight=query)
    plot_attention(w, tokens, tokens, title="all queries (framed: the chosen one)", ax=ax_map)
    ax_map.images[-1].colorbar.set_label("weight")
    ax_map.add_patch(plt.Rectangle((-0.5, query - 0.5), len(tokens), 1, fill=False, edgecolor="red", lw=2))
    fig.tight_layout()
    return fig


def attention_explorer(sentences: Mapping[str, Sequence[str]], attend: Callable[[Sequence[str], float], object],
                       temperature: bool = True):
    """Pick a sentence and a query token; see the query's attention weights as bars.

    Args:
        sentences: ``{name: tokens}`` offered in a drop-down.
        attend: ``attend(tokens, sharpness)`` returns the ``(T, T)`` self-attention weights of the
            tokens; ``sharpness`` multiplies the scores (1 = as computed).
        temperature: also offer a slider for ``sharpness``.

    Returns:
        the :class:`~transformer_lib.plotting.core.Explorer`. Its picture: the query's weights
        as bars (left) and the whole matrix with the query's row framed (right).
    """
    names = list(sentences)
    if not names:
        raise ValueError("attention_explorer needs at least one sentence")
    sentence = widgets.Dropdown(options=names, value=names[0], description="sentence",
                                layout=widgets.Layout(width=f"{min(560, 150 + 8 * max(map(len, names)))}px"))

    def query_options(name):
        return [(f"{i}: {tok}", i) for i, tok in enumerate(sentences[name])]

    query = widgets.Dropdown(options=query_options(names[0]), value=0, description="query",
                             layout=widgets.Layout(width="200px"))

    def on_sentence(change):   # registered before the explorer's own observer: options first
        query.options = query_options(change["new"])
        query.value = 0

    sentence.observe(on_sentence, names="value")

    def draw(sentence: str, query: int, sharpness: float = 1.0):
        tokens = list(sentences[sentence])
        return plot_query_attention(attend(tokens, sharpness), tokens, min(query, len(tokens) - 1))

    controls = {"sentence": sentence, "query": query}
    if temperature:
        controls["sharpness"] = widgets.FloatLogSlider(value=1.0, base=2, min=-2, max=3, step=0.5,
                                                       description="sharpness")
    return explorer(draw, **controls)
