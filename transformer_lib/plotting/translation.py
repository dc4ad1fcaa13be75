"""Lesson 09's pictures: tokenizations compared, training curves with BLEU, BLEU against
training time, time per step against sentence length, word alignments from cross-attention,
and the "translate your own sentence" explorer."""
from __future__ import annotations

from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from .core import SEQUENTIAL_CMAP, explorer, plot_attention, to_numpy

__all__ = ["plot_vocabulary_tradeoff", "plot_translation_history", "plot_bleu_against_time", "plot_step_times",
           "plot_alignments", "plot_translation", "translation_explorer"]


def _colour(x: float):
    return plt.get_cmap(SEQUENTIAL_CMAP)(x)


def plot_vocabulary_tradeoff(merges: Sequence[int], vocab_sizes: Sequence[int], tokens_per_sentence: Sequence[float],
                             references: dict[str, tuple[int, float]] | None = None, chosen: int | None = None,
                             title: str = "BPE: vocabulary size against sequence length"):
    """Mean tokens per sentence against vocabulary size for BPE with more and more merges, with
    other tokenizations (``{name: (vocabulary size, tokens per sentence)}``) as points. Returns the Figure."""
    fig, ax = plt.subplots(figsize=(7.0, 3.4))
    ax.plot(vocab_sizes, tokens_per_sentence, "o-", color=_colour(0.35), markersize=3, label="BPE")
    for m, v, t in zip(merges, vocab_sizes, tokens_per_sentence):
        if m == chosen or m == merges[0] or m == merges[-1]:
            ax.annotate(f"{m} merges", (v, t), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if chosen is not None and chosen in merges:
        i = list(merges).index(chosen)
        ax.plot([vocab_sizes[i]], [tokens_per_sentence[i]], "o", color=_colour(0.85), markersize=9, zorder=0)
    for k, (name, (v, t)) in enumerate((references or {}).items()):
        ax.plot([v], [t], "s", color=_colour(0.6 + 0.3 * k), markersize=7)
        ax.annotate(name, (v, t), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("vocabulary size (log scale)")
    ax.set_ylabel("tokens per sentence (mean)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_translation_history(history, metric: str = "dev_bleu", smooth: int = 20,
                             title: str = "Training the Transformer"):
    """Training loss per step (and its running mean), and BLEU on the development set over the
    steps. Returns the Figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.2))
    steps, loss = np.asarray(history.step), np.asarray(history.loss)
    left.plot(steps, loss, color="lightgrey", linewidth=0.8, label="per step")
    if len(loss) >= smooth:
        running = np.convolve(loss, np.ones(smooth) / smooth, mode="valid")
        left.plot(steps[smooth - 1:], running, color=_colour(0.3), label=f"mean of {smooth}")
    left.set_xlabel("step")
    left.set_ylabel("training loss")
    left.set_title("Training loss (label-smoothed)")
    left.legend(fontsize=8)
    s, v = history.metric(metric)
    right.plot(s, v, "o-", color=_colour(0.6), markersize=3)
    right.set_ylim(0, max(v + [1.0]) * 1.15)
    right.set_xlabel("step")
    right.set_ylabel("BLEU (greedy)")
    right.set_title("BLEU on the development set")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_bleu_against_time(curves: dict[str, tuple[Sequence[float], Sequence[float]]],
                           title: str = "BLEU on the development set against training time",
                           xlabel: str = "training time (CPU seconds, evaluations not counted)"):
    """One line per model, ``{name: (seconds, BLEU)}``. Returns the Figure."""
    fig, ax = plt.subplots(figsize=(7.0, 3.4))
    for k, (name, (seconds, scores)) in enumerate(curves.items()):
        ax.plot(seconds, scores, "o-", markersize=3, color=_colour(0.25 + 0.5 * k / max(len(curves) - 1, 1)), label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("BLEU (greedy)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_step_times(lengths: Sequence[int], times: dict[str, Sequence[float]],
                    title: str = "Time per training step against sentence length"):
    """Milliseconds per training step (forward + backward) against sentence length, one line per
    ``{"model, threads": seconds per length}``; log-log axes. Returns the Figure."""
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    styles = ["o-", "o--", "s-", "s--"]
    for k, (name, seconds) in enumerate(times.items()):
        ax.plot(lengths, 1000 * np.asarray(seconds), styles[k % 4], markersize=4,
                color=_colour(0.2 if "GRU" in name else 0.7), label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(lengths))
    ax.set_xticklabels([str(n) for n in lengths])
    ax.set_xlabel("tokens per sentence (source and target)")
    ax.set_ylabel("ms per step (log scale)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_alignments(examples: Sequence[tuple[Sequence[str], Sequence[str], object]], titles: Sequence[str] | None = None,
                    size: float = 0.34):
    """Side by side cross-attention maps ``(T, S)`` of several sentences: ``(source tokens,
    output tokens, weights)`` each; rows = French output tokens, columns = English input
    tokens. Returns the Figure."""
    widths = [max(len(src), 3) for src, _, _ in examples]
    height = max(len(out) for _, out, _ in examples)
    fig, axes = plt.subplots(1, len(examples), figsize=(size * sum(widths) + 2.2 * len(examples), size * height + 2.0),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for k, (ax, (src, out, w)) in enumerate(zip(axes[0], examples)):
        plot_attention(to_numpy(w), [_show(t) for t in out], [_show(t) for t in src],
                       title=titles[k] if titles else "", ax=ax, colorbar=False)
        ax.set_xlabel("English (read)")
        ax.set_ylabel("French (written)" if k == 0 else "")
    fig.tight_layout()
    return fig


def _show(token: str) -> str:
    return {"<eos>": "◀", "<bos>": "▶"}.get(token, token.replace("\u2581", "_"))


def plot_translation(sentence: str, src_tokens: Sequence[str], out_tokens: Sequence[str], weights, translation: str,
                     warning: str = ""):
    """One sentence, its translation (in the title), the cross-attention map ``(T, S)`` between
    them, and a warning under it (e.g. words the model never saw). Returns the Figure."""
    fig, ax = plt.subplots(figsize=(0.36 * len(src_tokens) + 2.6, 0.36 * len(out_tokens) + 2.0))
    plot_attention(to_numpy(weights), [_show(t) for t in out_tokens], [_show(t) for t in src_tokens], ax=ax,
                   colorbar=False, title=f"{sentence}\n→ {translation}")
    ax.set_xlabel("English (read)" + (f"\n⚠ {warning}" if warning else ""))
    ax.set_ylabel("French (written)")
    fig.tight_layout()
    return fig


def translation_explorer(read: Callable[[str], tuple], sentences: Sequence[str]):
    """Type an English sentence (or pick an example): ``read(sentence)`` returns ``(source tokens,
    output tokens, weights (T, S), translation, warning)``, drawn by :func:`plot_translation`."""
    def draw(sentence: str, example: str):
        text = sentence.strip() or example
        return plot_translation(text, *read(text))
    return explorer(draw, sentence=widgets.Text(value="", placeholder="type an English sentence, press Enter",
                                                description="English"),
                    example=widgets.Dropdown(options=list(sentences), value=sentences[0], description="or pick"))
