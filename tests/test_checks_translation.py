"""The lesson 09 checks accept right answers and name each typical mistake."""
from __future__ import annotations

import re
from collections import Counter

import pytest
import torch

from test_checks_training import passes, rejects
from transformer_lib.bpe import bpe_merge_step
from transformer_lib.checks import check_additive_attention, check_bpe_merge_step
from transformer_lib.rnn_baseline import additive_attention


# -- the BPE merge step: right answers in other styles -----------------------------------------

def sennrich_style(words):
    """Correct, in the style of Sennrich et al.'s reference code: symbols joined by spaces, a
    regular expression that only matches whole symbols, ties broken by sorting first."""
    pairs = Counter()
    for word, freq in words.items():
        for i in range(len(word) - 1):
            pairs[word[i], word[i + 1]] += freq
    best = max(sorted(pairs), key=lambda p: pairs[p])            # max keeps the first (smallest) of equals
    pattern = re.compile(r"(?<!\S)" + re.escape(" ".join(best)) + r"(?!\S)")
    return best, {tuple(pattern.sub("".join(best), " ".join(word)).split(" ")): freq for word, freq in words.items()}


def list_style(words):
    """Correct: explicit loops over lists, sorting the candidates by (-count, pair)."""
    counts = {}
    for word, n in words.items():
        for a, b in zip(word[:-1], word[1:]):
            counts[(a, b)] = counts.get((a, b), 0) + n
    best = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[0][0]
    merged = {}
    for word, n in words.items():
        new, i = [], 0
        while i < len(word):
            if word[i:i + 2] == best:
                new.append(word[i] + word[i + 1])
                i += 2
            else:
                new.append(word[i])
                i += 1
        merged[tuple(new)] = n
    return best, merged


def test_merge_step_check_accepts_right_versions(capsys):
    passes(check_bpe_merge_step, bpe_merge_step, capsys)
    passes(check_bpe_merge_step, sennrich_style, capsys)
    passes(check_bpe_merge_step, list_style, capsys)


# -- typical wrong versions, each written as a learner would ------------------------------------

def _count(words, weighted=True, once_per_word=False, stream=False):
    pairs = Counter()
    if stream:                                      # the whole corpus as one sequence of symbols
        symbols = [s for word, n in words.items() for _ in range(n) for s in word]
        pairs.update(zip(symbols, symbols[1:]))
        return pairs
    for word, n in words.items():
        found = set(zip(word, word[1:])) if once_per_word else list(zip(word, word[1:]))
        for pair in found:
            pairs[pair] += n if weighted else 1
    return pairs


def _best(pairs):
    return min(pairs, key=lambda p: (-pairs[p], p))


def _merge_left_to_right(word, pair):
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(word[i] + word[i + 1])
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def across_word_boundaries(words):
    pair = _best(_count(words, stream=True))
    return pair, {_merge_left_to_right(w, pair): n for w, n in words.items()}


def unweighted(words):
    pair = _best(_count(words, weighted=False))
    return pair, {_merge_left_to_right(w, pair): n for w, n in words.items()}


def overlapping_counted_once(words):
    pair = _best(_count(words, once_per_word=True))
    return pair, {_merge_left_to_right(w, pair): n for w, n in words.items()}


def ties_by_first_seen(words):
    pairs = _count(words)
    pair = max(pairs, key=pairs.get)
    return pair, {_merge_left_to_right(w, pair): n for w, n in words.items()}


def ties_sort_last(words):
    pairs = _count(words)
    pair = max(pairs, key=lambda p: (pairs[p], p))
    return pair, {_merge_left_to_right(w, pair): n for w, n in words.items()}


def least_frequent(words):
    pairs = _count(words)
    pair = min(pairs, key=lambda p: (pairs[p], p))
    return pair, {_merge_left_to_right(w, pair): n for w, n in words.items()}


def first_occurrence_only(words):
    pair = _best(_count(words))
    merged = {}
    for word, n in words.items():
        word = list(word)
        for i in range(len(word) - 1):
            if (word[i], word[i + 1]) == pair:
                word[i:i + 2] = [word[i] + word[i + 1]]
                break
        merged[tuple(word)] = n
    return pair, merged


def right_to_left(words):
    pair = _best(_count(words))
    merged = {}
    for word, n in words.items():
        out, i = [], len(word) - 1
        while i >= 0:
            if i > 0 and (word[i - 1], word[i]) == pair:
                out.insert(0, word[i - 1] + word[i])
                i -= 2
            else:
                out.insert(0, word[i])
                i -= 1
        merged[tuple(out)] = n
    return pair, merged


def no_skip_after_merge(words):
    pair = _best(_count(words))
    merged = {}
    for word, n in words.items():
        out = []
        for i in range(len(word)):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                out.append(word[i] + word[i + 1])
            elif i == 0 or (word[i - 1], word[i]) != pair:
                out.append(word[i])
        merged[tuple(out)] = n
    return pair, merged


def string_replace(words):
    pair = _best(_count(words))
    return pair, {tuple(" ".join(w).replace(" ".join(pair), "".join(pair)).split(" ")): n for w, n in words.items()}


def mutates_input(words):
    pair = _best(_count(words))
    for word in list(words):
        merged = _merge_left_to_right(word, pair)
        if merged != word:
            words[merged] = words.pop(word)
    return pair, words


def returns_swapped(words):
    pair, merged = bpe_merge_step(words)
    return merged, pair


