"""Pictures for lessons 10-12 (BERT, GPT, T5): context masks, the masking rule, filled blanks,
transfer learning, the GPT block's ablation, next-token distributions and their explorer, KV-cache timings, per-task
accuracy, the three families' masks, and relative positions."""
from __future__ import annotations

from typing import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from .core import DIVERGING_CMAP, SEQUENTIAL_CMAP, explorer, heatmap, to_numpy

__all__ = ["plot_context_masks", "plot_masking_example", "plot_lm_loss", "plot_top_predictions",
           "plot_word_map", "plot_transfer_curve", "plot_ablation", "plot_next_token_choices", "next_token_explorer",
           "plot_recomputation", "plot_generation_times", "plot_task_accuracy", "plot_family_masks",
           "plot_relative_positions"]

_C = plt.get_cmap(SEQUENTIAL_CMAP)
FIRST, SECOND = _C(0.25), _C(0.75)


def _mask_panel(ax, mask, tokens, title, xlabel="key (may be looked at)", ylabel="query (looking)"):
    m = to_numpy(mask).astype(float)
    ax.imshow(m, cmap=SEQUENTIAL_CMAP, vmin=0, vmax=1, aspect="auto")
    if tokens is not None:
        ax.set_xticks(range(m.shape[1]))
        ax.set_xticklabels(tokens, rotation=90, fontsize=8)
        ax.set_yticks(range(m.shape[0]))
        ax.set_yticklabels(tokens, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def plot_context_masks(tokens: Sequence[str], blank: int | None = None):
    """Which tokens each position may use: a left-to-right LM (causal) vs BERT (everything).
    ``blank`` outlines the row of a masked position. Returns the Figure."""
    T = len(tokens)
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.8))
    causal = torch.ones(T, T).tril()
    for ax, m, title in ((axes[0], causal, "left-to-right LM: only the left"),
                         (axes[1], torch.ones(T, T), "BERT: both sides")):
        _mask_panel(ax, m, tokens, title)
        if blank is not None:
            ax.add_patch(plt.Rectangle((-0.5, blank - 0.5), T, 1, fill=False, edgecolor="red", linewidth=2))
    fig.suptitle("Yellow: may attend, purple: hidden")
    fig.tight_layout()
    return fig


def plot_masking_example(original: Sequence[Sequence[str]], corrupted: Sequence[Sequence[str]],
                         chosen: Sequence[Sequence[bool]], title: str = "The masking rule on a few sentences"):
    """One row per sentence: the input the model sees, chosen positions coloured by what
    happened to them ([MASK], random token, unchanged), the original word underneath."""
    colours = {"[MASK]": _C(0.9), "random": _C(0.55), "unchanged": _C(0.2)}
    n = len(original)
    width = max(len(r) for r in original)
    fig, ax = plt.subplots(figsize=(min(1.0 + 0.75 * width, 12), 0.8 + 0.75 * n))
    for row, (orig, corr, ch) in enumerate(zip(original, corrupted, chosen)):
        y = n - 1 - row
        for col, (o, c, is_chosen) in enumerate(zip(orig, corr, ch)):
            kind = None
            if is_chosen:
                kind = "[MASK]" if c == "[MASK]" else ("unchanged" if c == o else "random")
                ax.add_patch(plt.Rectangle((col - 0.45, y - 0.3), 0.9, 0.6, color=colours[kind], alpha=0.9))
                ax.text(col, y - 0.42, o, ha="center", va="top", fontsize=7, color="dimgray")
            colour = "white" if kind in ("unchanged",) else "black"
            ax.text(col, y, c, ha="center", va="center", fontsize=8, color=colour)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, [f"chosen → {k}" for k in colours], loc="upper center", bbox_to_anchor=(0.5, -0.02),
              ncol=3, fontsize=8, frameon=False)
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-0.8, n - 0.4)
    ax.axis("off")
    ax.set_title(title + " (grey: the original word, the label)")
    fig.tight_layout()
    return fig


