"""Lesson 08: turning a trained encoder-decoder into outputs, greedy decoding and beam search.

Legend: B batch, K beam size, S source length, T generated length, D = d_model, V vocabulary size.

Both decoders encode the source **once** (``model.encode``) and then call ``model.decode`` once
per output position. Without a cache ``decode`` re-reads the whole output so far at every step;
given lesson 11's key/value cache (``cache=transformer_lib.kv_cache.new_cache(model)``) it is fed
only the newest token, and the keys and values of the earlier ones are read from the cache. The
two give the same outputs; the cache saves the recomputation.

* Greedy decoding takes the most probable token at every step.
* Beam search keeps the ``K`` most probable partial outputs ("hypotheses") and extends each by
  every token; it can find an output whose total probability is higher than greedy's when the
  best first token is not the start of the best sequence. Finished hypotheses (ended by
  ``<eos>``) are compared by ``log p / lp(T)`` with the length penalty of Wu et al. (2016),
  ``lp(T) = ((5 + T) / 6) ** alpha``; ``alpha = 0`` compares plain log-probabilities.

A decoder works with any model that has ``encode(src, src_mask)``, ``decode(tgt, memory,
tgt_mask, memory_mask, cache=...)``, ``generator`` and ``config.pad_id``, like
:class:`transformer_lib.transformer.Transformer`. Outputs exclude ``<bos>``, include the
``<eos>`` that ended them, are padded with ``<pad>`` after it, and are never longer than ``max_len``.
"""
from __future__ import annotations

import torch

from .masks import causal_mask, padding_mask
from .tokenizer import SPECIALS
from .training import shift_right
from .validation import check_int, check_number, check_positive_int, check_tensor

BOS_ID, EOS_ID = SPECIALS.index("<bos>"), SPECIALS.index("<eos>")


def check_seq2seq_model(model) -> None:
    """``model`` must be an encoder-decoder with the methods the decoders call."""
    needed = ("encode", "decode", "generator", "config")
    missing = [name for name in needed if not hasattr(model, name)]
    if missing or not hasattr(model.config, "pad_id"):
        raise TypeError(f"model must be an encoder-decoder such as Transformer, with encode, decode, generator "
                        f"and config.pad_id; {type(model).__name__} lacks {missing or ['config.pad_id']}")


def _start(model, src: torch.Tensor, max_len: int, bos_id: int, eos_id: int, cache):
    check_seq2seq_model(model)
    check_tensor("src", src, ndim=2, floating=False)
    check_positive_int("max_len", max_len)
    check_int("bos_id", bos_id, minimum=0)
    check_int("eos_id", eos_id, minimum=0)
    if cache is not None and not (hasattr(cache, "reorder") and len(cache) == 0):
        raise TypeError(f"cache must be an empty key/value cache for the model (transformer_lib.kv_cache."
                        f"new_cache(model)) or None, got {type(cache).__name__}")
    pad_id = model.config.pad_id
    src_mask = padding_mask(src, pad_id)                              # (B, 1, 1, S)
    memory = model.encode(src, src_mask)                              # (B, S) -> (B, S, D)
    return pad_id, src_mask, memory


def _next_logits(model, ys: torch.Tensor, memory, src_mask, cache) -> torch.Tensor:
    """Logits ``(B, V)`` for the token after ``ys (B, t)`` (``<bos>`` and the tokens so far)."""
    if cache is None:                           # decode it all again; a generated token is never padding
        states = model.decode(ys, memory, causal_mask(ys.shape[1], device=ys.device), src_mask)  # (B, t, D)
    else:                                       # only the newest token: the others are in the cache
        states = model.decode(ys[:, -1:], memory, memory_mask=src_mask, cache=cache)            # (B, 1, D)
    return model.generator(states[:, -1])                                                     # (B, D) -> (B, V)


@torch.no_grad()
def greedy_decode(model, src: torch.Tensor, max_len: int, bos_id: int = BOS_ID, eos_id: int = EOS_ID, *,
                  cache=None) -> torch.Tensor:
    """Decode ``src`` by taking the most probable token at every step.

    Args:
        model: an encoder-decoder such as :class:`~transformer_lib.transformer.Transformer`
            (put it in eval mode first).
        src: source ids ``(B, S)``, padded with ``model.config.pad_id``.
        max_len: the most tokens to generate per sequence (``<eos>`` included).
        bos_id, eos_id: ids of ``<bos>`` (the first decoder input) and ``<eos>`` (stop).
        cache: an empty key/value cache for ``model`` (lesson 11: ``kv_cache.new_cache(model)``):
            every step then feeds only the newest token. The same ids come out either way.

    Returns:
        ``(B, T)`` ids with ``T <= max_len``, without ``<bos>``; every row ends at its first
        ``<eos>`` (padding after it). The loop stops as soon as every row has produced ``<eos>``.
    """
    pad_id, src_mask, memory = _start(model, src, max_len, bos_id, eos_id, cache)
    B = src.shape[0]
    ys = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)              # (B, 1): <bos>
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    for _ in range(max_len):
        logits = _next_logits(model, ys, memory, src_mask, cache)                     # (B, V)
        token = logits.argmax(dim=-1)                                                 # (B,): the most probable token
        token = token.masked_fill(done, pad_id)                                       # finished rows only pad
        ys = torch.cat([ys, token[:, None]], dim=1)                                   # (B, t) -> (B, t + 1)
        done = done | (token == eos_id)
        if bool(done.all()):
            break
    return ys[:, 1:]                                                                  # (B, T) without <bos>


