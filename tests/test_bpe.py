"""Byte-pair encoding: pre-tokenization, the merge step, fast training equal to repeated steps,
encoding and decoding."""
from __future__ import annotations

import random

import pytest

from transformer_lib.bpe import (SPACE, BPETokenizer, WordTokenizer, bpe_merge_step, count_pairs, merge_word,
                                 normalize_text, pretokenize, train_bpe, word_counts)


def test_pretokenize_marks_spaces_and_splits_punctuation():
    assert pretokenize("I'm cold.") == ["▁I'm", "▁cold", "."]
    assert pretokenize("Je suis prêt\u00a0!") == ["▁Je", "▁suis", "▁prêt", "▁!"]
    assert pretokenize("  Es-tu   là ?") == ["▁Es", "-", "tu", "▁là", "▁?"]
    assert pretokenize("") == []


@pytest.mark.parametrize("text", ["I’m cold.", "Je suis prêt\u202f!", "  a  b ", "l'école, aujourd'hui.", "19 ans"])
def test_pretokenize_is_reversible_up_to_normalisation(text):
    assert "".join(pretokenize(text)).replace(SPACE, " ").strip() == normalize_text(text)


def test_normalize_text():
    assert normalize_text(" Il est\u00a0prêt\u202f! ") == "Il est prêt !"
    assert normalize_text("I’m") == "I'm"
    with pytest.raises(TypeError, match="must be a str"):
        normalize_text(None)


def test_word_counts_and_count_pairs():
    words = word_counts(["low low", "lower"])
    assert words == {("▁", "l", "o", "w"): 2, ("▁", "l", "o", "w", "e", "r"): 1}
    pairs = count_pairs({("a", "a", "a"): 3, ("▁", "a"): 1})
    assert pairs == {("a", "a"): 6, ("▁", "a"): 1}          # overlapping pairs count at every position
    with pytest.raises(TypeError, match="single str"):
        word_counts("low lower")


@pytest.mark.parametrize("word, pair, expected", [
    (("a", "a", "a"), ("a", "a"), ("aa", "a")),
    (("a", "a", "a", "a"), ("a", "a"), ("aa", "aa")),
    (("a", "b", "x", "a", "b"), ("a", "b"), ("ab", "x", "ab")),
    (("x", "ab", "c"), ("b", "c"), ("x", "ab", "c")),        # never inside a symbol
    (("b",), ("a", "b"), ("b",)),
    ((), ("a", "b"), ()),
])
def test_merge_word(word, pair, expected):
    assert merge_word(word, pair) == expected


def test_merge_step_on_sennrich_corpus():
    words = {("▁", "l", "o", "w"): 5, ("▁", "l", "o", "w", "e", "r"): 2,
             ("▁", "n", "e", "w", "e", "s", "t"): 6, ("▁", "w", "i", "d", "e", "s", "t"): 3}
    before = dict(words)
    pair, merged = bpe_merge_step(words)
    assert words == before                                       # the input is not changed
    assert pair == ("e", "s")                                    # 9 times, tied with ("s", "t"): sorts first
    assert merged[("▁", "n", "e", "w", "es", "t")] == 6 and len(merged) == 4
    with pytest.raises(ValueError, match="no pair left"):
        bpe_merge_step({("a",): 3})


def random_corpus(seed, n_words=60):
    rng = random.Random(seed)
    words = {}
    for _ in range(n_words):
        word = ("▁",) + tuple(rng.choice("aabbcdé") for _ in range(rng.randint(1, 7)))
        words[word] = words.get(word, 0) + rng.randint(1, 5)
    return words


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_training_equals_repeated_merge_steps(seed):
    words = random_corpus(seed)
    merges = train_bpe(words, 40, min_count=1)
    slow, current = [], dict(words)
    for _ in range(len(merges)):
        pair, current = bpe_merge_step(current)
        slow.append(pair)
    assert merges == slow and len(merges) > 10


def test_training_stops_at_min_count_and_validates():
    words = {("▁", "a", "b"): 3, ("▁", "c", "d"): 1}
    assert train_bpe(words, 10, min_count=2) == [("a", "b"), ("▁", "ab")]
    with pytest.raises(ValueError, match="positive int"):
        train_bpe(words, 0)


def test_tokenizer_round_trip_and_vocabulary():
    texts = ["I'm cold.", "He's tired.", "I'm tired.", "Je suis fatigué !", "Il est fatigué."]
    tok = BPETokenizer.train(texts * 3, num_merges=25)
    assert tok.itos[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert len(tok) <= 4 + len(tok.alphabet) + len(tok.merges)
    for text in texts + ["Il est cold !"]:
        assert tok.decode(tok.encode(text, add_bos=True, add_eos=True)) == normalize_text(text)
    pieces = tok.tokenize("I'm tired.")
    assert "".join(pieces) == "▁I'm▁tired." and len(pieces) < len("I'm tired.")
    assert tok.encode("Z") == [tok.stoi[SPACE], tok.unk_id]      # an unseen character
    batch = tok.encode_batch(["I'm cold.", "He's tired."], add_eos=True)
    assert tok.decode_batch(batch) == ["I'm cold.", "He's tired."]


def test_encoding_applies_merges_in_learned_order():
    tok = BPETokenizer([("b", "c"), ("a", "b")], alphabet="▁abc")
    assert tok.encode_word("▁abc") == ("▁", "a", "bc")           # ("b", "c") was learned first
    tok = BPETokenizer([("a", "b"), ("b", "c")], alphabet="▁abc")
    assert tok.encode_word("▁abc") == ("▁", "ab", "c")


def test_word_tokenizer_uses_the_same_words_and_unknowns():
    tok = WordTokenizer.from_texts(["I'm cold.", "I'm cold.", "I'm hot."], min_count=2)
    assert tok.tokenize("I'm hot.") == ["▁I'm", "▁hot", "."]
    assert tok.decode(tok.encode("I'm hot.")) == "I'm <unk>."
    assert tok.decode(tok.encode("I'm cold.")) == "I'm cold."