def _steps_figure(fig, ax, title: str, ylabel: str):
    """Label a curve-against-step plot (x: step), add its legend, and return the Figure."""
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_lm_loss(history, title: str = "Training loss", smooth: int = 25, evals: str | None = None,
                 ylabel: str = "loss (nats per token)", log: bool = False):
    """The loss per step, its running mean, and optionally an evaluation metric recorded in
    ``history.evals`` (e.g. ``"val_loss"``); ``log`` uses a log-scale y axis. Returns the Figure."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    steps, loss = np.asarray(history.step), np.asarray(history.loss)
    ax.plot(steps, loss, color="lightgrey", linewidth=0.8, label="per step")
    if len(loss) >= smooth:
        ax.plot(steps[smooth - 1:], np.convolve(loss, np.ones(smooth) / smooth, mode="valid"), color=FIRST,
                label=f"mean of {smooth} steps")
    if evals:
        s, v = history.metric(evals)
        ax.plot(s, v, "o-", color=SECOND, markersize=4, label=evals.replace("_", " "))
    if log:
        ax.set_yscale("log")
        ylabel += " (log scale)"
    return _steps_figure(fig, ax, title, ylabel)


def plot_ablation(histories: dict, metric: str = "val_loss", title: str = "Ablation",
                  ylabel: str = "held-out loss (nats per token)", baselines: dict[str, float] | None = None):
    """One curve per variant: ``metric`` from each :class:`~transformer_lib.training.History`
    against the step, the final value in the legend; ``baselines`` maps a label to a value drawn
    as a dashed line (e.g. the loss of a uniform guess). Returns the Figure."""
    if not histories:
        raise ValueError("histories must map at least one variant's name to its History")
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    colours = plt.get_cmap(SEQUENTIAL_CMAP)(np.linspace(0.1, 0.85, len(histories)))
    for (name, history), colour in zip(histories.items(), colours):
        steps, values = history.metric(metric)
        if not values:
            raise ValueError(f"the history of {name!r} has no {metric!r}: pass evaluate=... to train()")
        ax.plot(steps, values, "o-", color=colour, markersize=3, label=f"{name} (≈{values[-1]:.2f})")
    for (label, value), style in zip((baselines or {}).items(), ("--", ":", "-.")):
        ax.axhline(value, color="grey", linestyle=style, linewidth=0.8, label=f"{label} ({value:.2f})")
    return _steps_figure(fig, ax, title, ylabel)


def plot_top_predictions(panels: Sequence[tuple[str, Sequence[str], Sequence[float]]],
                         highlight: dict[str, int] | None = None):
    """Bar charts of the top predictions, one panel per ``(title, words, probabilities)``.
    ``highlight`` maps a word to a group (0/1) that sets its colour (e.g. its sentiment)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 2.8), squeeze=False)
    for ax, (title, words, probs) in zip(axes[0], panels):
        y = np.arange(len(words))[::-1]
        colours = [SECOND if highlight and highlight.get(w) == 1 else FIRST for w in words]
        ax.barh(y, probs, color=colours)
        ax.set_yticks(y)
        ax.set_yticklabels(words)
        ax.set_xlim(0, max(max(probs) * 1.15, 0.05))
        ax.set_xlabel("probability")
        ax.set_title(title, fontsize=9)
    if highlight:
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (SECOND, FIRST)]
        fig.legend(handles, ["positive word", "negative / other"], loc="lower center", ncol=2, fontsize=8,
                   frameon=False)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    else:
        fig.tight_layout()
    return fig


