"""Lesson 08's pictures: the data, a batch and its masks, teacher forcing, label smoothing, the
learning-rate schedule, the training curves, cross-attention maps and their explorer."""
from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from .core import SEQUENTIAL_CMAP, explorer, to_numpy

__all__ = ["plot_lengths", "plot_batch", "plot_teacher_forcing", "plot_label_smoothing", "plot_lr_schedules",
           "plot_history", "plot_cross_attention", "cross_attention", "cross_attention_explorer",
           "plot_accuracy_by_format"]


def plot_lengths(examples, title: str = "Input lengths in the training set"):
    """Histogram of source lengths, one stacked colour per input format. Returns the Figure."""
    formats = sorted({e.format for e in examples})
    lengths = {f: [len(e.source) for e in examples if e.format == f] for f in formats}
    lo = min(min(v) for v in lengths.values())
    hi = max(max(v) for v in lengths.values())
    bins = np.arange(lo - 0.5, hi + 1.5)
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    colours = plt.get_cmap(SEQUENTIAL_CMAP)(np.linspace(0, 0.95, len(formats)))
    ax.hist([lengths[f] for f in formats], bins=bins, stacked=True, label=formats, color=colours)
    ax.set_xlabel("input length (characters)")
    ax.set_ylabel("number of examples")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="format", title_fontsize=8)
    fig.tight_layout()
    return fig


def _token_grid(ax, ids, itos, pad_id, title, xlabel, ylabel):
    ids = to_numpy(ids).astype(int)
    ax.imshow(ids == pad_id, cmap="Greys", vmin=0, vmax=2, aspect="auto")
    for (i, j), v in np.ndenumerate(ids):
        tok = itos[v]
        ax.text(j, i, "·" if v == pad_id else ("␣" if tok == " " else ("▶" if tok == "<bos>" else
                ("◀" if tok == "<eos>" else tok))), ha="center", va="center", fontsize=8,
                color="grey" if v == pad_id else "black")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(range(ids.shape[1]))
    ax.set_yticks(range(ids.shape[0]))
    ax.tick_params(labelsize=7)