def returns_only_words(words):
    return bpe_merge_step(words)[1]


def tuple_symbols(words):
    pair = _best(_count(words))
    merged = {}
    for word, n in words.items():
        out, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                out.append(pair)                        # the pair itself, not the string a + b
                i += 2
            else:
                out.append(word[i])
                i += 1
        merged[tuple(out)] = n
    return pair, merged


def lists_as_words(words):
    pair, merged = bpe_merge_step(words)
    return pair, [list(w) for w in merged]


def drops_unchanged_words(words):
    pair, merged = bpe_merge_step(words)
    return pair, {w: n for w, n in merged.items() if w not in words}


def resets_counts(words):
    pair, merged = bpe_merge_step(words)
    return pair, {w: 1 for w in merged}


@pytest.mark.parametrize("fn, words", [
    (across_word_boundaries, ["spans two words", "inside"]),
    (unweighted, ["counted once", "weight every pair by the word's count"]),
    (overlapping_counted_once, ["several times in one word", "'▁aaa'"]),
    (ties_by_first_seen, ["equally frequent", "found first", "sorts first"]),
    (ties_sort_last, ["equally frequent", "sorts last"]),
    (least_frequent, ["least frequent"]),
    (first_occurrence_only, ["only the first occurrence"]),
    (right_to_left, ["from the right", "left to right"]),
    (no_skip_after_merge, ["i + 1", "continue at i + 2"]),
    (string_replace, ["parts of symbols", "whole symbols"]),
    (mutates_input, ["changed its argument `words`"]),
    (returns_swapped, ["(merged_words, pair)"]),
    (returns_only_words, ["only the dict of words"]),
    (tuple_symbols, ["one string a + b"]),
    (lists_as_words, ["should be a dict"]),
    (drops_unchanged_words, ["every word of the input must be in the output"]),
    (resets_counts, ["counts changed"]),
], ids=lambda x: getattr(x, "__name__", ""))
def test_merge_step_check_names_each_mistake(fn, words):
    rejects(check_bpe_merge_step, fn, *words)


# -- additive attention -------------------------------------------------------------------------

def einsum_style(q, k, v, v_a, mask=None):
    """Correct, written with einsum and -inf filling plus nan_to_num."""
    scores = torch.einsum("...tsa,a->...ts", torch.tanh(q.unsqueeze(-2) + k.unsqueeze(-3)), v_a)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return torch.einsum("...ts,...sd->...td", weights, v), weights


def loop_style(q, k, v, v_a, mask=None):
    """Correct: one query at a time."""
    rows_c, rows_w = [], []
    for t in range(q.shape[-2]):
        scores = torch.tanh(q[..., t:t + 1, :] + k) @ v_a                       # (..., S)
        if mask is not None:
            m = mask.expand(*q.shape[:-2], q.shape[-2], k.shape[-2])[..., t, :]
            scores = scores.masked_fill(~m, -1e30)
            w = torch.softmax(scores, dim=-1) * m
        else:
            w = torch.softmax(scores, dim=-1)
        rows_w.append(w)
        rows_c.append((w[..., None] * v).sum(dim=-2))
    return torch.stack(rows_c, dim=-2), torch.stack(rows_w, dim=-2)


def test_additive_attention_check_accepts_right_versions(capsys):
    passes(check_additive_attention, additive_attention, capsys)
    passes(check_additive_attention, einsum_style, capsys)
    passes(check_additive_attention, loop_style, capsys)


def wrong_attention(q, k, v, v_a, mask=None, axis=-1, tanh=True, scale=False, mask_mode="right",
                    transposed=False, context_from_keys=False):
    hidden = (k[..., :, None, :] + q[..., None, :, :]) if transposed else (q[..., :, None, :] + k[..., None, :, :])
    scores = (torch.tanh(hidden) if tanh else hidden) @ v_a
    if scale:
        scores = scores / q.shape[-1] ** 0.5
    if mask is not None and mask_mode != "ignored":
        m = mask.transpose(-1, -2) if transposed else mask
        allowed = ~m if mask_mode == "inverted" else m
        scores = scores.masked_fill(~allowed, float("-inf") if mask_mode == "inf" else -1e9)
    weights = torch.softmax(scores, dim=axis)
    if transposed:
        return weights @ q, weights
    return weights @ (k if context_from_keys else v), weights


@pytest.mark.parametrize("kwargs, words", [
    (dict(axis=-2), ["over the queries"]),
    (dict(tanh=False), ["tanh is missing"]),
    (dict(scale=True), ["sqrt(A)", "has none"]),
    (dict(mask_mode="inverted"), ["inverted"]),
    (dict(mask_mode="ignored"), ["mask is ignored"]),
    (dict(mask_mode="inf"), ["NaN", "finfo"]),
    (dict(transposed=True), ["(..., T, S)", "one row per query"]),
    (dict(context_from_keys=True), ["the context"]),
])
def test_additive_attention_check_names_each_mistake(kwargs, words):
    rejects(check_additive_attention, lambda q, k, v, v_a, mask=None: wrong_attention(q, k, v, v_a, mask, **kwargs),
            *words)


def test_additive_attention_check_reports_a_crash_with_the_case():
    def crashes(q, k, v, v_a, mask=None):
        return torch.tanh(q + k) @ v_a, None                   # (T, A) + (S, A): sizes differ
    rejects(check_additive_attention, crashes, "raised RuntimeError on q (2, 3, 7)")