def plot_word_map(panels: Sequence[tuple[str, torch.Tensor]], words: Sequence[str], groups: Sequence[int],
                  group_names: Sequence[str] = ("negative", "positive")):
    """Each panel: vectors ``(N, D)`` of ``words`` projected on their first two principal
    components, coloured by group. Returns the Figure."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.8), squeeze=False)
    groups = np.asarray(groups)
    for ax, (title, vectors) in zip(axes[0], panels):
        x = to_numpy(vectors).astype(np.float64)
        x = x - x.mean(0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        xy = x @ vt[:2].T
        xy[:, 0] *= np.sign(xy[groups == 1, 0].mean() - xy[groups == 0, 0].mean() or 1.0)   # same side every run
        for g, colour in ((0, FIRST), (1, SECOND)):
            ax.scatter(xy[groups == g, 0], xy[groups == g, 1], color=colour, s=18, label=group_names[g])
        for (px, py), w in zip(xy, words):
            ax.annotate(w, (px, py), fontsize=7, xytext=(2, 2), textcoords="offset points")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("principal component 1")
        ax.set_ylabel("principal component 2")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_transfer_curve(label_counts: Sequence[int], results: dict[str, Sequence[Sequence[float]]],
                        chance: float = 0.5, title: str = "Transfer learning: accuracy on the same held-out set"):
    """Accuracy vs number of labelled examples (log scale), one line per model with the mean
    over seeds and the individual runs as dots. ``results`` maps a name to ``[runs per count]``."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for (name, runs), colour in zip(results.items(), (SECOND, FIRST, _C(0.5))):
        runs = [np.asarray(r, dtype=float) for r in runs]
        ax.plot(label_counts, [r.mean() for r in runs], "o-", color=colour, label=name)
        for n, r in zip(label_counts, runs):
            ax.scatter([n] * len(r), r, color=colour, s=10, alpha=0.4)
    ax.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(label_counts))
    ax.set_xticklabels([str(n) for n in label_counts])
    ax.set_ylim(min(chance - 0.05, ax.get_ylim()[0]), 1.02)
    ax.set_xlabel("number of labelled examples")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _filtered_probs(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None) -> np.ndarray:
    from ..sampling import top_k_filter, top_p_filter
    z = logits.float()
    if temperature == 0:
        p = torch.zeros_like(z)
        p[z.argmax()] = 1.0
        return to_numpy(p)
    z = z / temperature
    if top_k:
        z = top_k_filter(z, top_k)
    if top_p is not None and top_p < 1:
        z = top_p_filter(z, top_p)
    return to_numpy(torch.softmax(z, -1))


def _show_token(t: str) -> str:
    return {"\n": "\\n", " ": "␣", "\t": "\\t"}.get(t, t)


def plot_next_token_choices(logits: torch.Tensor, tokens: Sequence[str], settings: Sequence[dict],
                            context: str = "", top: int = 12):
    """The next-token distribution under several sampling settings (dicts with ``temperature``,
    ``top_k``, ``top_p``), over the ``top`` most likely tokens. Returns the Figure."""
    order = torch.argsort(logits, descending=True)[:top]
    labels = [_show_token(tokens[i]) for i in order.tolist()]
    fig, axes = plt.subplots(1, len(settings), figsize=(2.6 * len(settings), 2.9), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], settings):
        p = _filtered_probs(logits, s.get("temperature", 1.0), s.get("top_k"), s.get("top_p"))[order.numpy()]
        ax.bar(range(top), p, color=[SECOND if v > 0 else "lightgrey" for v in p])
        ax.set_xticks(range(top))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(", ".join(f"{k}={v}" for k, v in s.items()) or "plain softmax", fontsize=9)
        ax.set_xlabel("next character")
        ax.set_ylim(0, 1)
    axes[0, 0].set_ylabel("probability")
    if context:
        fig.suptitle(f"Next character after {context!r}", fontsize=10)
    fig.tight_layout()
    return fig


def next_token_explorer(logits: torch.Tensor, tokens: Sequence[str], context: str = ""):
    """Sliders for temperature, top-k and top-p over one next-token distribution."""
    def draw(temperature, top_k, top_p):
        return plot_next_token_choices(logits, tokens, [dict(temperature=temperature, top_k=top_k or None,
                                                             top_p=top_p)], context=context)
    return explorer(draw,
                    temperature=widgets.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.1, description="temperature"),
                    top_k=widgets.IntSlider(value=0, min=0, max=12, description="top_k (0: off)"),
                    top_p=widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top_p"))


def plot_generation_times(lengths: Sequence[int], without_cache: Sequence[float], with_cache: Sequence[float],
                          title: str = "Generation time: recomputing everything vs the KV cache"):
    """Seconds to generate ``n`` tokens with and without a cache, and the speed-up. Returns the Figure."""
    lengths = np.asarray(lengths)
    a, b = np.asarray(without_cache), np.asarray(with_cache)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.4))
    left.plot(lengths, a, "o-", color=FIRST, label="no cache: re-run all tokens")
    left.plot(lengths, b, "o-", color=SECOND, label="KV cache: only the new token")
    left.set_xlabel("tokens generated")
    left.set_ylabel("seconds")
    left.set_title(title, fontsize=10)
    left.legend(fontsize=8)
    right.plot(lengths, a / b, "o-", color=_C(0.5))
    right.axhline(1, color="grey", linestyle=":", linewidth=1)
    right.set_xlabel("tokens generated")
    right.set_ylabel("speed-up (×)")
    right.set_title("How much faster the cache is", fontsize=10)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(lengths))
        ax.set_xticklabels([str(n) for n in lengths])
    fig.tight_layout()
    return fig


