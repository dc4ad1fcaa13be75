"""Checks for the lesson 09 exercises: one merge step of byte-pair encoding, additive (Bahdanau) attention."""
from __future__ import annotations

from collections import Counter

import torch

from ..bpe import bpe_merge_step, count_pairs, merge_word
from ..rnn_baseline import additive_attention
from ._core import call, describe, exercise, expect_close, expect_tensor, fail

__all__ = ["check_bpe_merge_step", "check_additive_attention"]


# -- one BPE merge step: the reference and its typical wrong versions ----------------------------

def _count(words, how: str) -> Counter:
    pairs: Counter = Counter()
    if how == "weighted":                                   # right
        return count_pairs(words)
    if how == "unweighted":                                 # each distinct word once
        for word in words:
            pairs.update(zip(word, word[1:]))
    elif how == "once_per_word":                            # a pair counted once per word ("a a a" holds it twice)
        for word, n in words.items():
            for pair in set(zip(word, word[1:])):
                pairs[pair] += n
    elif how == "stream":                                   # the corpus as one sequence: pairs across words
        stream = [s for word, n in words.items() for _ in range(n) for s in word]
        pairs.update(zip(stream, stream[1:]))
    return pairs


def _pick(pairs: Counter, how: str):
    if how == "sorted":                                     # right: most frequent, ties -> sorts first
        return min(pairs, key=lambda p: (-pairs[p], p))
    if how == "first_seen":                                 # max() keeps the first maximum in counting order
        return max(pairs, key=pairs.get)
    if how == "sorts_last":                                 # max over (count, pair): ties -> sorts last
        return max(pairs, key=lambda p: (pairs[p], p))
    return min(pairs, key=lambda p: (pairs[p], p))          # "least": the rarest pair


def _merge(word, pair, how: str):
    a, b = pair
    if how == "left_to_right":                              # right
        return merge_word(word, pair)
    if how == "first_only":                                 # only the first occurrence
        for i in range(len(word) - 1):
            if (word[i], word[i + 1]) == pair:
                return tuple(word[:i]) + (a + b,) + tuple(word[i + 2:])
        return tuple(word)
    if how == "right_to_left":
        return _right_to_left(word, pair)
    if how == "no_skip":                                    # after a merge, the second symbol is read again
        out = []
        for i in range(len(word)):
            if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                out.append(a + b)
            elif not (i > 0 and (word[i - 1], word[i]) == pair):
                out.append(word[i])
        return tuple(out)
    if how == "string":                                     # text replacement in the space-joined word
        return tuple(" ".join(word).replace(f"{a} {b}", a + b).split(" "))
    raise ValueError(how)


def _right_to_left(word, pair):
    out, i = [], len(word) - 1
    while i >= 0:
        if i >= 1 and (word[i - 1], word[i]) == pair:
            out.append(pair[0] + pair[1])
            i -= 2
        else:
            out.append(word[i])
            i -= 1
    return tuple(reversed(out))


def _step(words, count="weighted", pick="sorted", merge="left_to_right"):
    pairs = _count(words, count)
    pair = _pick(pairs, pick)
    return pair, {_merge(word, pair, merge): n for word, n in words.items()}


def _w(*texts_counts):
    """``_w("▁ a a a", 2, ...)`` -> ``{("▁", "a", "a", "a"): 2, ...}`` (symbols separated by spaces)."""
    return {tuple(text.split(" ")): n for text, n in zip(texts_counts[::2], texts_counts[1::2])}


