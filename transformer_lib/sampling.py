"""Lesson 11: choosing the next token: greedy, temperature, top-k and top-p (nucleus) sampling.

Legend: B batch, V vocabulary size. ``...`` stands for any batch dimensions.

A language model gives scores (logits) ``z`` over the vocabulary for the next token. How the
next token is picked from them changes the text more than one would think:

* **greedy**: ``argmax z``; deterministic, often repetitive;
* **temperature** ``tau``: sample from ``softmax(z / tau)``; ``tau < 1`` sharpens the
  distribution (``tau -> 0`` is greedy), ``tau > 1`` flattens it;
* **top-k**: keep the ``k`` most likely tokens, renormalise, sample; cuts off the long tail of
  unlikely tokens that sampling otherwise hits now and then;
* **top-p** (nucleus): keep the smallest set of most likely tokens whose probabilities add up
  to at least ``p``; the set is small when the model is sure and large when it is not.

Every random draw takes a ``torch.Generator`` so a notebook cell gives the same text on
every run.
"""
from __future__ import annotations

import torch

from .validation import check_int, check_number, check_tensor

__all__ = ["apply_temperature", "temperature_probs", "top_k_filter", "top_k_probs", "top_p_filter",
           "top_p_probs", "sample_next"]


def _check_logits(logits) -> torch.Tensor:
    check_tensor("logits", logits, floating=True)
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(f"logits must be (..., V) with V >= 1, got shape {tuple(logits.shape)}")
    return logits


def _check_k(k) -> int:
    return check_int("top_k", k, minimum=1, hint="how many of the most likely tokens to keep")


def _check_p(p) -> float:
    return check_number("top_p", p, low=0.0, high=1.0, low_open=True, hint="the probability mass to keep")


def _check_sampleable(logits: torch.Tensor, greedy: bool) -> None:
    """Every row needs a token to pick: NaN (and, when sampling, +inf) make the softmax NaN, and
    a row of -inf only allows no token. (A scan of the logits: once per generated token.)"""
    if bool(logits.isnan().any()) or (not greedy and bool((logits == float("inf")).any())):
        what = "NaN" if bool(logits.isnan().any()) else "+inf"
        raise ValueError(f"logits contain {what}, so no distribution can be formed: the model's output is "
                         f"broken (a diverged training run? check the loss and lower the learning rate)")
    dead = (logits == float("-inf")).all(dim=-1)
    if bool(dead.any()):
        row = dead.nonzero()[0].tolist() if dead.dim() else []
        where = "" if not row else f" of row {row[0]}" if len(row) == 1 else f" of row {tuple(row)}"
        raise ValueError(f"every logit{where} is -inf: no token is allowed. Keep at least one finite logit "
                         f"per row (did a mask or a filter block every token?)")


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` (``temperature > 0``); below 1 sharpens, above 1 flattens."""
    _check_logits(logits)
    check_number("temperature", temperature, low=0.0, low_open=True,
                 hint="0 means greedy: use sample_next(logits, temperature=0)")
    return logits / temperature


def temperature_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The distribution sampling at ``temperature`` draws from: ``softmax(logits / temperature)``
    over the last axis, ``(..., V) -> (..., V)``, every row summing to 1.

    Raises:
        ValueError: for ``temperature <= 0``. Temperature 0 is the limit of greedy decoding
            (``argmax``), not a distribution; a negative one would make the least likely token
            the most likely.
    """
    return torch.softmax(apply_temperature(logits, temperature), dim=-1)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the ``k``-th largest of its row to ``-inf``.

    Args:
        logits: ``(..., V)``.
        k: how many tokens to keep (``k >= V`` keeps all). Tokens tied with the ``k``-th
            largest are kept too, so a row may keep more than ``k`` on exact ties.

    Returns:
        ``(..., V)`` logits; softmax of them is the renormalised top-k distribution.
    """
    _check_logits(logits)
    k = _check_k(k)
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]               # (..., 1): the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_k_probs(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The distribution top-k sampling draws from: softmax over the ``k`` largest logits of each
    row, zero elsewhere; every row sums to 1. ``(..., V) -> (..., V)``."""
    return torch.softmax(top_k_filter(logits, k), dim=-1)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the fewest most-likely tokens whose probabilities sum to ``>= p``.

    Args:
        logits: ``(..., V)``.
        p: in ``(0, 1]``; 1 keeps every token. The most likely token is always kept, so a
            tiny ``p`` is greedy, never an empty distribution.

    Returns:
        ``(..., V)`` logits with the dropped tokens at ``-inf``.
    """
    _check_logits(logits)
    p = _check_p(p)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)      # (..., V) each
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs                             # mass of the tokens ranked higher
    drop_sorted = before >= p                                                # the first token has before = 0 < p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)     # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def top_p_probs(logits: torch.Tensor, p: float) -> torch.Tensor:
    """The distribution top-p (nucleus) sampling draws from: the softmax renormalised over the
    smallest set of most likely tokens whose probabilities sum to at least ``p`` (at least one
    token), zero elsewhere; every row sums to 1. ``(..., V) -> (..., V)``."""
    return torch.softmax(top_p_filter(logits, p), dim=-1)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row of ``logits``.

    Args:
        logits: ``(..., V)`` scores for the next token.
        temperature: 0 means greedy (argmax; ``top_k``/``top_p`` are then irrelevant);
            otherwise the logits are divided by it before filtering and sampling.
        top_k: keep only the ``k`` most likely tokens (``None``: all).
        top_p: keep only the nucleus of probability ``p`` (``None``: all).
        generator: the ``torch.Generator`` to draw from, for repeatable samples.

    Returns:
        ``(...)`` long tensor of token ids.
    """
    _check_logits(logits)
    check_number("temperature", temperature, low=0.0, hint="0 = greedy")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    _check_sampleable(logits, greedy=temperature == 0)
    if top_k is not None:
        _check_k(top_k)
    if top_p is not None:
        _check_p(top_p)
    if temperature == 0:
        return logits.argmax(dim=-1)
    z = apply_temperature(logits.float(), temperature)
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    probs = torch.softmax(z, dim=-1).reshape(-1, logits.shape[-1])             # (..., V) -> (N, V)
    ids = torch.multinomial(probs, 1, generator=generator)                      # (N, 1)
    return ids.reshape(logits.shape[:-1])                                       # (N, 1) -> (...)
