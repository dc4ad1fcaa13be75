"""Lesson 13's checks accept correct answers and name each typical mistake."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_lib.checks import (CheckFailed, check_layer_name_map, check_pool_sentence_embeddings,
                                    check_wordpiece_word)
from transformer_lib.checks.pretrained import wordpiece_with_mistake
from transformer_lib.pretrained import layer_name_map
from transformer_lib.sentence_encoder import pool_sentence_embeddings
from transformer_lib.wordpiece import wordpiece_word


# --- the name table of one layer ----------------------------------------------------------------

PAIRS = [("attention.self.query", "self_attn.w_q"), ("attention.self.key", "self_attn.w_k"),
         ("attention.self.value", "self_attn.w_v"), ("attention.output.dense", "self_attn.w_o"),
         ("attention.output.LayerNorm", "norm1"), ("intermediate.dense", "feed_forward.linear1"),
         ("output.dense", "feed_forward.linear2"), ("output.LayerNorm", "norm2")]


def my_map(i, pairs=PAIRS, ours_layer=None, bracket=True, biases=True, theirs_layer=None):
    ours_layer = i if ours_layer is None else ours_layer
    theirs_layer = i if theirs_layer is None else theirs_layer
    out = {}
    for theirs, ours in pairs:
        for p in ("weight", "bias") if biases else ("weight",):
            target = f"encoder.layers[{ours_layer}].{ours}.{p}" if bracket else f"encoder.layers.{ours_layer}.{ours}.{p}"
            out[f"encoder.layer.{theirs_layer}.{theirs}.{p}"] = target
    return out


def swap(a, b):
    d = dict(PAIRS)
    d[a], d[b] = d[b], d[a]
    return list(d.items())


def test_layer_map_accepts_the_reference_and_module_paths(capsys):
    assert check_layer_name_map(layer_name_map) is layer_name_map
    mine = lambda i: my_map(i)  # noqa: E731
    assert check_layer_name_map(mine) is mine
    assert "✅ layer_name_map is correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda i: my_map(i, swap("attention.self.query", "attention.self.key")), "query and key are swapped"),
    (lambda i: my_map(i, swap("attention.self.key", "attention.self.value")), "key and value are swapped"),
    (lambda i: my_map(i, swap("attention.output.LayerNorm", "output.LayerNorm")), "two LayerNorms are swapped"),
    (lambda i: my_map(i, swap("intermediate.dense", "output.dense")), "two feed-forward layers are swapped"),
    (lambda i: my_map(i, swap("attention.output.dense", "output.dense")), "output.dense layers are confused"),
    (lambda i: my_map(i, biases=False), "lacks the biases"),
    (lambda i: my_map(i, theirs_layer=0), "names of another layer"),
    (lambda i: my_map(i, ours_layer=0), "another of our layers"),
    (lambda i: my_map(i, ours_layer=i + 1), "another of our layers"),
    (lambda i: {k: v.replace("w_o", "out_proj") for k, v in my_map(i).items()}, "should map to"),
    (lambda i: {k.replace("LayerNorm", "layer_norm"): v for k, v in my_map(i).items()}, "lacks the checkpoint tensor"),
    (lambda i: list(my_map(i).items()), "should return a dict"),
    (lambda i: {}[i], "raised KeyError"),
    (lambda i: {v: k for k, v in layer_name_map(i).items()}, r"layer_name_map\(0\) is reversed: its keys are our names"),
    (lambda i: {v: k for k, v in my_map(i).items()}, "is reversed"),
])
def test_layer_map_mistakes_are_named(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_layer_name_map(wrong)


# --- WordPiece on one word ------------------------------------------------------------------------

def my_wordpiece(word, vocab):
    """Another correct implementation: shrink from the right, with a while loop."""
    if len(word) > 100:
        return ["[UNK]"]
    out, rest, first = [], word, True
    while rest:
        end = len(rest)
        while end > 0 and (rest[:end] if first else "##" + rest[:end]) not in vocab:
            end -= 1
        if end == 0:
            return ["[UNK]"]
        out.append(rest[:end] if first else "##" + rest[:end])
        rest, first = rest[end:], False
    return out


def greedy(word, vocab, **mistake):
    """A learner-style WordPiece with one mistake, from the check's own simulator."""
    return wordpiece_with_mistake(word, vocab, **mistake)


