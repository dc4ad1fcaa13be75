"""Pictures and explorers of lesson 13 (all-MiniLM-L6-v2 in our own encoder).

Legend: L layers, H heads, T tokens, N sentences, D = d_model.
"""
from __future__ import annotations

import textwrap
from typing import Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from .core import DIVERGING_CMAP, SEQUENTIAL_CMAP, explorer, heatmap, plot_attention, to_numpy

__all__ = ["plot_similarity_heatmap", "plot_topic_similarity", "plot_search_results", "search_explorer", "plot_pitfalls",
           "plot_head_roles", "layer_head_explorer", "plot_all_heads"]


def _short(text: str, width: int = 48) -> str:
    return textwrap.shorten(text, width=width, placeholder="…")


def plot_similarity_heatmap(embeddings, labels: Sequence[str], title: str = "Cosine similarity of sentence embeddings",
                            size: float = 0.32):
    """The ``(N, N)`` matrix of cosine similarities between ``N`` unit-length embeddings.

    The diagonal (each sentence with itself, always 1) is left blank so that the colour scale
    shows the differences between sentences.

    Args:
        embeddings: ``(N, D)`` L2-normalised sentence embeddings.
        labels: ``N`` tick labels (shortened to fit).

    Returns:
        the Figure.
    """
    e = to_numpy(embeddings)
    if e.ndim != 2 or e.shape[0] != len(labels):
        raise ValueError(f"expected (N, D) embeddings for {len(labels)} labels, got shape {e.shape}")
    sim = e @ e.T                                                          # (N, D) @ (D, N) -> (N, N)
    np.fill_diagonal(sim, np.nan)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(3.2 + size * n, 1.4 + size * n))
    short = [_short(s, 34) for s in labels]
    heatmap(sim, short, short, title=title, xlabel="sentence", ylabel="sentence", ax=ax,
            cmap=SEQUENTIAL_CMAP, vmin=min(0.0, float(np.nanmin(sim))), vmax=float(np.nanmax(sim)))
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def plot_topic_similarity(embeddings, topics: Sequence[str]):
    """The mean cosine similarity between the sentences of every two topics (a sentence is not
    paired with itself): a bright diagonal means sentences of one topic are alike."""
    e = to_numpy(embeddings)
    if e.ndim != 2 or e.shape[0] != len(topics):
        raise ValueError(f"expected (N, D) embeddings for {len(topics)} topics, got shape {e.shape}")
    names = list(dict.fromkeys(topics))
    groups = [np.array([i for i, t in enumerate(topics) if t == name]) for name in names]
    sim = e @ e.T                                                          # (N, N)
    np.fill_diagonal(sim, np.nan)
    mean = np.array([[np.nanmean(sim[np.ix_(a, b)]) for b in groups] for a in groups])   # (K, K)
    fig, ax = plt.subplots(figsize=(0.45 * len(names) + 2.4, 0.4 * len(names) + 1.4))
    heatmap(mean, names, names, title="Mean cosine similarity between topics", xlabel="topic", ylabel="topic",
            ax=ax, cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=float(mean.max()), annotate=True)
    for text in ax.texts:
        text.set_fontsize(6)
    fig.tight_layout()
    return fig


def plot_search_results(query: str, sentences: Sequence[str], scores, topics: Sequence[str] | None = None, ax=None):
    """A horizontal bar per match, best on top, with its cosine similarity to the query.

    Args:
        query: the query text (in the title).
        sentences: the matched sentences, best first.
        scores: their cosine similarities.
        topics: optional topic of each match (shown in brackets).
    """
    s = to_numpy(scores).reshape(-1)
    if len(s) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(s)} scores")
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.45 * len(s) + 1.2))
    labels = [_short(t, 60) + (f"  [{topics[i]}]" if topics is not None else "") for i, t in enumerate(sentences)]
    y = np.arange(len(s))[::-1]
    ax.barh(y, s, color=plt.get_cmap(SEQUENTIAL_CMAP)(0.35 + 0.5 * np.clip(s, 0, 1)))
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    for yi, si in zip(y, s):
        ax.text(si + 0.01, yi, f"{si:.2f}", va="center", fontsize=8)
    ax.set_xlim(min(0.0, float(s.min()) - 0.05), 1.0)
    ax.set_xlabel("cosine similarity to the query")
    ax.set_title(f"Top {len(s)} matches for: {_short(query, 60)!r}")
    ax.figure.tight_layout()
    return ax.figure


def search_explorer(search: Callable[[str], tuple[Sequence[str], Sequence[float], Sequence[str] | None]],
                    query: str = "How do I make bread rise?"):
    """A query box: type a question, press Enter, see the best matches with their cosine scores.

    Args:
        search: ``search(query) -> (sentences, scores, topics or None)``, best first.
        query: the first query shown.

    Returns:
        the :class:`~transformer_lib.plotting.core.Explorer`.
    """
    def draw(query: str):
        if not query.strip():
            fig, ax = plt.subplots(figsize=(7.5, 1.2))
            ax.axis("off")
            ax.set_title("type a query and press Enter")
            return fig
        sentences, scores, topics = search(query)
        return plot_search_results(query, sentences, scores, topics)

    box = widgets.Text(value=query, description="query", placeholder="type a question, press Enter",
                       layout=widgets.Layout(width="36em"))
    return explorer(draw, query=box)


