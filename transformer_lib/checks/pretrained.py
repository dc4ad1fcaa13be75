"""Checks for lesson 13's exercises: the name table of one layer, WordPiece on one word, and
mean pooling with a padding mask.

Each check compares the learner's result with the reference in
:mod:`transformer_lib.pretrained` / :mod:`transformer_lib.wordpiece`; when it differs, it
recomputes what the typical mistakes give (query and key swapped, the two LayerNorms or the two
feed-forward layers swapped, the attention's and the feed-forward's ``output.dense`` confused;
WordPiece without ``##``, shortest match first, ``[UNK]`` for part of a word, no length limit;
pooling that averages the padding too, forgets to normalise, takes the [CLS] vector...) and names
the one that matches.

Attention masks here follow the tokenizers' convention: ``(B, T)``, 1/True at real tokens.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ..pretrained import layer_name_map
from ..sentence_encoder import l2_normalize, mean_pooling, pool_sentence_embeddings
from ..wordpiece import MAX_CHARS_PER_WORD, wordpiece_word
from ._core import call, close, describe, exercise, expect_close, expect_tensor, fail

__all__ = ["check_layer_name_map", "check_wordpiece_word", "check_pool_sentence_embeddings"]


# --------------------------------------------------------------------------------------------
# exercise 1: the name table of one layer

_PARTS = {  # short name of a checkpoint part -> (checkpoint infix, what it is)
    "query": ("attention.self.query", "the query projection w_q"),
    "key": ("attention.self.key", "the key projection w_k"),
    "value": ("attention.self.value", "the value projection w_v"),
    "attn_out": ("attention.output.dense", "the attention's output projection w_o"),
    "attn_norm": ("attention.output.LayerNorm", "the LayerNorm after attention, norm1"),
    "ffn_in": ("intermediate.dense", "the first feed-forward layer linear1 (D -> d_ff)"),
    "ffn_out": ("output.dense", "the second feed-forward layer linear2 (d_ff -> D)"),
    "ffn_norm": ("output.LayerNorm", "the LayerNorm after the feed-forward network, norm2"),
}

_SWAPS = {  # (part, part) -> diagnosis when their targets are exchanged
    ("query", "key"): "query and key are swapped: attention.self.query is w_q and attention.self.key is w_k "
                      "(swapping them transposes every attention score matrix, and no shape check notices)",
    ("query", "value"): "query and value are swapped: attention.self.query -> w_q, attention.self.value -> w_v",
    ("key", "value"): "key and value are swapped: attention.self.key -> w_k, attention.self.value -> w_v",
    ("attn_norm", "ffn_norm"): "the two LayerNorms are swapped: attention.output.LayerNorm follows the attention "
                               "sub-layer (norm1), output.LayerNorm follows the feed-forward sub-layer (norm2)",
    ("ffn_in", "ffn_out"): "the two feed-forward layers are swapped: intermediate.dense is linear1 (384 -> 1536), "
                           "output.dense is linear2 (1536 -> 384); the shapes would not fit",
    ("attn_out", "ffn_out"): "the two output.dense layers are confused: attention.output.dense is the attention's "
                             "output projection w_o; output.dense (without 'attention.') is the feed-forward's linear2",
}


def _canonical(value) -> str:
    """Accept ``encoder.layers[3].x`` as well as ``encoder.layers.3.x``."""
    return re.sub(r"\[(\d+)\]", r".\1", str(value))


def _swapped(expected: dict[str, str], i: int, a: str, b: str) -> dict[str, str]:
    out = dict(expected)
    for suffix in ("weight", "bias"):
        ka = f"encoder.layer.{i}.{_PARTS[a][0]}.{suffix}"
        kb = f"encoder.layer.{i}.{_PARTS[b][0]}.{suffix}"
        out[ka], out[kb] = expected[kb], expected[ka]
    return out


@exercise(reference=layer_name_map)
def check_layer_name_map(fn):
    """Check ``fn(i) -> {checkpoint name: our state_dict key}`` for the 16 tensors of layer ``i``."""
    layers = (0, 3, 5)
    for i in layers:
        got = call(fn, i, case=f"layer {i}")
        if not isinstance(got, Mapping):
            fail(f"layer_name_map({i}) should return a dict {{checkpoint name: our name}}, got {describe(got)}")
        got = {str(k): _canonical(v) for k, v in got.items()}
        expected = layer_name_map(i)
        if got == expected:
            continue
        reversed_map = {_canonical(v): str(k) for k, v in expected.items()}
        if got == reversed_map or (got and all(k.startswith("encoder.layers") for k in got)
                                   and all(v.startswith("encoder.layer.") for v in got.values())):
            fail(f"layer_name_map({i}) is reversed: its keys are our names (e.g. {next(iter(got))!r}) and its values "
                 f"the checkpoint's. The table maps the checkpoint's name to ours: "
                 f"{{'encoder.layer.{i}.attention.self.query.weight': 'encoder.layers.{i}.self_attn.w_q.weight', ...}}")
        extra = sorted(set(got) - set(expected))
        missing = sorted(set(expected) - set(got))
        if extra and all(re.match(rf"encoder\.layer\.\d+\.", k) and not k.startswith(f"encoder.layer.{i}.")
                         for k in extra):
            fail(f"layer_name_map({i}) gives names of another layer (e.g. {extra[0]!r}): build the names with "
                 f"the argument i, e.g. f'encoder.layer.{{i}}.attention.self.query.weight'")
        if missing and all(k.endswith(".bias") for k in missing) and not extra:
            fail(f"layer_name_map({i}) lacks the biases (e.g. {missing[0]!r}): every Linear and LayerNorm has a "
                 f".weight and a .bias, 16 tensors per layer")
        if missing:
            fail(f"layer_name_map({i}) lacks the checkpoint tensor {missing[0]!r} ({len(missing)} missing in all; "
                 f"a layer has 16 tensors)")
        if extra:
            fail(f"layer_name_map({i}) has a checkpoint name that does not exist: {extra[0]!r}. The names look like "
                 f"'encoder.layer.{i}.attention.self.query.weight'")
        for (a, b), message in _SWAPS.items():
            if got == _swapped(expected, i, a, b):
                fail(message)
        if all(v.startswith("encoder.layers.") for v in got.values()) and \
                any(not v.startswith(f"encoder.layers.{i}.") for v in got.values()):
            fail(f"layer_name_map({i}) maps to parameters of another of our layers (e.g. "
                 f"{next(v for v in got.values() if not v.startswith(f'encoder.layers.{i}.'))!r}): checkpoint layer i "
                 f"is our encoder.layers[i]")
        wrong = next(k for k in expected if got[k] != expected[k])
        fail(f"{wrong!r} should map to {expected[wrong]!r} (or encoder.layers[{i}]...), got {got[wrong]!r}")
    return len(layers)


# --------------------------------------------------------------------------------------------
# exercise 2: WordPiece on one word

_TOY_VOCAB = {t: n for n, t in enumerate([
    "[PAD]", "[UNK]", "u", "un", "una", "##n", "##a", "##f", "##fa", "##ffa", "##b", "##l", "##e", "##ble",
    "play", "pl", "##ay", "##ing", "##in", "##g", "ing", "in", "a", "b", "f", "ble", "x", "##x",
    "mn", "m", "##op", "##nop", "##o", "##on",
])}


def wordpiece_with_mistake(word: str, vocab, *, first: str = "", rest: str = "##", longest: bool = True,
                           first_falls_back: bool = False, partial_unk: bool = False, from_the_right: bool = False,
                           keep_prefix: bool = True, max_chars: int = MAX_CHARS_PER_WORD) -> list[str]:
    """Greedy WordPiece on one word with a switchable mistake: the one simulator of the typical
    mistakes, used by the check and by the tests' learner-style wrong versions.

    Args:
        first, rest: the prefix a word's first piece / its other pieces are looked up with ("" and "##").
        longest: try the longest piece first (``False``: the shortest).
        first_falls_back: a first piece not in the vocabulary is tried again with "##".
        partial_unk: a part that matches nothing becomes "[UNK]" after the pieces found so far.
        from_the_right: take the longest piece that *ends* the word, working leftwards.
        keep_prefix: return the pieces with their "##" (``False``: without).
        max_chars: longer words become ["[UNK]"].
    """
    if len(word) > max_chars:
        return ["[UNK]"]

    def lookup(start, end):
        piece = (first if start == 0 else rest) + word[start:end]
        if first_falls_back and start == 0 and piece not in vocab:
            piece = "##" + piece
        return piece if piece in vocab else None

    pieces, start, end = [], 0, len(word)
    while start < end:
        if from_the_right:
            found = next(((s, lookup(s, end)) for s in range(start, end) if lookup(s, end)), None)
        else:
            ends = range(end, start, -1) if longest else range(start + 1, end + 1)
            found = next(((e, lookup(start, e)) for e in ends if lookup(start, e)), None)
        if found is None:
            return pieces + ["[UNK]"] if partial_unk else ["[UNK]"]
        if from_the_right:
            end = found[0]
            pieces.insert(0, found[1])
        else:
            start = found[0]
            pieces.append(found[1])
    return pieces if keep_prefix else [p[2:] if p.startswith("##") else p for p in pieces]


_WP_MISTAKES = {
    "continuation pieces must be looked up (and returned) with the '##' prefix: after the first piece, try "
    "'##' + word[start:end]": dict(rest=""),
    "the first piece fell back to its '##' form: a word must start with a piece *without* '##' (here none "
    "fits, so the word is ['[UNK]']); '##' pieces may only continue a word": dict(first_falls_back=True),
    "the first piece of a word has no '##': only pieces that continue a word start with '##'": dict(first="##"),
    "it matches from the end of the word: WordPiece is greedy from the *left*, the longest piece that starts "
    "the word first ('mn' + '##op', not 'm' + '##nop')": dict(from_the_right=True),
    "it takes the shortest matching piece; WordPiece takes the longest: try end = len(word), len(word) - 1, ... "
    "down to start + 1 and keep the first piece in the vocabulary": dict(longest=False),
    "when some part of the word matches no piece, the whole word becomes ['[UNK]'] (not the pieces found so "
    "far plus '[UNK]')": dict(partial_unk=True),
    f"a word longer than {MAX_CHARS_PER_WORD} characters must become ['[UNK]'] without being split":
        dict(max_chars=10**9),
    f"a word of exactly {MAX_CHARS_PER_WORD} characters is still split; only longer words become ['[UNK]'] "
    f"(len(word) > {MAX_CHARS_PER_WORD})": dict(max_chars=MAX_CHARS_PER_WORD - 1),
    "the continuation pieces must keep their '##' in the result (it tells a piece that continues a word from a "
    "word of its own)": dict(keep_prefix=False),
}


@exercise(reference=wordpiece_word)
def check_wordpiece_word(fn):
    """Check ``fn(word, vocab) -> list of pieces`` (greedy longest-match-first WordPiece)."""
    cases = [
        ("unaffable", "longest pieces: una + ##ffa + ##ble"),
        ("mnop", "longest match from the left: mn + ##op (from the right it would be m + ##nop)"),
        ("on", "a word whose start exists only as a '##' piece"),
        ("playing", "play + ##ing"),
        ("a", "a one-letter word"),
        ("unx", "a word whose end matches only a '##' piece"),
        ("unzip", "a word with a letter that is in no piece"),
        ("zebra", "a word whose first letter is in no piece"),
        ("b" * MAX_CHARS_PER_WORD, f"a word of exactly {MAX_CHARS_PER_WORD} characters"),
        ("b" * (MAX_CHARS_PER_WORD + 1), f"a word of {MAX_CHARS_PER_WORD + 1} characters"),
    ]
    vocab = dict(_TOY_VOCAB)
    for word, what in cases:
        got = call(fn, word, vocab, case=f"the word {word[:20]!r}{'...' if len(word) > 20 else ''} ({what})")
        expected = wordpiece_word(word, vocab)
        if isinstance(got, tuple):
            got = list(got)
        if not isinstance(got, list) or not all(isinstance(p, str) for p in got):
            fail(f"for {word[:20]!r} it should return a list of str pieces, got {describe(got)}")
        if got == expected:
            continue
        for message, mistake in _WP_MISTAKES.items():
            if got == wordpiece_with_mistake(word, vocab, **mistake):
                fail(f"for {word[:20]!r} ({what}) it returned {got[:6]}{'...' if len(got) > 6 else ''}: {message}")
        fail(f"for {word[:20]!r} ({what}) with the vocabulary {sorted(vocab)[:12]}... it returned "
             f"{got[:6]}, expected {expected[:6]}")
    return len(cases)


# --------------------------------------------------------------------------------------------
# exercise 3: mean pooling with a padding mask

def _pool_cases():
    g = torch.Generator().manual_seed(12)
    cases = []
    for (B, T, D), lengths, as_bool in (((3, 7, 5), (7, 4, 2), False), ((1, 6, 5), (6,), True),
                                        ((2, 5, 384), (5, 1), False), ((4, 3, 7), (3, 2, 2, 1), True)):
        hidden = torch.randn(B, T, D, generator=g)
        mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]             # (B, T) bool
        hidden = torch.where(mask[..., None], hidden, 5.0 + 3.0 * hidden)           # padding vectors: far off
        cases.append((hidden, mask if as_bool else mask.long(), lengths))
    return cases


@exercise(reference=pool_sentence_embeddings)
def check_pool_sentence_embeddings(fn):
    """Check ``fn(hidden (B, T, D), attention_mask (B, T)) -> (B, D)`` unit vectors: the mean over the
    real tokens, L2-normalised."""
    cases = _pool_cases()
    for hidden, mask, lengths in cases:
        B, T, D = hidden.shape
        case = (f"hidden {tuple(hidden.shape)} with {'a bool' if mask.dtype == torch.bool else 'an int'} "
                f"attention_mask, real lengths {list(lengths)}")
        h0, m0 = hidden, mask
        got = call(fn, hidden, mask, case=case)
        expected = pool_sentence_embeddings(h0, m0)
        what = f"the sentence embeddings for {case}"
        if isinstance(got, torch.Tensor) and got.shape == (B, T, D):
            fail(f"{what} have shape {tuple(got.shape)}: pool over the tokens (dim=1) to get (B, D) = {(B, D)}")
        expect_tensor(got, expected.shape, what)
        m = m0.to(h0.dtype)
        mistakes = {
            "the padding vectors are averaged too: multiply by the mask and divide by the number of real tokens "
            "(attention_mask.sum(1)), not by T": l2_normalize(h0.mean(dim=1)),
            "the vectors are not normalised: divide each row by its length (F.normalize(x, dim=-1)); "
            "the model was trained with unit vectors, whose dot products are cosines": mean_pooling(h0, m0),
            "it is the [CLS] vector (token 0), not the mean over the real tokens": l2_normalize(h0[:, 0]),
            "the mask is inverted: it averages the padding and skips the real tokens (1/True marks a real token)":
                l2_normalize((h0 * (1 - m)[..., None]).sum(1) / (1 - m).sum(1, keepdim=True).clamp(min=1e-9)),
            "it takes the maximum over the tokens (max pooling); this model was trained with the mean":
                l2_normalize(h0.masked_fill(~m0.bool()[..., None], float("-inf")).amax(dim=1)),
            "it normalises each token vector before averaging, so the mean is shorter than 1: average first, then "
            "normalise the mean": mean_pooling(l2_normalize(h0), m0),
        }
        if got.is_floating_point() and B > 1 and not close(got, expected):
            columns = got.double().norm(dim=0)
            if torch.allclose(columns, torch.ones_like(columns), atol=1e-4):
                fail(f"{what} are normalised over the batch (dim=0): each column has length 1. Normalise each "
                     f"sentence's vector over its features (dim=-1)")
        norms = got.double().norm(dim=-1) if got.is_floating_point() else None
        unit = norms is not None and bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-4))
        expect_close(got, expected, what, mistakes=mistakes,
                     hint="Expected normalize(sum_t m_t h_t / sum_t m_t)"
                          + ("." if unit else f"; note that your rows do not have length 1 (lengths "
                                              f"{[round(x, 3) for x in norms.tolist()]})." if norms is not None else "."))
    return len(cases)
