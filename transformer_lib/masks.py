"""Lesson 03: which keys may each query look at? Every mask of the course is built here.

Legend: B batch, H heads, T query length, S key length.

* :func:`causal_mask`: query ``t`` sees keys ``0..t`` (and the ``past`` positions a key/value
  cache holds before them);
* :func:`padding_mask`: no query sees a ``<pad>`` key;
* :func:`decoder_self_mask`: both at once, for a decoder reading a padded target (lesson 06);
* :func:`attention_mask_from`: a tokenizer's ``(B, T)`` 0/1 ``attention_mask`` as ours (lesson 10);
* :func:`to_torch_mask` / :func:`from_torch_mask`: to and from PyTorch's conventions.

All masks in this course are boolean with **True = may attend**, like
``torch.nn.functional.scaled_dot_product_attention``. Beware: ``torch.nn.MultiheadAttention``
and ``torch.nn.Transformer`` use the *opposite* convention for boolean masks (True = blocked),
and ``nn.Transformer.generate_square_subsequent_mask`` returns a *float* mask (0 and -inf).
Use :func:`to_torch_mask` and :func:`from_torch_mask` to convert.
"""
from __future__ import annotations

import torch

from .validation import check_bool_mask, check_device, check_int, check_positive_int, check_tensor

__all__ = ["causal_mask", "padding_mask", "decoder_self_mask", "attention_mask_from", "to_torch_mask",
           "from_torch_mask"]


def causal_mask(T: int, past: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``(T, past + T)`` lower-triangular mask: query ``i`` may attend to keys ``0..past + i``.

    True = may attend. With ``past = 0`` (no cache) it is the square ``(T, T)`` mask: query ``i``
    sees keys ``0..i`` only. It broadcasts against scores of shape ``(B, H, T, past + T)``.

    Args:
        T: number of queries (the new positions).
        past: positions already in a key/value cache before them (lesson 11); every query sees all of them.
        device: where to build the mask.
    """
    check_positive_int("T", T)
    check_int("past", past, minimum=0, hint="the number of cached positions")
    if device is not None:
        check_device("device", device)
    return torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)


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


def decoder_self_mask(tgt: torch.Tensor, pad_id: int, past: int = 0) -> torch.Tensor:
    """Bool ``(B, 1, T, past + T)`` mask for a decoder's self-attention (True = may attend):
    causal (query ``t`` sees keys up to ``past + t``) and no target padding among the new keys.

    Args:
        tgt: ``(B, T)`` decoder input ids.
        pad_id: the id of ``<pad>``.
        past: positions already in a key/value cache (they hold no padding).
    """
    check_tensor("tgt", tgt, ndim=2, floating=False)
    causal = causal_mask(tgt.shape[1], past, device=tgt.device)       # (T, past + T)
    if past:
        return causal[None, None]                                     # (1, 1, T, past + T)
    return causal & padding_mask(tgt, pad_id)                         # (T, T) & (B, 1, 1, T) -> (B, 1, T, T)


def attention_mask_from(ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_id: int) -> torch.Tensor:
    """Bool ``(B, 1, 1, T)`` key mask (True = may attend) from a tokenizer's ``(B, T)``
    ``attention_mask`` with 1/True at real tokens, or from the padding in ``ids`` when it is ``None``.

    The ``(B, T)`` mask is bool, or integers 0 and 1 (Hugging Face's ``attention_mask``); a
    float mask is an error: an additive mask (0 = attend, -inf = blocked) would turn into its
    opposite with ``.bool()``.
    """
    check_tensor("ids", ids, ndim=2, floating=False)
    check_int("pad_id", pad_id)
    if attention_mask is None:
        return padding_mask(ids, pad_id)                              # (B, 1, 1, T)
    if isinstance(attention_mask, torch.Tensor) and attention_mask.shape != ids.shape:
        raise ValueError(f"attention_mask must have the shape of ids {tuple(ids.shape)}, got {tuple(attention_mask.shape)}")
    keep = check_bool_mask("attention_mask", attention_mask, allow_01=True,
                           meaning="True or 1 at real tokens = may attend")
    return keep[:, None, None, :]                                     # (B, T) -> (B, 1, 1, T)


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