#: (case description, words). Each case separates some mistakes from the right answer.
_MERGE_CASES = [
    ("the word '▁aaa' (3 times), '▁a' (once): pair ('a', 'a') occurs twice inside '▁aaa', overlapping",
     _w("▁ a a a", 3, "▁ a", 1)),
    ("words '▁abab' (2) and '▁xab' (1): the pair ('a', 'b') occurs twice in one word",
     _w("▁ a b a b", 2, "▁ x a b", 1)),
    ("symbols 'ab' and 'c' next to a frequent pair ('b', 'c')",
     _w("x ab c", 2, "▁ b c", 3)),
    ("one frequent word '▁a' (3 times) and '▁b' (once)",
     _w("▁ a", 3, "▁ b", 1)),
    ("a tie: '▁ab' and '▁ba', twice each",
     _w("▁ a b", 2, "▁ b a", 2)),
    ("rare words '▁xy', '▁yxy' and one frequent '▁q'",
     _w("▁ x y", 1, "▁ y x y", 1, "▁ q", 5, "▁ y y", 1)),
    ("the word '▁aaaaa': pair ('a', 'a') five times in a row",
     _w("▁ a a a a a", 2, "▁ b", 1)),
]

_COUNT_MISTAKES = {
    "stream": "the pair {pair} spans two words: count pairs *inside* each word only (the end of one word and "
              "the start of the next are never merged), e.g. `for a, b in zip(word, word[1:])` for each word",
    "unweighted": "each distinct word was counted once: weight every pair by the word's count "
                  "(`pairs[a, b] += count`), since `words` maps a word to how often it occurs",
    "once_per_word": "a pair that occurs several times in one word was counted once: count it at every "
                     "position (in '▁aaa' the pair ('a', 'a') occurs twice, at positions 1 and 2)",
}
_PICK_MISTAKES = {
    "first_seen": "two pairs are equally frequent and you took the one found first: break ties by taking "
                  "the pair that sorts first, e.g. `min(pairs, key=lambda p: (-pairs[p], p))`",
    "sorts_last": "two pairs are equally frequent and you took the one that sorts last: take the one that "
                  "sorts first, e.g. `min(pairs, key=lambda p: (-pairs[p], p))`",
    "least": "you merged the least frequent pair: merge the most frequent one",
}
_MERGE_MISTAKES = {
    "first_only": "only the first occurrence of the pair in a word was merged: merge every occurrence "
                  "(keep scanning after a merge)",
    "right_to_left": "the pair was merged scanning from the right: scan left to right, so '▁aaa' with the "
                     "pair ('a', 'a') becomes ('▁', 'aa', 'a')",
    "no_skip": "after merging the pair at position i the scan went on at i + 1, so the pair's second symbol "
               "was used twice: continue at i + 2",
    "string": "a merge joined parts of symbols: replacing text in ' '.join(word) also matches inside longer "
              "symbols ('ab' + 'c' became 'abc' for the pair ('b', 'c')); compare whole symbols, "
              "word[i] == a and word[i + 1] == b",
}


def _show(words) -> str:
    return "{" + ", ".join(f"{' '.join(w)!r}: {n}" for w, n in list(words.items())[:6]) + \
        (", ..." if len(words) > 6 else "") + "}"


def _expect_step_result(got, case: str):
    if isinstance(got, dict):
        fail(f"on {case} your function returned only the dict of words: return (pair, merged_words)")
    if not isinstance(got, tuple) or len(got) != 2:
        fail(f"on {case} your function should return a tuple (pair, merged_words), got {describe(got)}")
    pair, merged = got
    if isinstance(pair, dict) and isinstance(merged, tuple):
        fail(f"on {case} your function returned (merged_words, pair): return (pair, merged_words)")
    if not isinstance(merged, dict):
        fail(f"on {case} the merged words should be a dict {{word as a tuple of symbols: count}}, "
             f"got {describe(merged)}")
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
        fail(f"on {case} the pair should be a tuple of two symbols such as ('e', 's'), got {pair!r}")
    for word in merged:
        if not isinstance(word, tuple):
            fail(f"on {case} every word should be a tuple of symbols (a dict key), got {word!r} "
                 f"({type(word).__name__}): build it with tuple(...)")
        bad = [s for s in word if not isinstance(s, str)]
        if bad:
            fail(f"on {case} a merged symbol should be one string a + b, got {bad[0]!r} in {word!r}")
    return pair, merged