def test_wordpiece_accepts_the_reference_and_another_version(capsys):
    assert check_wordpiece_word(wordpiece_word) is wordpiece_word
    assert check_wordpiece_word(my_wordpiece) is my_wordpiece
    assert check_wordpiece_word(lambda w, v: tuple(wordpiece_word(w, v)))   # a tuple is fine too
    assert "✅ wordpiece_word is correct on all 10" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda w, v: greedy(w, v, rest=""), "looked up \\(and returned\\) with the '##' prefix"),
    (lambda w, v: greedy(w, v, first="##"), "first piece of a word has no '##'"),
    (lambda w, v: greedy(w, v, longest=False), "shortest matching piece"),
    (lambda w, v: greedy(w, v, partial_unk=True), "the whole word becomes"),
    (lambda w, v: greedy(w, v, max_chars=10**9), "longer than 100 characters"),
    (lambda w, v: greedy(w, v, max_chars=99), "exactly 100 characters is still split"),
    (lambda w, v: greedy(w, v, keep_prefix=False), "keep their '##'"),
    (lambda w, v: list(w), "returned"),
    (lambda w, v: " ".join(greedy(w, v)), "list of str"),
    (lambda w, v: v.pop("un"), r"raised KeyError|changed its argument `vocab` \(a dict\) in place"),
    (lambda w, v: greedy(w, v, first_falls_back=True), r"for 'on' .* it returned \['##on'\]: the first piece fell back"),
    (lambda w, v: greedy(w, v, from_the_right=True), r"for 'mnop' .* it returned \['m', '##nop'\]: it matches from the end of the word"),
])
def test_wordpiece_mistakes_are_named(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_wordpiece_word(wrong)


# --- mean pooling with a padding mask -------------------------------------------------------------

def my_pool(hidden, mask):
    m = mask.float()
    mean = torch.einsum("btd,bt->bd", hidden, m) / m.sum(1, keepdim=True)
    return mean / mean.norm(dim=1, keepdim=True)


def test_pooling_accepts_the_reference_and_another_version(capsys):
    assert check_pool_sentence_embeddings(pool_sentence_embeddings) is pool_sentence_embeddings
    assert check_pool_sentence_embeddings(my_pool) is my_pool
    sum_only = lambda h, m: F.normalize((h * m[..., None]).sum(1), dim=-1)  # noqa: E731 - the scale cancels
    assert check_pool_sentence_embeddings(sum_only) is sum_only
    assert "✅ pool_sentence_embeddings is correct on all 4" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda h, m: F.normalize(h.mean(1), dim=-1), "padding vectors are averaged too"),
    (lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True), "not normalised"),
    (lambda h, m: F.normalize(h[:, 0], dim=-1), r"\[CLS\] vector"),
    (lambda h, m: my_pool(h, ~m.bool()), "mask is inverted|contains NaN"),
    (lambda h, m: F.normalize((h * m[..., None]).sum(1), dim=0), "normalised over the batch"),
    (lambda h, m: F.normalize(h.masked_fill(~m.bool()[..., None], -1e9).amax(1), dim=-1), "max pooling"),
    (lambda h, m: (F.normalize(h, dim=-1) * m[..., None]).sum(1) / m.sum(1, keepdim=True), "normalises each token vector"),
    (lambda h, m: 2 * my_pool(h, m), "do not have length 1"),
    (lambda h, m: F.normalize(h * m[..., None], dim=-1), "pool over the tokens"),
    (lambda h, m: h.sum(), "should have shape"),
    (lambda h, m: h.mul_(m[..., None]).sum(1), r"changed its argument `hidden` in place on hidden \(3, 7, 5\)"),
])
def test_pooling_mistakes_are_named(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_pool_sentence_embeddings(wrong)
