"""Lesson 01's pictures: one-hot vectors, the scale of embeddings, cosine similarities."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from .core import DIVERGING_CMAP, heatmap, to_numpy
from .course import OKABE_ITO

__all__ = ["plot_one_hot", "plot_embedding_scale", "plot_cosine_similarity"]


def _crisp():
    """Draw heat maps cell by cell (no resampling): sharper, and PNGs a third of the size."""
    return mpl.rc_context({"image.interpolation": "nearest"})


def _visible(token: str) -> str:
    """A token as a tick label: a space as '␣', other whitespace escaped."""
    return "␣" if token == " " else (repr(token)[1:-1] if token.isspace() else token)


def plot_one_hot(one_hot, row_labels: Sequence[str], vocabulary: Sequence[str], title: str = "One-hot vectors"):
    """A ``(T, V)`` one-hot matrix: one row per token of the text, one column per vocabulary entry.

    The columns are labelled with the tokens below (a space shows as '␣') and their ids above;
    yellow = 1, dark = 0. Returns the Figure.
    """
    m = to_numpy(one_hot)
    fig, ax = plt.subplots(figsize=(min(1.4 + 0.24 * m.shape[1], 10.0), 1.9 + 0.3 * m.shape[0]))
    with _crisp():
        heatmap(m, [_visible(t) for t in vocabulary], [_visible(t) for t in row_labels], title=title,
                xlabel="vocabulary entry (yellow = 1, dark = 0)", ylabel="token of the text", ax=ax, vmin=0, vmax=1,
                colorbar=False)
    plt.setp(ax.get_xticklabels(), rotation=90, fontsize=8)
    plt.setp(ax.get_yticklabels(), fontsize=10)
    ids = ax.secondary_xaxis("top")
    ids.set_xticks(range(m.shape[1]))
    ids.set_xticklabels([str(i) for i in range(m.shape[1])], fontsize=7)
    ids.set_xlabel("token id", fontsize=8)
    fig.tight_layout()
    return fig


def plot_embedding_scale(d_models: Sequence[int], norms: Mapping[str, Sequence[float]],
                         values: Mapping[str, object], d_model_shown: int):
    """Why the embeddings are multiplied by sqrt(d_model), in two panels.

    Args:
        d_models: the sizes on the x-axis of the left panel.
        norms: label -> average vector length for each size in ``d_models``.
        values: label -> a tensor of the components at ``d_model_shown`` (right panel's histograms).
        d_model_shown: the size whose components the right panel shows.

    Returns the Figure.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.6))
    markers, styles = "osd^v", ["-", "--", ":", "-.", "-"]
    for (label, ys), marker, colour in zip(norms.items(), markers, OKABE_ITO):
        left.plot(d_models, ys, marker=marker, color=colour, label=label)
    left.set_xscale("log", base=2)
    left.set_yscale("log", base=2)
    left.set_xlabel("d_model")
    left.set_ylabel("average vector length (norm)")
    left.set_title("Length of a vector vs d_model")
    left.legend(fontsize=8)
    bins = np.linspace(-3, 3, 61)
    for (label, v), style, colour in zip(values.items(), styles, OKABE_ITO):
        right.hist(to_numpy(v).ravel(), bins=bins, histtype="step", linewidth=1.6, linestyle=style, color=colour,
                   density=True, label=label)
    right.set_xlabel("value of one component")
    right.set_ylabel("density")
    right.set_title(f"Component values at d_model={d_model_shown}")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cosine_similarity(similarities: Mapping[str, object], labels: Sequence[str], annotate: bool = False):
    """One or more ``(N, N)`` cosine-similarity matrices side by side (title -> matrix), in
    ``RdBu_r`` from -1 (blue) through 0 (white) to +1 (red). Returns the Figure."""
    n = len(similarities)
    size = 1.6 + 0.28 * len(labels)
    fig, axes = plt.subplots(1, n, figsize=(size * n + 0.8, size), squeeze=False)
    for ax, (title, sim) in zip(axes[0], similarities.items()):
        with _crisp():
            heatmap(sim, list(labels), list(labels), title=title, ax=ax, cmap=DIVERGING_CMAP, vmin=-1.0, vmax=1.0,
                    annotate=annotate, colorbar=ax is axes[0, -1])
    axes[0, -1].images[0].colorbar.set_label("cosine similarity")
    fig.supxlabel("token", fontsize=9)
    fig.supylabel("token", fontsize=9)
    fig.tight_layout()
    return fig
