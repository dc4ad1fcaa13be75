"""Lesson 14's pictures: where a training step's FLOPs go (and an explorer), the memory of
training, the measured scaling law, float32 against bfloat16, and data-parallel training."""
from __future__ import annotations

from typing import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from ..gpt import GPTConfig
from ..scaling import format_bytes, matmul_parameters
from .core import SEQUENTIAL_CMAP, explorer

__all__ = ["plot_flop_shares", "flops_explorer", "plot_memory", "plot_scaling_law", "plot_precision",
           "plot_data_parallel"]

_C = plt.get_cmap(SEQUENTIAL_CMAP)
FIRST, SECOND, THIRD = _C(0.2), _C(0.55), _C(0.85)


def _flop_parts(config: GPTConfig, T: np.ndarray) -> dict[str, np.ndarray]:
    """FLOPs per token of a training step, split: the blocks' weights, the output layer, attention."""
    c = config
    output = 6 * c.vocab_size * c.d_model
    blocks = 6 * matmul_parameters(c) - output
    return {"weights of the blocks (6 × 12 L D² when d_ff = 4 D)": np.full(T.shape, float(blocks)),
            "output layer (6 V D)": np.full(T.shape, float(output)),
            "attention: q kᵀ and weights @ v (12 L T D)": 12.0 * c.num_layers * T * c.d_model}


