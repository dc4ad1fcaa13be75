"""Lessons 03 and 06: which keys may each query look at?

Legend: B batch, H heads, T query length, S key length.

All masks in this course are boolean with **True = may attend**, like
``torch.nn.functional.scaled_dot_product_attention``. Beware: ``torch.nn.MultiheadAttention``
and ``torch.nn.Transformer`` use the *opposite* convention for boolean masks (True = blocked),
and ``nn.Transformer.generate_square_subsequent_mask`` returns a *float* mask (0 and -inf).
Use :func:`to_torch_mask` and :func:`from_torch_mask` to convert.
"""
from __future__ import annotations

import torch

from .validation import check_device, check_int, check_positive_int, check_tensor

__all__ = ["causal_mask", "padding_mask", "to_torch_mask", "from_torch_mask"]


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``(T, T)`` lower-triangular mask: query ``i`` may attend to keys ``0..i`` only.

    True = may attend. It broadcasts against scores of shape ``(B, H, T, T)``.
    """
    check_positive_int("T", T)
    if device is not None:
        check_device("device", device)
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Bool ``(B, 1, 1, S)`` mask that is False at padding tokens (True = may attend).

    Args:
        ids: ``(B, S)`` token ids.
        pad_id: the id of ``<pad>``.

    The two singleton dimensions broadcast over heads and queries: no query may look at a
    padding key.
    """
    check_tensor("ids", ids, ndim=2, floating=False)
    check_int("pad_id", pad_id)
    return (ids != pad_id)[:, None, None, :]  # (B, S) -> (B, 1, 1, S)


def to_torch_mask(mask: torch.Tensor) -> torch.Tensor:
    """Convert our mask (True = may attend) to ``nn.MultiheadAttention``'s (True = blocked).

    The pitfall: passing our mask to ``nn.MultiheadAttention`` unchanged silently blocks
    exactly the keys that should be seen (and a query that may see every key then sees none,
    which PyTorch turns into NaN). No error is raised: the shapes are right, only the meaning
    is inverted.

    Example:
        >>> ours = causal_mask(3)            # True = may attend
        >>> theirs = to_torch_mask(ours)     # True = blocked, for nn.MultiheadAttention(attn_mask=...)
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"to_torch_mask expects a bool tensor with True = may attend, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"to_torch_mask expects a bool mask with True = may attend, got dtype {mask.dtype}")
    return ~mask


def from_torch_mask(mask: torch.Tensor) -> torch.Tensor:
    """Convert a PyTorch attention mask to ours (True = may attend).

    Accepts a bool mask with True = blocked (``nn.MultiheadAttention``'s convention) or an
    additive float mask with 0 = allowed and -inf = blocked (what
    ``nn.Transformer.generate_square_subsequent_mask`` returns).
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a tensor, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return ~mask
    if mask.is_floating_point():
        return mask == 0
    raise TypeError(f"mask must be bool (True = blocked) or float (0 / -inf), got dtype {mask.dtype}")
