"""Lesson 00: the warm-up exercise that shows how exercises and checks work.

Legend: N rows, D values per row.
"""
from __future__ import annotations

import torch

__all__ = ["normalize_rows"]


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Divide every row of ``x`` (last dimension) by its sum, so each row sums to 1.

    Shape:
        ``(..., D) -> (..., D)``; lesson 03's softmax does the same after exponentiating.
    """
    return x / x.sum(dim=-1, keepdim=True)                # (..., D) / (..., 1)