def plot_flop_shares(models: dict[str, tuple[GPTConfig, int]], title: str = "Where a training step's FLOPs go"):
    """One panel per model: the share of each part of the FLOPs per token against the context
    length T (log scale), the model's own context marked. ``models`` maps a name to
    ``(config, its context length)``. Returns the Figure."""
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models) + 0.4, 3.5), squeeze=False)
    for ax, (name, (config, context)) in zip(axes[0], models.items()):
        T = np.unique(np.geomspace(8, max(64 * context, 1024), 60).astype(int))
        parts = _flop_parts(config, T)
        total = sum(parts.values())
        ax.stackplot(T, *[p / total for p in parts.values()], labels=list(parts), colors=(FIRST, SECOND, THIRD))
        ax.axvline(context, color="black", linestyle=":", linewidth=1)
        share = parts["attention: q kᵀ and weights @ v (12 L T D)"][np.searchsorted(T, context)] / \
            total[np.searchsorted(T, context)]
        ax.text(context, 1.02, f" T = {context}: attention {100 * share:.0f} %", fontsize=8, ha="center", va="bottom")
        ax.set_xscale("log", base=2)
        ax.set_xlim(T[0], T[-1])
        ax.set_ylim(0, 1)
        ax.set_xlabel("context length T (tokens)")
        ax.set_ylabel("share of the FLOPs per token")
        ax.set_title(name, fontsize=10, pad=16)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def flops_explorer(vocab_size: int = 50257):
    """Sliders for D, L and T: the FLOPs per token of a training step, split as in
    :func:`plot_flop_shares`, against the "6 N" rule (d_ff = 4 D, H = D / 64 or 1)."""
    widths = [64, 128, 256, 512, 768, 1024, 2048, 4096, 8192, 12288]

    def draw(d_model: int, num_layers: int, context: int):
        config = GPTConfig(vocab_size=vocab_size, d_model=d_model, num_heads=max(1, d_model // 64),
                           num_layers=num_layers, d_ff=4 * d_model, max_len=context, dropout=0.0)
        parts = {k: float(v[0]) for k, v in _flop_parts(config, np.array([context])).items()}
        total = sum(parts.values())
        rule = 6 * 12 * num_layers * d_model ** 2
        fig, ax = plt.subplots(figsize=(7.0, 2.6))
        left = 0.0
        for (name, value), colour in zip(parts.items(), (FIRST, SECOND, THIRD)):
            ax.barh([0], [value], left=left, color=colour, label=f"{name}: {100 * value / total:.0f} %")
            left += value
        ax.barh([1], [rule], color="lightgrey", label="the 6 N rule (N = 12 L D², no embeddings)")
        ax.set_yticks([0, 1])
        ax.set_yticklabels(["counted", "6 N"])
        ax.set_xlabel("FLOPs per token of a training step")
        ax.set_title(f"D = {d_model}, L = {num_layers}, T = {context}: {total:.3g} FLOPs per token, "
                     f"{total / rule:.2f} × the rule", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        return fig

    return explorer(draw,
                    d_model=widgets.SelectionSlider(options=widths, value=768, description="d_model"),
                    num_layers=widgets.IntSlider(12, 1, 96, description="layers"),
                    context=widgets.SelectionSlider(options=[2 ** k for k in range(6, 18)], value=1024,
                                                    description="context T"))


def plot_memory(tables: dict[str, dict[str, int]], title: str = "Memory of training (and of generation)"):
    """One panel per model: a horizontal bar per row of a :func:`~transformer_lib.scaling.training_memory`
    table, in bytes on a log scale, labelled. Returns the Figure."""
    fig, axes = plt.subplots(1, len(tables), figsize=(5.2 * len(tables), 2.9), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items()):
        rows = [(k, v) for k, v in table.items() if v > 0]
        y = np.arange(len(rows))[::-1]
        values = [v for _, v in rows]
        colours = [THIRD if "KV" in k else (SECOND if k == "activations" else FIRST) for k, _ in rows]
        ax.barh(y, values, color=colours)
        for yi, v in zip(y, values):
            ax.text(v, yi, f" {format_bytes(v)}", va="center", fontsize=8)
        ax.set_yticks(y)
        ax.set_yticklabels([k for k, _ in rows], fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 3, max(values) * 30)
        ax.set_xlabel("bytes (log scale)")
        ax.set_title(name, fontsize=10)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_scaling_law(params: Sequence[float], losses: Sequence[float], fit_params,
                     curves: Sequence[tuple[Sequence[float], Sequence[float]]], frontier: tuple[Sequence[float], Sequence[float]],
                     fit_compute, labels: Sequence[str] | None = None, kaplan_exponent: float = 0.076):
    """Left: held-out loss against non-embedding parameters with the fitted power law (and a
    line of Kaplan et al.'s slope through the middle point, for comparison). Right: every model's
    held-out loss during training against the compute spent so far, the compute-efficient
    frontier and its fit. Both log-log. Returns the Figure."""
    params, losses = np.asarray(params, float), np.asarray(losses, float)
    colours = _C(np.linspace(0.1, 0.9, len(curves)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.9))
    x = np.geomspace(params.min() / 1.5, params.max() * 1.5, 50)
    left.scatter(params, losses, c=colours, s=40, zorder=3)
    left.plot(x, np.asarray(fit_params(x)), color="black", linewidth=1,
              label=f"fit: L ∝ N^-{fit_params.exponent:.3f}")
    middle = len(params) // 2
    left.plot(x, losses[middle] * (x / params[middle]) ** -kaplan_exponent, color="grey", linestyle=":",
              label=f"Kaplan et al.'s slope, N^-{kaplan_exponent}")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("non-embedding parameters N")
    left.set_ylabel("held-out loss (nats per character)")
    left.set_title("Loss against model size (same tokens)", fontsize=10)
    left.legend(fontsize=8)
    for (compute, loss), colour, label in zip(curves, colours, labels or [None] * len(curves)):
        right.plot(compute, loss, "o-", color=colour, markersize=3, linewidth=1, label=label)
    fc = np.asarray(frontier[0], float)
    right.plot(fc, frontier[1], "s", markerfacecolor="none", markeredgecolor="black", markersize=7,
               label="frontier: best loss for its compute")
    xc = np.geomspace(fc.min() / 1.5, fc.max() * 1.5, 50)
    right.plot(xc, np.asarray(fit_compute(xc)), color="black", linewidth=1, label=f"fit: L ∝ C^-{fit_compute.exponent:.3f}")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("training compute C (FLOPs)")
    right.set_ylabel("held-out loss (nats per character)")
    right.set_title("Loss against compute, every evaluation", fontsize=10)
    right.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def plot_precision(widths: Sequence[int], seconds: dict[str, Sequence[float]], curves: dict[str, tuple],
                   title: str = "float32 against 16 bits on this machine", xlabel: str = "d_model"):
    """Left: seconds per training step against the model width for each precision. Right: the
    training loss against the step for each precision (``curves`` maps a name to ``(steps, losses)``).
    Returns the Figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.4))
    for (name, values), colour in zip(seconds.items(), (FIRST, THIRD)):
        left.plot(widths, 1000 * np.asarray(values), "o-", color=colour, label=name)
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xticks(list(widths))
    left.set_xticklabels([str(w) for w in widths])
    left.set_xlabel(xlabel)
    left.set_ylabel("ms per training step")
    left.set_title("Speed", fontsize=10)
    left.legend(fontsize=8)
    for (name, (steps, losses)), colour in zip(curves.items(), (FIRST, THIRD)):
        losses = np.asarray(losses, float)
        k = min(20, len(losses))
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        right.plot(np.asarray(steps)[k - 1:], smooth, color=colour, label=f"{name} (mean of {k} steps)")
    right.set_xlabel("step")
    right.set_ylabel("training loss (nats per character)")
    right.set_title("Same steps, same data", fontsize=10)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_data_parallel(step_ms: dict[str, float], world_size: int = 2,
                       title: str = "Data parallelism: split the batch, average the gradients"):
    """Left: the scheme (the batch split over the processes, one all-reduce, the same step
    everywhere). Right: milliseconds per training step of each run in ``step_ms``. Returns the Figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.4), gridspec_kw={"width_ratios": [1.5, 1]})
    box = dict(boxstyle="round,pad=0.3", linewidth=0.8)
    left.text(0.08, 0.5, "batch\nB rows", ha="center", va="center", fontsize=9, bbox={**box, "facecolor": "#eeeeee"})
    for r in range(world_size):
        y = 0.8 - 0.6 * r / max(world_size - 1, 1)
        left.annotate("", xy=(0.25, y), xytext=(0.14, 0.5), arrowprops=dict(arrowstyle="->", color="grey"))
        left.text(0.37, y, f"process {r}\nB / {world_size} rows\nforward, backward\n→ gradient g{r}", ha="center",
                  va="center", fontsize=8, bbox={**box, "facecolor": _C(0.3 + 0.4 * r, alpha=0.35)})
        left.annotate("", xy=(0.6, 0.5), xytext=(0.49, y), arrowprops=dict(arrowstyle="->", color="grey"))
        left.annotate("", xy=(0.86, y), xytext=(0.75, 0.5), arrowprops=dict(arrowstyle="->", color="grey"))
        left.text(0.93, y, f"step with g\n(process {r})", ha="center", va="center", fontsize=8,
                  bbox={**box, "facecolor": "#eeeeee"})
    sum_text = " + ".join(f"g{r}" for r in range(world_size))
    left.text(0.675, 0.5, f"all-reduce\ng = ({sum_text})\n/ {world_size}", ha="center", va="center", fontsize=8,
              bbox={**box, "facecolor": _C(0.85, alpha=0.5)})
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.axis("off")
    left.set_title(title, fontsize=10)
    names = list(step_ms)
    bars = right.bar([n.replace(", ", ",\n") for n in names], [step_ms[n] for n in names],
                     color=[_C(0.2 + 0.6 * i / max(len(names) - 1, 1)) for i in range(len(names))])
    for bar, n in zip(bars, names):
        right.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{step_ms[n]:.1f} ms", ha="center",
                   va="bottom", fontsize=8)
    right.set_ylabel("ms per training step")
    right.set_title("Measured on this machine", fontsize=10)
    right.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig
