"""Lesson 00: a picture of the course."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

__all__ = ["plot_course_map"]

#: Okabe-Ito colours: distinguishable with every common form of colour blindness. Line plots of
#: the early lessons take their colours from here (blue, orange, bluish green, vermillion, ...).
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

LESSONS = [
    ("00", "start here"), ("01", "embeddings"), ("02", "positions"), ("03", "attention"),
    ("04", "multi-head"), ("05", "encoder"), ("06", "decoder"), ("07", "Transformer"),
    ("08", "training"), ("09", "translation"), ("10", "BERT"), ("11", "GPT"), ("12", "T5"),
    ("13", "pre-trained"), ("14", "scaling up"),
]
# one Okabe-Ito colour per part of the course
PARTS = [("foundations", "#E69F00", range(0, 3)), ("the architecture", "#56B4E9", range(3, 8)),
         ("training", "#009E73", range(8, 10)), ("three families", "#CC79A7", range(10, 13)),
         ("real weights", "#D55E00", range(13, 14)), ("going further", "#F0E442", range(14, 15))]


def plot_course_map():
    """The fifteen lessons as a path of boxes, coloured by part of the course."""
    fig, ax = plt.subplots(figsize=(10.5, 3.3))
    per_row = 8
    pos = {}
    for i, (num, name) in enumerate(LESSONS):
        row, col = divmod(i, per_row)
        x = col if row == 0 else per_row - 1 - col          # snake: the second row runs back
        pos[i] = (x * 1.35, -row * 1.5)
    for label, colour, idx in PARTS:
        for i in idx:
            x, y = pos[i]
            ax.add_patch(FancyBboxPatch((x - 0.55, y - 0.4), 1.1, 0.8, boxstyle="round,pad=0.05",
                                        facecolor=colour, edgecolor="black", linewidth=0.8))
            ax.text(x, y + 0.12, LESSONS[i][0], ha="center", va="center", fontsize=10, weight="bold")
            ax.text(x, y - 0.16, LESSONS[i][1], ha="center", va="center", fontsize=8)
        ax.plot([], [], "s", color=colour, markersize=10, label=label)
    for i in range(len(LESSONS) - 1):
        (x0, y0), (x1, y1) = pos[i], pos[i + 1]
        if y0 == y1:
            start, end = (x0 + 0.6 * (1 if x1 > x0 else -1), y0), (x1 - 0.6 * (1 if x1 > x0 else -1), y1)
        else:
            start, end = (x0, y0 - 0.45), (x1, y1 + 0.45)
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="black"))
    ax.set_xlim(-0.8, (per_row - 1) * 1.35 + 0.8)
    ax.set_ylim(-2.1, 0.65)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, -0.08), ncol=6, frameon=False, fontsize=8)
    ax.set_title("The course: each lesson builds on the one before")
    fig.tight_layout()
    return fig
