"""Lessons 06 and 07: the decoder's masks and leak, and the whole encoder-decoder as a picture."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from .core import heatmap, to_numpy
from .encoder import _COLOURS

__all__ = ["plot_output_change", "plot_decoder_visibility", "plot_transformer_diagram",
           "plot_parameter_breakdown", "plot_next_token_probs", "plot_dropout_scaling"]


# --------------------------------------------------------------------------- lesson 06
def plot_output_change(changes: Mapping[str, Sequence[float]], changed_position: int, title: str = ""):
    """Grouped bars: how much each output position changed (one group of bars per position).

    Args:
        changes: label -> ``(T,)`` largest absolute change of the output at each position.
        changed_position: the input position that was changed (marked on the axis).
    """
    if not changes:
        raise ValueError("changes is empty: pass {label: one value per position}")
    values = {k: to_numpy(torch.as_tensor(v, dtype=torch.float64)) for k, v in changes.items()}
    T = len(next(iter(values.values())))
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    width = 0.8 / len(values)
    for i, (label, v) in enumerate(values.items()):
        xs = np.arange(T) + (i - (len(values) - 1) / 2) * width
        ax.bar(xs, v, width=width, color=_COLOURS[i % len(_COLOURS)], label=label)
        for x, value in zip(xs, v):
            if value == 0:
                ax.text(x, 0, "0", ha="center", va="bottom", fontsize=8, color=_COLOURS[i % len(_COLOURS)])
    ax.axvspan(changed_position - 0.45, changed_position + 0.45, color="0.9", zorder=0)
    ax.set_xticks(range(T))
    ax.set_xticklabels([f"{t}\n(changed)" if t == changed_position else str(t) for t in range(T)])
    ax.set_xlabel("output position")
    ax.set_ylabel("largest change of the output")
    ax.set_title(title or f"Change input position {changed_position}: which outputs move?")
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def plot_decoder_visibility(T: int = 6, S: int = 7, query: int = 3, tgt_pad: int = 1, src_pad: int = 2,
                            causal: bool = True):
    """Which keys one decoder query may see: its self-attention mask (causal & target padding)
    and its cross-attention mask (source padding), with the chosen query's row outlined."""
    if not 0 <= query < T:
        raise ValueError(f"query must be a position in 0..{T - 1}, got {query}")
    if not (0 <= tgt_pad < T and 0 <= src_pad < S):
        raise ValueError(f"tgt_pad must be in 0..{T - 1} and src_pad in 0..{S - 1}, got {tgt_pad} and {src_pad}")
    tgt_ok = torch.arange(T) < T - tgt_pad                                # (T,) True = real token
    src_ok = torch.arange(S) < S - src_pad                                # (S,)
    self_mask = tgt_ok[None, :].expand(T, T).clone()                      # (T, T)
    if causal:
        self_mask &= torch.ones(T, T, dtype=torch.bool).tril()
    cross_mask = src_ok[None, :].expand(T, S)                             # (T, S)
    tgt_labels = [f"y{t}" if tgt_ok[t] else "<pad>" for t in range(T)]
    src_labels = [f"x{s}" if src_ok[s] else "<pad>" for s in range(S)]
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.6), gridspec_kw={"width_ratios": [T, S]})
    for ax, mask, keys, name in ((axes[0], self_mask, tgt_labels, "self-attention (target keys)"),
                                 (axes[1], cross_mask, src_labels, "cross-attention (source keys)")):
        heatmap(mask.float(), keys, tgt_labels, title=name, xlabel="key (may be seen?)",
                ylabel="decoder query", ax=ax, vmin=0.0, vmax=1.0, colorbar=False)
        ax.add_patch(Rectangle((-0.5, query - 0.5), mask.shape[1], 1, fill=False, edgecolor="#D55E00", linewidth=2.5))
    seen = int(self_mask[query].sum()), int(cross_mask[query].sum())
    fig.suptitle(f"Query {tgt_labels[query]} sees {seen[0]} target and {seen[1]} source positions "
                 f"(yellow = may attend){'' if causal else ' - NO causal mask'}", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- lesson 07
def _box(ax, x, y, w, h, text, colour, fontsize=8, weight="normal"):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=colour, edgecolor="black", linewidth=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, weight=weight)


def _arrow(ax, start, end, style="-|>", colour="black", dashed=False, connection="arc3"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, color=colour, linewidth=1.0,
                                 linestyle="--" if dashed else "-", connectionstyle=connection))


def plot_transformer_diagram(config=None):
    """The encoder-decoder of "Attention Is All You Need", each box named after our module.

    Args:
        config: a :class:`~transformer_lib.transformer.TransformerConfig` (its layer counts, sizes,
            norm placement and weight tying are written into the picture); ``None`` draws the
            paper's base model.
    """
    if config is None:
        from ..transformer import TransformerConfig
        config = TransformerConfig.base()
    c = config
    attn, ffn, norm, emb, io = "#56B4E9", "#E69F00", "#F0E442", "#CC79A7", "#FFFFFF"
    fig, ax = plt.subplots(figsize=(8.6, 7.6))
    w, h, step = 2.2, 0.34, 0.5
    ex, dx = 1.8, 6.0                                         # the two columns

    def stack(x, y0, groups):
        """Sub-layer groups drawn upwards from y0, each with its residual path on the left."""
        ys, y = [], y0
        for group in groups:
            first = y
            for text, colour in group:
                _box(ax, x, y, w, h, text, colour)
                if ys:
                    _arrow(ax, (x, ys[-1] + h / 2), (x, y - h / 2))
                ys.append(y)
                y += step
            # the residual path: from below the group's first box around the left to its "+" box
            y_from, y_to, x_side = first - step / 2, ys[-1], x - w / 2 - 0.18
            ax.plot([x, x_side, x_side], [y_from, y_from, y_to], color="0.3", linewidth=1.0)
            _arrow(ax, (x_side, y_to), (x - w / 2, y_to), colour="0.3")
        return ys

    for x, side, letter in ((ex, "src", "S"), (dx, "tgt", "T")):
        _box(ax, x, 0.0, w, h, f"{side} ids  (B, {letter})", io)
        _box(ax, x, 0.6, w, h, f"{side}_embed  (x sqrt(d_model))", emb)
        _box(ax, x, 1.2, w, h, f"+ {side}_pos  ({c.positional})", emb)
        _arrow(ax, (x, 0.0 + h / 2), (x, 0.6 - h / 2))
        _arrow(ax, (x, 0.6 + h / 2), (x, 1.2 - h / 2))

    if c.norm_first:
        enc = [[("norm1", norm), ("self_attn", attn), ("+", io)],
               [("norm2", norm), ("feed_forward", ffn), ("+", io)]]
        dec = [[("norm1", norm), ("self_attn  (causal mask)", attn), ("+", io)],
               [("norm2", norm), ("cross_attn  (queries: decoder)", attn), ("+", io)],
               [("norm3", norm), ("feed_forward", ffn), ("+", io)]]
        cross_index = 4
    else:
        enc = [[("self_attn", attn), ("+ and norm1", norm)], [("feed_forward", ffn), ("+ and norm2", norm)]]
        dec = [[("self_attn  (causal mask)", attn), ("+ and norm1", norm)],
               [("cross_attn  (queries: decoder)", attn), ("+ and norm2", norm)],
               [("feed_forward", ffn), ("+ and norm3", norm)]]
        cross_index = 2
    base = 2.2
    enc_ys, dec_ys = stack(ex, base, enc), stack(dx, base, dec)
    for x in (ex, dx):
        _arrow(ax, (x, 1.2 + h / 2), (x, base - h / 2))
    tops = {}
    for x, ys, name, n, label_x in ((ex, enc_ys, "encoder", c.encoder_layers, ex - w / 2 - 0.45),
                                    (dx, dec_ys, "decoder", c.decoder_layers, dx + w / 2 + 0.35)):
        top, bottom = ys[-1] + h / 2 + 0.1, ys[0] - step / 2 - 0.1
        ax.add_patch(FancyBboxPatch((x - w / 2 - 0.3, bottom), w + 0.5, top - bottom, boxstyle="round,pad=0.02",
                                    fill=False, edgecolor="0.35", linewidth=1.2, linestyle="--"))
        layer = "EncoderLayer" if name == "encoder" else "DecoderLayer"
        ax.text(label_x, (top + bottom) / 2, f"{name}.layers: {n} x {layer}", ha="center", va="center",
                fontsize=8, rotation=90)
        y = top + 0.3
        if c.norm_first:
            _box(ax, x, y, w, h, f"{name}.norm  (final)", norm)
            _arrow(ax, (x, top), (x, y - h / 2))
            tops[name] = (y + h / 2, y + step)
        else:
            tops[name] = (top, y)
    (enc_out, memory_y), (dec_out, gen_y) = tops["encoder"], tops["decoder"]
    memory_y += 0.15
    _box(ax, ex, memory_y, w, h, "memory  (B, S, d_model)", io, weight="bold")
    _arrow(ax, (ex, enc_out), (ex, memory_y - h / 2))
    cross_y = dec_ys[cross_index]
    _arrow(ax, (ex + w / 2, memory_y), (dx - w / 2 - 0.3, cross_y), colour="#0072B2", connection="arc3,rad=-0.2")
    _arrow(ax, (dx - w / 2 - 0.3, cross_y), (dx - w / 2, cross_y), colour="#0072B2")
    ax.text((ex + dx) / 2 - 0.05, (memory_y + cross_y) / 2 - 0.45, "keys and values\nof every\ncross_attn",
            ha="center", va="center", fontsize=8, color="#0072B2")
    _box(ax, dx, gen_y, w, h, f"generator  (d_model -> {c.tgt_vocab_size})", emb)
    _arrow(ax, (dx, dec_out), (dx, gen_y - h / 2))
    _box(ax, dx, gen_y + 0.6, w, h, "logits  (B, T, V)", io, weight="bold")
    _arrow(ax, (dx, gen_y + h / 2), (dx, gen_y + 0.6 - h / 2))
    if c.tie_weights:
        x_tie = dx + w / 2 + 0.8
        ax.plot([dx + w / 2, x_tie, x_tie, dx + w / 2], [0.6, 0.6, gen_y, gen_y], color="#D55E00",
                linestyle="--", linewidth=1.2)
        ax.text(x_tie + 0.1, (0.6 + gen_y) / 2, "tie_weights: one\n(V, d_model) matrix\nfor both", ha="left",
                va="center", fontsize=8, color="#D55E00")
    if c.share_embeddings:
        ax.plot([ex + w / 2, dx - w / 2], [0.6, 0.6], color="#D55E00", linestyle="--", linewidth=1.2)
        ax.text((ex + dx) / 2, 0.75, "share_embeddings:\none table", ha="center", va="bottom",
                fontsize=8, color="#D55E00")
    ax.set_xlim(-0.1, 9.2)
    ax.set_ylim(-0.4, gen_y + 1.0)
    ax.axis("off")
    ax.set_title(f"The Transformer: d_model={c.d_model}, num_heads={c.num_heads}, d_ff={c.d_ff}, "
                 f"{'pre' if c.norm_first else 'post'}-LN")
    fig.tight_layout()
    return fig