def _variants():
    """Every typical mistake as ``(diagnosis, step function)``."""
    for how, message in _COUNT_MISTAKES.items():
        yield message, lambda words, how=how: _step(words, count=how)
    for how, message in _PICK_MISTAKES.items():
        yield message, lambda words, how=how: _step(words, pick=how)
    for how, message in _MERGE_MISTAKES.items():
        yield message, lambda words, how=how: _step(words, merge=how)


@exercise(reference=bpe_merge_step)
def check_bpe_merge_step(fn):
    results = []
    for case, words in _MERGE_CASES:
        got = call(fn, words, case=case)               # call() reports a change to `words` in place
        results.append((case, words, *_expect_step_result(got, case)))
    wrong = [(case, words, pair, merged) for case, words, pair, merged in results
             if (pair, merged) != bpe_merge_step(words)]
    if wrong:
        case, words, pair, merged = wrong[0]
        # a typical mistake that gives exactly your answers on every case
        for message, step in _variants():
            if all(step(w) == (p, m) for _, w, p, m in results):
                fail(f"on {case}: {message.format(pair=pair)}")
        expected_pair, expected = bpe_merge_step(words)
        if pair != expected_pair:
            if not any(pair in zip(w, w[1:]) for w in words):
                fail(f"on {case} the pair {pair} does not occur inside any word: count pairs inside each word only")
            counts = count_pairs(words)
            fail(f"on {case} you merged {pair} ({counts[pair]} occurrences), but {expected_pair} occurs "
                 f"{counts[expected_pair]} times: merge the most frequent pair, counted inside words and "
                 f"weighted by the words' counts (ties: the pair that sorts first)")
        if sorted(map("".join, merged)) != sorted(map("".join, expected)):
            if len(merged) == len(expected):
                fail(f"on {case} a word's letters changed: merging ('a', 'b') must give the symbol 'ab' "
                     f"and keep every other symbol; expected {_show(expected)}, got {_show(merged)}")
            fail(f"on {case} the words changed: every word of the input must be in the output, with its "
                 f"symbols merged; expected {_show(expected)}, got {_show(merged)}")
        if set(merged) == set(expected):
            fail(f"on {case} the counts changed: each merged word keeps the count of its input word")
        fail(f"on {case}, merging {pair}: expected {_show(expected)}, got {_show(merged)}")
    # ten steps in a row on a small corpus: the same merges as the reference
    words = _w("▁ l o w", 5, "▁ l o w e r", 2, "▁ n e w e s t", 6, "▁ w i d e s t", 3)
    mine, ref, theirs = dict(words), dict(words), []
    for step in range(10):
        got = call(fn, mine, case=f"step {step + 1} on Sennrich et al.'s corpus {{low: 5, lower: 2, newest: 6, widest: 3}}")
        pair, mine = _expect_step_result(got, f"step {step + 1} on Sennrich et al.'s corpus")
        expected_pair, ref = bpe_merge_step(ref)
        theirs.append(pair)
        if pair != expected_pair or mine != ref:
            fail(f"after {step + 1} steps on Sennrich et al.'s corpus your merges are {theirs}, the reference's "
                 f"end with {expected_pair}: check the counting (inside words, weighted), the tie-break and "
                 f"that the merged dict is the input of the next step")
    return len(_MERGE_CASES) + 1


# -- additive (Bahdanau) attention -------------------------------------------------------------

def _additive(q, k, v, v_a, mask=None, axis=-1, tanh=True, scale=False, mask_mode="right", transpose=False):
    hidden = q[..., :, None, :] + k[..., None, :, :]                    # (..., T, S, A)
    scores = (torch.tanh(hidden) if tanh else hidden) @ v_a             # (..., T, S)
    if scale:
        scores = scores / q.shape[-1] ** 0.5
    if mask is not None and mask_mode != "ignored":
        allowed = ~mask if mask_mode == "inverted" else mask
        scores = scores.masked_fill(~allowed, float("-inf") if mask_mode == "inf" else torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=axis)
    if mask is not None and mask_mode == "right":
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, weights