def plot_task_accuracy(accuracy: dict[str, float], title: str = "Exact-match accuracy per task"):
    """A bar per task (the key ``"all"`` is drawn last, in another colour). Returns the Figure."""
    names = [k for k in accuracy if k != "all"] + (["all"] if "all" in accuracy else [])
    values = [accuracy[k] for k in names]
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    bars = ax.bar(names, values, color=[SECOND if k == "all" else FIRST for k in names])
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{100 * v:.1f} %", ha="center", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("held-out accuracy")
    ax.set_xlabel("task")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_family_masks(T: int = 6, S: int = 5):
    """The attention patterns of the three families: encoder (every token sees every token),
    decoder-only (causal), encoder-decoder (encoder full, decoder causal, cross-attention full)."""
    fig, axes = plt.subplots(1, 4, figsize=(12.0, 3.0))
    panels = [(torch.ones(S, S), "BERT (encoder): full", "key", "query"),
              (torch.ones(T, T).tril(), "GPT (decoder-only): causal", "key", "query"),
              (torch.ones(T, T).tril(), "T5 decoder self-attention: causal", "target key", "target query"),
              (torch.ones(T, S), "T5 cross-attention: full", "source key", "target query")]
    for ax, (m, title, xl, yl) in zip(axes, panels):
        _mask_panel(ax, m, None, title, xlabel=xl, ylabel=yl)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Who may attend to whom (yellow: allowed)")
    fig.tight_layout()
    return fig


def plot_relative_positions(buckets: torch.Tensor, rope_scores: torch.Tensor, absolute_scores: torch.Tensor):
    """Three ``(T, T)`` matrices over query x key positions: T5's bucket of ``key - query``, and
    the score between one fixed query vector and one fixed key vector placed at every pair of
    positions, with RoPE and with lesson 02's added sinusoids. Returns the Figure."""
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.8))
    heatmap(buckets, title="T5: bucket of key − query", xlabel="key position", ylabel="query position",
            ax=axes[0], cmap=SEQUENTIAL_CMAP)
    for ax, scores, title in ((axes[1], rope_scores, "RoPE: q·k depends on the positions only through n − m"),
                              (axes[2], absolute_scores, "added sinusoids: it does not")):
        lim = float(np.abs(to_numpy(scores)).max())                  # each panel on its own symmetric scale
        heatmap(scores, title=title, xlabel="key position n", ylabel="query position m", ax=ax,
                cmap=DIVERGING_CMAP, vmin=-lim, vmax=lim)
    fig.tight_layout()
    return fig


def plot_recomputation(n: int = 8):
    """What generating ``n`` tokens computes: row = generation step, column = token position;
    a coloured cell is a token whose keys and values (and everything else) that step computes."""
    steps = np.arange(1, n + 1)
    without = (np.arange(n)[None, :] < steps[:, None]).astype(float)            # step t re-runs tokens 1..t
    with_cache = np.eye(n) + 0.35 * (without - np.eye(n))                        # only the newest; the rest is read
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.6))
    for ax, m, title in ((axes[0], without, f"no cache: {int(without.sum())} token computations"),
                         (axes[1], with_cache, f"KV cache: {n} computed, the rest read from the cache")):
        ax.imshow(m, cmap=SEQUENTIAL_CMAP, vmin=0, vmax=1)
        ax.set_xticks(range(n))
        ax.set_xticklabels(range(1, n + 1))
        ax.set_yticks(range(n))
        ax.set_yticklabels(steps)
        ax.set_xlabel("token position")
        ax.set_ylabel("generation step")
        ax.set_title(title, fontsize=10)
    fig.suptitle("Yellow: computed this step, teal: keys/values read from the cache, purple: not involved",
                 fontsize=9)
    fig.tight_layout()
    return fig