def plot_pitfalls(results: Mapping[str, Mapping[str, float]], tolerance: float = 1e-5):
    """How far each mistake moves the embeddings: two bar charts, one bar per mistake.

    Args:
        results: ``{mistake: {"cosine": smallest cosine to the correct embedding,
            "max_diff": largest absolute difference}}``.
        tolerance: the largest difference the course accepts (drawn as a line).
    """
    names = list(results)
    gap = np.array([max(1.0 - results[n]["cosine"], 1e-9) for n in names])
    diff = np.array([max(results[n]["max_diff"], 1e-9) for n in names])
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 0.42 * len(names) + 1.4), sharey=True)
    y = np.arange(len(names))[::-1]
    colours = plt.get_cmap(SEQUENTIAL_CMAP)(np.linspace(0.15, 0.85, len(names)))
    for ax, values, title, xlabel in (
            (axes[0], gap, "1 − cosine to the correct embedding (worst sentence)", "1 − cosine (log scale)"),
            (axes[1], diff, "largest |difference| of an embedding entry", "max |difference| (log scale)")):
        ax.barh(y, values, color=colours)
        ax.set_xscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
    axes[1].axvline(tolerance, color="black", ls="--", lw=1)
    axes[1].text(tolerance, len(names) - 0.4, f" tolerance {tolerance:g}", fontsize=8)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(names, fontsize=9)
    fig.tight_layout()
    return fig


def plot_head_roles(scores: Mapping[str, torch.Tensor]):
    """One ``(L, H)`` heat map per role: how much weight each head puts on that kind of token.

    The strongest head of each role is framed.
    """
    roles = list(scores)
    fig, axes = plt.subplots(1, len(roles), figsize=(3.3 * len(roles) + 0.6, 2.9), squeeze=False)
    for ax, role in zip(axes[0], roles):
        s = to_numpy(scores[role])
        L, H = s.shape
        heatmap(s, [str(h) for h in range(H)], [str(l) for l in range(L)], title=role, xlabel="head",
                ylabel="layer", ax=ax, vmin=0.0, vmax=1.0, cmap=SEQUENTIAL_CMAP)
        l, h = np.unravel_index(np.argmax(s), s.shape)
        ax.add_patch(plt.Rectangle((h - 0.5, l - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
        ax.tick_params(labelsize=7)
    fig.suptitle("Mean attention weight on each kind of token (red: the strongest head)", fontsize=11)
    fig.tight_layout()
    return fig


def plot_all_heads(tokens: Sequence[str], weights, title: str = ""):
    """Every head of every layer on one sentence: an ``L x H`` grid of ``(T, T)`` attention maps."""
    w = to_numpy(weights)
    if w.ndim != 4 or w.shape[2:] != (len(tokens), len(tokens)):
        raise ValueError(f"expected (L, H, T, T) weights with T={len(tokens)}, got shape {w.shape}")
    L, H = w.shape[:2]
    fig, axes = plt.subplots(L, H, figsize=(0.95 * H + 1.2, 0.95 * L + 1.0), squeeze=False)
    for l in range(L):
        for h in range(H):
            ax = axes[l, h]
            ax.imshow(w[l, h], cmap=SEQUENTIAL_CMAP, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if l == 0:
                ax.set_title(f"head {h}", fontsize=8)
            if h == 0:
                ax.set_ylabel(f"layer {l}", fontsize=8)
    fig.supxlabel("key (attended to) →   each small map: rows = query tokens, columns = key tokens", fontsize=9)
    fig.suptitle(title or f"All {L * H} heads on: {' '.join(tokens)}", fontsize=10)
    fig.tight_layout()
    return fig


def layer_head_explorer(attention: Callable[[str], tuple[Sequence[str], torch.Tensor]], sentences: Sequence[str],
                        head_names: Mapping[tuple[int, int], str] | None = None):
    """Pick a sentence, a layer and a head; see that head's ``(T, T)`` attention map.

    Args:
        attention: ``attention(sentence) -> (tokens, weights (L, H, T, T))``.
        sentences: the choices of the sentence menu.
        head_names: optional ``{(layer, head): role}`` shown in the title.
    """
    cache: dict[str, tuple[Sequence[str], np.ndarray]] = {}

    def maps(sentence: str):
        if sentence not in cache:
            tokens, w = attention(sentence)
            cache[sentence] = (tokens, to_numpy(w))
        return cache[sentence]

    _, w0 = maps(sentences[0])
    L, H = w0.shape[:2]
    names = dict(head_names or {})

    def draw(sentence: str, layer: int, head: int):
        tokens, w = maps(sentence)
        n = len(tokens)
        fig, ax = plt.subplots(figsize=(2.6 + 0.26 * n, 1.9 + 0.24 * n))
        role = names.get((layer, head), "")
        plot_attention(w[layer, head], tokens, tokens, ax=ax,
                       title=f"layer {layer}, head {head}" + (f" ({role})" if role else ""))
        fig.tight_layout()
        return fig

    return explorer(draw,
                    sentence=widgets.Dropdown(options=list(sentences), value=sentences[0], description="sentence",
                                              layout=widgets.Layout(width="30em")),
                    layer=widgets.IntSlider(value=0, min=0, max=L - 1, description="layer"),
                    head=widgets.IntSlider(value=0, min=0, max=H - 1, description="head"))