def _attention_cases():
    g = torch.Generator().manual_seed(9)
    B, T, S, A, d_v = 2, 3, 5, 7, 4
    q, k = torch.randn(B, T, A, generator=g), torch.randn(B, S, A, generator=g)
    v, v_a = torch.randn(B, S, d_v, generator=g), torch.randn(A, generator=g)
    pad = torch.ones(B, 1, S, dtype=torch.bool)
    pad[1, 0, 3:] = False
    empty = pad.clone().expand(B, T, S).clone()
    empty[0, 1] = False                                               # a query that may attend to nothing
    return [((q, k, v, v_a, None), "q (2, 3, 7), k (2, 5, 7), v (2, 5, 4), no mask"),
            ((q, k, v, v_a, pad), "the same with a padding mask (2, 1, 5) (True = may attend)"),
            ((q[:1, :1], k[:1], v[:1], v_a, pad[:1]), "a batch of 1 and one query (a decoder step)"),
            ((q, k, v, v_a, empty), "a mask (2, 3, 5) where one query may attend to no key")]


@exercise(reference=additive_attention)
def check_additive_attention(fn):
    cases = _attention_cases()
    for (q, k, v, v_a, mask), case in cases:
        args = (q.clone(), k.clone(), v.clone(), v_a.clone(), None if mask is None else mask.clone())
        got = call(fn, *args, case=case)
        if not isinstance(got, tuple) or len(got) != 2:
            fail(f"on {case} return (context, weights), got {describe(got)}")
        context, weights = got
        expected_context, expected_weights = additive_attention(q, k, v, v_a, mask)
        T, S = q.shape[-2], k.shape[-2]
        if isinstance(weights, torch.Tensor) and tuple(weights.shape) == tuple(q.shape[:-2]) + (S, T) and S != T:
            fail(f"on {case} the weights have shape {tuple(weights.shape)}: (..., T, S) = (..., {T}, {S}) "
                 f"expected, one row per query; add q[..., :, None, :] (..., T, 1, A) to k[..., None, :, :] (..., 1, S, A)")
        expect_tensor(weights, expected_weights.shape, f"the weights on {case}")
        if mask is not None and torch.isnan(weights).any():
            fail(f"on {case} the weights contain NaN: a query whose keys are all masked gets softmax of "
                 f"only -inf. Fill blocked scores with torch.finfo(scores.dtype).min, and set the blocked "
                 f"weights to 0 after the softmax")
        mistakes = {
            "the softmax is over the queries (dim=-2): each query's weights over the keys (dim=-1) must sum to 1":
                _additive(q, k, v, v_a, mask, axis=-2)[1],
            "tanh is missing: the score is v_a · tanh(q + k)": _additive(q, k, v, v_a, mask, tanh=False)[1],
            "the scores are divided by sqrt(A): that is dot-product attention's scaling; additive attention "
            "has none": _additive(q, k, v, v_a, mask, scale=True)[1],
        }
        if mask is not None:
            mistakes.update({
                "the mask is inverted: True means *may attend*; block the positions where the mask is False":
                    _additive(q, k, v, v_a, mask, mask_mode="inverted")[1],
                "the mask is ignored: fill the scores where the mask is False with a very negative number "
                "before the softmax": _additive(q, k, v, v_a, mask, mask_mode="ignored")[1],
            })
        expect_close(weights, expected_weights, f"the weights on {case}", mistakes=mistakes)
        expect_tensor(context, expected_context.shape, f"the context on {case}")
        expect_close(context, expected_context, f"the context on {case}", mistakes={
            "the context averages the keys: it is weights @ v, the weighted average of the values":
                expected_weights @ k if k.shape == v.shape else expected_context + 1e6,
        })
    return len(cases)