def plot_batch(batch, src_itos: Sequence[str], tgt_itos: Sequence[str], rows: int = 6):
    """One batch: source tokens (padding grey), the source padding mask, the decoder input and
    the decoder's self-attention mask of one row (True = may attend). Returns the Figure."""
    src, tgt_in = batch.src[:rows], batch.tgt_in[:rows]
    fig, axes = plt.subplots(1, 4, figsize=(13.5, 3.2), gridspec_kw={"width_ratios": [src.shape[1], src.shape[1],
                                                                                        tgt_in.shape[1], tgt_in.shape[1]]})
    _token_grid(axes[0], src, src_itos, batch.pad_id, f"src {tuple(batch.src.shape)}: first {rows} rows",
                "position", "example")
    m = to_numpy(batch.src_mask[:rows, 0, 0]).astype(float)                 # (B, 1, 1, S) -> (rows, S)
    axes[1].imshow(m, cmap=SEQUENTIAL_CMAP, vmin=0, vmax=1, aspect="auto")
    axes[1].set_title("src_mask (B, 1, 1, S): True = may attend", fontsize=10)
    axes[1].set_xlabel("key position")
    axes[1].set_xticks(range(m.shape[1]))
    axes[1].tick_params(labelsize=7)
    axes[1].set_yticks([])
    _token_grid(axes[2], tgt_in, tgt_itos, batch.pad_id, f"tgt_in {tuple(batch.tgt_in.shape)}", "position", "")
    t = to_numpy(batch.tgt_mask[0, 0]).astype(float)                        # (B, 1, T, T) -> (T, T)
    axes[3].imshow(t, cmap=SEQUENTIAL_CMAP, vmin=0, vmax=1, aspect="auto")
    axes[3].set_title("tgt_mask of row 0 (T, T)", fontsize=10)
    axes[3].set_xlabel("key position")
    axes[3].set_ylabel("query position")
    axes[3].set_xticks(range(t.shape[1]))
    axes[3].set_yticks(range(t.shape[0]))
    axes[3].tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def plot_teacher_forcing(tgt_in_tokens: Sequence[str], tgt_out_tokens: Sequence[str], source: str = ""):
    """The decoder input (the target shifted right, starting with <bos>) above the output it must
    predict at every position. Returns the Figure."""
    T = len(tgt_in_tokens)
    fig, ax = plt.subplots(figsize=(0.62 * T + 1.6, 2.4))
    for t, (a, b) in enumerate(zip(tgt_in_tokens, tgt_out_tokens)):
        for y, tok, colour in ((1.0, a, "#dfe9f5"), (0.0, b, "#e6f2df")):
            ax.add_patch(plt.Rectangle((t - 0.4, y - 0.28), 0.8, 0.56, facecolor=colour, edgecolor="grey"))
            ax.text(t, y, tok, ha="center", va="center", fontsize=9)
        ax.annotate("", xy=(t, 0.3), xytext=(t, 0.7), arrowprops=dict(arrowstyle="->", color="grey"))
        if t + 1 < T:   # the token predicted here is the next position's input
            ax.annotate("", xy=(t + 1 - 0.25, 0.72), xytext=(t + 0.2, 0.28),
                        arrowprops=dict(arrowstyle="->", color="#c44e52", linestyle=":", linewidth=1))
    ax.text(-0.75, 1.0, "decoder input\n(tgt_in)", ha="right", va="center", fontsize=9)
    ax.text(-0.75, 0.0, "must predict\n(tgt_out)", ha="right", va="center", fontsize=9)
    ax.set_xlim(-2.6, T - 0.4)
    ax.set_ylim(-0.5, 1.5)
    ax.axis("off")
    ax.set_title(f"Teacher forcing{f' for {source!r}' if source else ''}: the input is the target shifted "
                 f"right (red: each output becomes the next input)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_label_smoothing(itos: Sequence[str], correct: int, smoothing: float = 0.1, pad_id: int = 0):
    """The one-hot target and the label-smoothed target distribution over a vocabulary. Returns the Figure."""
    V = len(itos)
    one_hot = np.zeros(V)
    one_hot[correct] = 1.0
    smooth = (1 - smoothing) * one_hot + smoothing / V
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.0), sharey=True)
    for ax, q, title in ((axes[0], one_hot, "one-hot target"),
                         (axes[1], smooth, f"label-smoothed target, ε = {smoothing}")):
        bars = ax.bar(range(V), q, color=plt.get_cmap(SEQUENTIAL_CMAP)(0.35))
        bars[correct].set_color(plt.get_cmap(SEQUENTIAL_CMAP)(0.85))
        ax.set_xticks(range(V))
        ax.set_xticklabels(itos, rotation=90, fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("token")
    axes[0].set_ylabel("target probability q")
    axes[1].annotate(f"1 − ε + ε/V = {smooth[correct]:.3f}", xy=(correct, smooth[correct]), xytext=(0.6, 0.7),
                     textcoords="axes fraction", fontsize=8, arrowprops=dict(arrowstyle="->", color="grey"))
    axes[1].annotate(f"ε/V = {smoothing / V:.4f} each\n(<pad> too: only padding\npositions are ignored)",
                     xy=(pad_id, smoothing / V), xytext=(0.02, 0.45), textcoords="axes fraction", fontsize=8,
                     arrowprops=dict(arrowstyle="->", color="grey"))
    fig.tight_layout()
    return fig


def plot_lr_schedules(curves: dict[str, tuple[Sequence[int], Sequence[float]]], title: str = "Learning-rate schedules"):
    """One panel per entry ``name -> (steps, learning rates)`` (the scales differ). Returns the Figure."""
    fig, axes = plt.subplots(1, len(curves), figsize=(4.8 * len(curves), 3.0), squeeze=False)
    for ax, (name, (steps, lrs)) in zip(axes[0], curves.items()):
        ax.plot(steps, lrs, color=plt.get_cmap(SEQUENTIAL_CMAP)(0.3), linewidth=1.6)
        peak = int(np.argmax(lrs))
        ax.plot([steps[peak]], [lrs[peak]], "o", color=plt.get_cmap(SEQUENTIAL_CMAP)(0.8))
        ax.annotate(f"peak {lrs[peak]:.2g} at step {steps[peak]}", xy=(steps[peak], lrs[peak]),
                    xytext=(0.4, 0.85), textcoords="axes fraction", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history, metric: str = "val_token_accuracy", smooth: int = 20):
    """Training loss per step (and its running mean) and an evaluation metric over steps. Returns the Figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.2))
    steps, loss = np.asarray(history.step), np.asarray(history.loss)
    left.plot(steps, loss, color="lightgrey", linewidth=0.8, label="per step")
    if len(loss) >= smooth:
        running = np.convolve(loss, np.ones(smooth) / smooth, mode="valid")
        left.plot(steps[smooth - 1:], running, color=plt.get_cmap(SEQUENTIAL_CMAP)(0.3), label=f"mean of {smooth}")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("training loss (log scale)")
    left.set_title("Training loss")
    left.legend(fontsize=8)
    s, v = history.metric(metric)
    right.plot(s, v, "o-", color=plt.get_cmap(SEQUENTIAL_CMAP)(0.6), markersize=3)
    right.set_ylim(min(v + [0.9]) - 0.02 if v else 0, 1.005)
    right.set_xlabel("step")
    right.set_ylabel(metric.replace("_", " "))
    right.set_title("Held-out validation data")
    fig.tight_layout()
    return fig


@torch.no_grad()
def cross_attention(model, src_ids: torch.Tensor, out_ids: torch.Tensor, bos_id: int = 2) -> torch.Tensor:
    """The cross-attention weights ``(L, H, T, S)`` of a model (in eval mode) reading one source
    ``(S,)`` and producing ``out_ids (T,)`` (fed back with teacher forcing, <bos> first)."""
    model.eval()
    src = src_ids[None]                                                          # (S,) -> (1, S)
    tgt_in = torch.cat([torch.tensor([bos_id], device=src.device), out_ids[:-1]])[None]   # (1, T)
    model(src, tgt_in)
    return torch.stack([w[0] for w in model.attention_weights()["cross"]])       # L x (1, H, T, S) -> (L, H, T, S)


def plot_cross_attention(weights, src_tokens: Sequence[str], out_tokens: Sequence[str], title: str = ""):
    """Every layer's and head's cross-attention for one example: a grid of ``(T, S)`` maps, rows =
    output characters (what is being written), columns = input characters. Returns the Figure."""
    from .core import plot_attention_heads
    w = to_numpy(weights)
    L = w.shape[0]
    return plot_attention_heads(w, query_tokens=[_show(t) for t in out_tokens],
                                key_tokens=[_show(t) for t in src_tokens], title=title,
                                layer_names=[f"layer {i}" for i in range(L)], size=2.4)


def _show(tok: str) -> str:
    return {" ": "␣", "<eos>": "◀", "<bos>": "▶"}.get(tok, tok)


def cross_attention_explorer(draw_example: Callable[[str, int, int], "plt.Figure"], sources: Sequence[str],
                             num_layers: int, num_heads: int):
    """An explorer: pick an input, a layer and a head; ``draw_example(source, layer, head)``
    returns the Figure (see the lesson). Layer or head ``-1`` means the average."""
    return explorer(draw_example,
                    source=widgets.Dropdown(options=list(sources), value=sources[0], description="input"),
                    layer=widgets.IntSlider(num_layers - 1, -1, num_layers - 1, description="layer (-1: mean)"),
                    head=widgets.IntSlider(-1, -1, num_heads - 1, description="head (-1: mean)"))


def plot_accuracy_by_format(formats: Sequence[str], correct: Sequence[bool], title: str = "Test accuracy by input format"):
    """Exact-match accuracy per input format (bars, with the number of examples). Returns the Figure."""
    total, right = Counter(formats), Counter(f for f, ok in zip(formats, correct) if ok)
    names = sorted(total)
    acc = [right[n] / total[n] for n in names]
    fig, ax = plt.subplots(figsize=(7.0, 2.8))
    ax.barh(names, acc, color=plt.get_cmap(SEQUENTIAL_CMAP)(0.5))
    for i, n in enumerate(names):
        ax.text(min(acc[i], 1.0) + 0.002, i, f"{right[n]}/{total[n]}", va="center", fontsize=8)
    ax.set_xlim(min(acc + [0.95]) - 0.01, 1.03)
    ax.set_xlabel("exact-match accuracy")
    ax.set_title(title)
    fig.tight_layout()
    return fig
