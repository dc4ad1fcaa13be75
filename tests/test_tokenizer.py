"""Tokenizer: vocabularies, round trips, unknown and special tokens, padding."""
from __future__ import annotations

import pytest
import torch

from transformer_lib import Tokenizer
from transformer_lib.tokenizer import SPECIALS, split_words

CORPUS = ["The cat sat on the mat.", "The dog sat on the log!", "A cat and a dog."]


@pytest.fixture(params=["char", "word"])
def tok(request):
    return Tokenizer.from_corpus(CORPUS, level=request.param)


def test_special_ids_are_fixed(tok):
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.itos[:4] == list(SPECIALS) == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert all(tok.stoi[t] == i for i, t in enumerate(tok.itos))


@pytest.mark.parametrize("level, text, expected", [
    ("char", "the cat sat", "the cat sat"),
    ("word", "The cat sat on the mat.", "the cat sat on the mat ."),   # words are lower-cased
])
def test_round_trip(level, text, expected):
    tok = Tokenizer.from_corpus(CORPUS, level=level)
    ids = tok.encode(text)
    assert all(isinstance(i, int) for i in ids) and tok.unk_id not in ids
    assert tok.decode(ids) == expected
    assert tok.decode(torch.tensor(ids)) == expected


def test_every_corpus_text_round_trips_at_char_level():
    tok = Tokenizer.from_corpus(CORPUS, level="char")
    for text in CORPUS:
        assert tok.decode(tok.encode(text)) == text


def test_unknown_tokens_become_unk_and_are_kept_by_decode():
    chars = Tokenizer.from_corpus(CORPUS, level="char")
    ids = chars.encode("cat€z")
    assert ids[:3] == chars.encode("cat") and ids[3:] == [chars.unk_id, chars.unk_id]
    assert chars.decode(ids) == "cat<unk><unk>"
    words = Tokenizer.from_corpus(CORPUS, level="word")
    assert words.encode("the zebra sat") == [words.stoi["the"], words.unk_id, words.stoi["sat"]]
    assert words.decode(words.encode("the zebra")) == "the <unk>"


def test_bos_eos_and_decode_stops_at_eos(tok):
    ids = tok.encode("cat", add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids + tok.encode("dog")) == tok.decode(tok.encode("cat"))
    assert tok.decode(ids, skip_special=False).startswith("<bos>")


def test_encode_batch_pads_on_the_right():
    tok = Tokenizer.from_corpus(CORPUS, level="word")
    batch = tok.encode_batch(["the cat", "a dog sat on the mat"], add_eos=True)
    assert batch.dtype == torch.long and batch.shape == (2, 7)
    assert batch[0, 2].item() == tok.eos_id and batch[0, 3:].eq(tok.pad_id).all()
    assert batch[1].ne(tok.pad_id).all()
    assert tok.decode_batch(batch) == ["the cat", "a dog sat on the mat"]
    assert tok.encode_batch(["cat"], max_len=4).shape == (1, 4)
    with pytest.raises(ValueError, match="more than max_len=2"):
        tok.encode_batch(["the cat sat"], max_len=2)


def test_from_corpus_is_deterministic_and_orders_by_frequency():
    a = Tokenizer.from_corpus(CORPUS, level="word")
    b = Tokenizer.from_corpus(list(reversed(CORPUS)), level="word")
    assert a.itos == b.itos
    # 'the' (4 times) is the most frequent word; ties are alphabetical
    assert a.itos[4] == "the"
    counts = {t: sum(split_words(s).count(t) for s in CORPUS) for t in a.itos[4:]}
    freqs = [counts[t] for t in a.itos[4:]]
    assert freqs == sorted(freqs, reverse=True)
    tied = [t for t in a.itos[4:] if counts[t] == 1]
    assert tied == sorted(tied)


def test_min_freq_drops_rare_tokens():
    tok = Tokenizer.from_corpus(CORPUS, level="word", min_freq=2)
    assert "log" not in tok.stoi and "cat" in tok.stoi
    assert tok.encode("log") == [tok.unk_id]


def test_explicit_vocabulary_keeps_its_order():
    tok = Tokenizer(["b", "a", "<unk>", "c"], level="char")    # a special among the tokens is ignored
    assert tok.itos == ["<pad>", "<unk>", "<bos>", "<eos>", "b", "a", "c"]
    assert len(tok) == 7 and "size=7" in repr(tok)


@pytest.mark.parametrize("make, error, words", [
    (lambda: Tokenizer(["a"], level="byte"), ValueError, "level must be one of"),
    (lambda: Tokenizer("abc"), TypeError, "got one str"),
    (lambda: Tokenizer(["a", "b", "a"]), ValueError, r"unique.*'a'"),
    (lambda: Tokenizer(["a", 3]), TypeError, "non-empty str"),
    (lambda: Tokenizer.from_corpus("the cat"), TypeError, "single str"),
    (lambda: Tokenizer.from_corpus(CORPUS, level="bpe"), ValueError, "level must be one of"),
    (lambda: Tokenizer.from_corpus(CORPUS, min_freq=0), ValueError, "min_freq"),
    (lambda: Tokenizer.from_corpus(CORPUS).encode(42), TypeError, "text must be a str"),
    (lambda: Tokenizer.from_corpus(CORPUS).decode([0, 999]), ValueError, "outside the vocabulary"),
    (lambda: Tokenizer.from_corpus(CORPUS).decode(torch.zeros(2, 3, dtype=torch.long)), ValueError, "decode_batch"),
    (lambda: Tokenizer.from_corpus(CORPUS).decode_batch(torch.zeros(3, dtype=torch.long)), ValueError, r"\(B, T\)"),
    (lambda: Tokenizer.from_corpus(CORPUS).encode_batch("the cat"), TypeError, "list of texts"),
])
def test_bad_arguments_raise_clear_errors(make, error, words):
    with pytest.raises(error, match=words):
        make()


@pytest.mark.parametrize("ids, error, words", [
    ([4, 5.7], TypeError, "ids must be int token ids, got float 5.7 at position 1: token ids are whole numbers"),
    (torch.tensor([4.0, 5.0]), TypeError, r"dtype torch.float32; convert it with ids.long\(\)"),
    ([True], TypeError, "got bool True"),
    ("hello", TypeError, "list of int token ids or a 1-D tensor, got str"),
    ([-1], ValueError, "id -1 is outside the vocabulary"),
])
def test_decode_never_truncates_or_guesses_an_id(ids, error, words):
    tok = Tokenizer.from_corpus(CORPUS, level="char")
    with pytest.raises(error, match=words):
        tok.decode(ids)
    assert tok.decode(torch.tensor([4, 5], dtype=torch.uint8)) == tok.decode([4, 5])   # any integer dtype decodes