def length_penalty(length: torch.Tensor | int, alpha: float) -> torch.Tensor | float:
    """GNMT length penalty ``((5 + T) / 6) ** alpha`` of an output of ``T`` tokens (1 for ``alpha = 0``)."""
    check_number("alpha", alpha)
    if not isinstance(length, torch.Tensor):
        check_int("length", length, minimum=0)
    return ((5 + length) / 6) ** alpha


@torch.no_grad()
def beam_search(model, src: torch.Tensor, max_len: int, beam_size: int = 4, alpha: float = 0.0,
                bos_id: int = BOS_ID, eos_id: int = EOS_ID, *, cache=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode ``src`` keeping the ``beam_size`` most probable hypotheses at every step.

    Args:
        model, src, max_len, bos_id, eos_id, cache: as for :func:`greedy_decode`.
        beam_size: number of hypotheses K kept per input; ``1`` is greedy decoding.
        alpha: length-penalty exponent; the final choice maximises ``log p / lp(T)``.

    Returns:
        ``(ids (B, T), scores (B,))``: the best hypothesis per input (same layout as
        :func:`greedy_decode`) and its length-penalised log-probability.

    Every hypothesis is extended by every token and the K best (by total log-probability) of
    the K x V candidates survive; a hypothesis that produced ``<eos>`` stays in the beam
    unchanged (it is only extended by padding, at no cost) and competes with the others.
    """
    check_positive_int("beam_size", beam_size)
    check_number("alpha", alpha, low=0.0, hint="the length-penalty exponent; 0 compares plain log-probabilities")
    pad_id, src_mask, memory = _start(model, src, max_len, bos_id, eos_id, cache)
    B, K, device = src.shape[0], beam_size, src.device
    # one row per hypothesis: (B, ...) -> (B*K, ...), hypothesis k of input b in row b*K + k
    memory = memory.repeat_interleave(K, dim=0)                                       # (B, S, D) -> (B*K, S, D)
    src_mask = src_mask.repeat_interleave(K, dim=0)                                   # (B*K, 1, 1, S)
    ys = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)              # (B*K, 1): <bos>
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")                  # at the start all K hypotheses are the same: keep one
    done = torch.zeros(B * K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * K, device=device)
    for _ in range(max_len):
        logits = _next_logits(model, ys, memory, src_mask, cache)                     # (B*K, V)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        V = log_probs.shape[-1]
        # a finished hypothesis may only be continued by <pad>, at no cost
        finished = torch.full_like(log_probs, float("-inf"))
        finished[:, pad_id] = 0.0
        log_probs = torch.where(done[:, None], finished, log_probs)
        candidates = scores.view(B * K, 1) + log_probs                                # (B*K, V)
        scores, best = candidates.view(B, K * V).topk(K, dim=-1)                      # (B, K*V) -> (B, K)
        beam = best // V                                                              # which hypothesis it extends
        token = (best % V).view(B * K)                                                # with which token
        rows = (beam + torch.arange(B, device=device)[:, None] * K).view(B * K)       # (B, K) -> (B*K,)
        if cache is not None:
            cache.reorder(rows)
        ys = torch.cat([ys[rows], token[:, None]], dim=1)                             # (B*K, t) -> (B*K, t+1)
        lengths = lengths[rows] + (~done[rows]).float()
        done = done[rows] | (token == eos_id)
        if bool(done.all()):
            break
    final = scores.view(B * K) / length_penalty(lengths, alpha)                       # (B*K,)
    pick = final.view(B, K).argmax(dim=-1)                                            # (B,)
    rows = pick + torch.arange(B, device=device) * K
    best_out = ys[rows, 1:]                                                           # without <bos>
    # trim columns that are padding in every chosen row
    keep = int((best_out != pad_id).sum(dim=1).max()) if best_out.numel() else 0
    return best_out[:, :max(keep, 1)], final[rows]


@torch.no_grad()
def sequence_log_prob(model, src: torch.Tensor, out: torch.Tensor, bos_id: int = BOS_ID) -> torch.Tensor:
    """Total log-probability ``(B,)`` the model gives to each decoded output ``out (B, T)``
    (padding after ``<eos>`` does not count). Useful to compare greedy and beam search."""
    check_seq2seq_model(model)
    check_tensor("src", src, ndim=2, floating=False)
    check_tensor("out", out, ndim=2, floating=False)
    if out.shape[0] != src.shape[0] or out.shape[1] == 0:
        raise ValueError(f"out must be (B, T) with T >= 1, one decoded output per source row, got src "
                         f"{tuple(src.shape)} and out {tuple(out.shape)}")
    check_int("bos_id", bos_id, minimum=0)
    pad_id = model.config.pad_id
    tgt_in = shift_right(out, bos_id, pad_id)                                          # (B, T)
    log_probs = torch.log_softmax(model(src, tgt_in).float(), dim=-1)                  # (B, T, V)
    picked = log_probs.gather(-1, out[..., None]).squeeze(-1)                          # (B, T)
    return picked.masked_fill(out == pad_id, 0.0).sum(dim=-1)
