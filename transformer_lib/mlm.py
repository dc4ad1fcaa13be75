"""Lesson 10: masked-language-model (MLM) data collation and loss, BERT's pre-training objective.

Legend: B batch, T sequence length, V vocabulary size.

A left-to-right language model predicts token ``i`` from tokens ``0..i-1`` only; it must not
see the right-hand side, or predicting would be copying. BERT wants both sides, so it hides
some tokens and predicts them from everything else:

1. choose 15 % of the ordinary tokens (never padding, ``[CLS]``, ``[SEP]``...);
2. of the chosen tokens, replace 80 % by ``[MASK]``, 10 % by a random ordinary token and
   leave 10 % unchanged;
3. compute the loss on the chosen positions only.

Why not always ``[MASK]``? ``[MASK]`` never occurs when the model is used later (fine-tuning,
feature extraction), so a model that only learned "predict at ``[MASK]``" would have no reason
to build good vectors for ordinary tokens. With random and unchanged tokens among the
targets, every position might be one to predict, and the model must keep a good
representation of every token.

The labels use the PyTorch convention ``IGNORE_INDEX = -100`` at positions not chosen:
``F.cross_entropy(..., ignore_index=-100)`` skips them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .validation import check_int, check_number, check_tensor, out_of_range_targets

__all__ = ["IGNORE_INDEX", "mask_tokens", "mlm_loss", "MLMBatch", "mlm_batch"]

#: Label of a position that is not predicted (``F.cross_entropy``'s default ``ignore_index``).
IGNORE_INDEX = -100


def _check_mask_args(ids, mask_id, num_special, vocab_size, mask_prob, generator):
    check_tensor("ids", ids, floating=False)
    for name, value in (("mask_id", mask_id), ("num_special", num_special), ("vocab_size", vocab_size)):
        check_int(name, value)
    if not 0 < num_special < vocab_size:
        raise ValueError(f"num_special={num_special} must be in (0, vocab_size={vocab_size}): "
                         f"there must be ordinary tokens to choose and to draw at random")
    if not 0 <= mask_id < num_special:
        raise ValueError(f"mask_id={mask_id} must be one of the special ids 0..{num_special - 1}")
    check_number("mask_prob", mask_prob, low=0.0, high=1.0, hint="a probability")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def mask_tokens(ids: torch.Tensor, mask_id: int, num_special: int, vocab_size: int,
                generator: torch.Generator | None = None, mask_prob: float = 0.15) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking rule.

    Args:
        ids: ``(B, T)`` token ids (any shape works). Ids below ``num_special`` are special
            tokens (padding, ``[CLS]``, ``[SEP]``, ``[MASK]``...): never chosen and never used
            as random replacements.
        mask_id: the id of ``[MASK]``.
        num_special: how many ids, from 0, are special.
        vocab_size: the vocabulary size V; random replacements are drawn from
            ``num_special .. V-1``.
        generator: the ``torch.Generator`` every random draw uses (repeatable batches).
        mask_prob: the fraction of ordinary tokens chosen (0.15).

    Returns:
        ``(inputs, labels)``, both shaped like ``ids``: ``inputs`` with the chosen tokens
        replaced (80 % ``[MASK]``, 10 % random, 10 % unchanged); ``labels`` holding the
        original id at chosen positions and ``IGNORE_INDEX`` (-100) everywhere else. ``ids``
        itself is not modified.
    """
    _check_mask_args(ids, mask_id, num_special, vocab_size, mask_prob, generator)
    ordinary = ids >= num_special
    chosen = (torch.rand(ids.shape, generator=generator) < mask_prob) & ordinary
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    action = torch.rand(ids.shape, generator=generator)                      # what happens to a chosen token
    random_tokens = torch.randint(num_special, vocab_size, ids.shape, generator=generator, dtype=ids.dtype)
    inputs = torch.where(chosen & (action < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_tokens, inputs)
    return inputs, labels                                            # the last 10 % of chosen stay as they are


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the chosen positions only.

    Args:
        logits: ``(B, T, V)`` the masked-LM head's scores.
        labels: ``(B, T)`` original ids at chosen positions, ``IGNORE_INDEX`` (-100) elsewhere.

    Returns:
        a scalar: the average of ``-log p(original token)`` over the chosen positions (0 when
        none is chosen, rather than NaN).
    """
    check_tensor("logits", logits, floating=True)
    check_tensor("labels", labels, floating=False)
    if logits.dim() == 0 or logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits (B, T, V) and labels (B, T) must agree, got logits {tuple(logits.shape)} "
                         f"and labels {tuple(labels.shape)}")
    V = logits.shape[-1]
    flat_labels = labels.reshape(-1).long()                                        # (B, T) -> (B*T,)
    if not (flat_labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    try:
        return F.cross_entropy(logits.reshape(-1, V), flat_labels, ignore_index=IGNORE_INDEX)  # (B*T, V)
    except IndexError as e:
        raise out_of_range_targets(e, "labels (other than IGNORE_INDEX)", V) from None


@dataclass
class MLMBatch:
    """One masked-LM training batch: the model's ``inputs``, the ``labels`` and the original ``ids``."""

    inputs: torch.Tensor
    labels: torch.Tensor
    ids: torch.Tensor


def mlm_batch(ids: torch.Tensor, mask_id: int, num_special: int, vocab_size: int,
              generator: torch.Generator | None = None, mask_prob: float = 0.15, masker=None) -> MLMBatch:
    """Apply the masking rule (``masker``, default :func:`mask_tokens`) to a batch of ids."""
    masker = mask_tokens if masker is None else masker
    if not callable(masker):
        raise TypeError(f"masker must be a function like mask_tokens, got {type(masker).__name__}")
    inputs, labels = masker(ids, mask_id, num_special, vocab_size, generator=generator, mask_prob=mask_prob)
    return MLMBatch(inputs=inputs, labels=labels, ids=ids)