def plot_parameter_breakdown(parts: Mapping[str, int], title: str = "Where the parameters are"):
    """Horizontal bars: parameters per part of the model, with each part's share of the total."""
    if not parts:
        raise ValueError("parts is empty: pass {name: number of parameters}")
    names, counts = list(parts), np.array([int(v) for v in parts.values()], dtype=float)
    total = counts.sum()
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.2))
    ax.barh(range(len(names)), counts / 1e6, color=[_COLOURS[i % len(_COLOURS)] for i in range(len(names))])
    for i, c in enumerate(counts):
        ax.text(c / 1e6, i, f"  {c / 1e6:.2f} M ({100 * c / total:.0f} %)", va="center", fontsize=8)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlim(0, counts.max() / 1e6 * 1.45)
    ax.set_xlabel("parameters (millions)")
    ax.set_title(f"{title}: {total / 1e6:.2f} M in all")
    fig.tight_layout()
    return fig


def plot_next_token_probs(probs, tokens: Sequence[str], k: int = 10, title: str = "Next-token probabilities"):
    """Bars of the ``k`` most likely next tokens of one ``(V,)`` probability vector, with the uniform level."""
    p = to_numpy(probs)
    if p.ndim != 1 or len(p) != len(tokens):
        raise ValueError(f"probs must be (V,) with one token name each, got shape {p.shape} and {len(tokens)} tokens")
    top = np.argsort(-p, kind="stable")[:k]
    fig, ax = plt.subplots(figsize=(6.0, 3.0))
    ax.bar(range(len(top)), p[top], color=_COLOURS[0])
    ax.axhline(1 / len(p), color=_COLOURS[1], linestyle="--", linewidth=1, label=f"uniform 1/V = {1 / len(p):.3f}")
    ax.set_xticks(range(len(top)))
    ax.set_xticklabels([tokens[i] for i in top], rotation=45, ha="right")
    ax.set_xlabel("token")
    ax.set_ylabel("probability")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def plot_dropout_scaling(samples: Mapping[float, torch.Tensor], means: Mapping[str, Sequence[float]],
                         ps: Sequence[float], title: str = "Dropout in training mode"):
    """Left: histograms of dropout applied to a tensor of ones, one per rate p (values 0 and 1/(1-p)).
    Right: the mean output against p, one line per entry of ``means`` (e.g. with and without the scaling)."""
    fig, (ax_h, ax_m) = plt.subplots(1, 2, figsize=(10.0, 3.4))
    for i, (p, values) in enumerate(samples.items()):
        v = to_numpy(values.flatten())
        ax_h.hist(v, bins=np.linspace(0, 2.6, 53), color=_COLOURS[i % len(_COLOURS)], alpha=0.7,
                  label=f"p = {p}: 0 or 1/(1-p) = {1 / (1 - p):.2f}", weights=np.full(len(v), 1 / len(v)))
    ax_h.set_xlabel("output value (every input is 1)")
    ax_h.set_ylabel("fraction of outputs")
    ax_h.set_title("what dropout does to ones")
    ax_h.legend(frameon=False, fontsize=8)
    for i, (label, values) in enumerate(means.items()):
        ax_m.plot(list(ps), list(values), marker="o", markersize=4, color=_COLOURS[i % len(_COLOURS)], label=label)
    ax_m.axhline(1.0, color="grey", linewidth=0.5)
    ax_m.set_ylim(0, 1.2)
    ax_m.set_xlabel("dropout rate p")
    ax_m.set_ylabel("mean output")
    ax_m.set_title("the expected value")
    ax_m.legend(frameon=False, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
