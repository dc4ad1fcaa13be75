"""WordPiece: the same ids as the reference tokenizer, and the pieces it is built from."""
from __future__ import annotations

import pytest
import torch

from transformer_lib.pretrained import MAX_SEQ_LENGTH, load_reference_ids, load_tokenizer
from transformer_lib.wordpiece import (MAX_CHARS_PER_WORD, WordPieceTokenizer, basic_tokenize, is_punctuation,
                                       load_vocab, strip_accents, wordpiece_word)

REFERENCE = load_reference_ids()


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_the_reference_set_is_varied():
    texts = [c["text"] for c in REFERENCE]
    assert len(texts) >= 30
    assert "" in texts                                                      # the empty string
    assert any("  " in t for t in texts)                                    # several spaces
    assert any(len(c["ids"]) == MAX_SEQ_LENGTH for c in REFERENCE)          # truncated long input
    assert any(100 in c["ids"] for c in REFERENCE)                          # [UNK]: emoji, long words
    assert any(ch in "".join(texts) for ch in "éüñ")                        # accents
    assert any("🍕" in t for t in texts) and any("北京" in t for t in texts)


@pytest.mark.parametrize("case", REFERENCE, ids=[f"{i:02d}:{c['text'][:24]!r}" for i, c in enumerate(REFERENCE)])
def test_same_ids_as_the_reference_tokenizer(tok, case):
    assert tok.encode(case["text"]) == case["ids"]


def test_batch_padding_mask_and_token_types(tok):
    texts = [c["text"] for c in REFERENCE]
    batch = tok(texts)
    T = max(len(c["ids"]) for c in REFERENCE)
    assert batch["input_ids"].shape == (len(texts), T) == batch["attention_mask"].shape
    assert batch["input_ids"].dtype == torch.long and batch["attention_mask"].dtype == torch.long
    assert torch.equal(batch["token_type_ids"], torch.zeros_like(batch["input_ids"]))
    for b, case in enumerate(REFERENCE):
        n = len(case["ids"])
        assert batch["input_ids"][b, :n].tolist() == case["ids"]
        assert batch["input_ids"][b, n:].eq(tok.pad_id).all()
        assert batch["attention_mask"][b].tolist() == [1] * n + [0] * (T - n)


def test_truncation_keeps_cls_and_sep(tok):
    ids = tok.encode("word " * 1000)
    assert len(ids) == MAX_SEQ_LENGTH == tok.max_len
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert tok.encode("word " * 1000, max_len=7) == [tok.cls_id] + [tok.vocab["word"]] * 5 + [tok.sep_id]
    assert tok.encode("") == [tok.cls_id, tok.sep_id]


def test_tokens_of_a_sentence(tok):
    assert tok.tokenize("Transformers are unaffable!") == ["transformers", "are", "una", "##ffa", "##ble", "!"]
    assert tok.tokenize("The [MASK] sat.") == ["the", "[MASK]", "sat", "."]
    assert tok.tokenize("I ❤ 🍕") == ["i", "[UNK]", "[UNK]"] or tok.tokenize("I ❤ 🍕")[-1] == "[UNK]"
    assert tok.decode(tok.encode("Unaffable café!")) == "unaffable cafe !"


def test_basic_tokenization():
    assert basic_tokenize("Héllo,  WORLD!\tDon't") == ["hello", ",", "world", "!", "don", "'", "t"]
    assert basic_tokenize("我爱you") == ["我", "爱", "you"]                   # one word per Chinese character
    assert basic_tokenize("a\x00b\x07c \u00a0 d") == ["abc", "d"]            # control characters dropped
    assert basic_tokenize("") == [] and basic_tokenize("   \n ") == []
    assert basic_tokenize("MiXeD", lower_case=False) == ["MiXeD"]
    assert strip_accents("Café Zürich Ångström") == "Cafe Zurich Angstrom"
    assert all(is_punctuation(c) for c in "$+^`~.,;:!?-—…“«¿")
    assert not any(is_punctuation(c) for c in "aZ09 é")


def test_wordpiece_greedy_longest_match_first():
    vocab = {"un", "una", "u", "##aff", "##a", "##ffa", "##ble", "##b", "##le", "x"}
    assert wordpiece_word("unaffable", vocab) == ["una", "##ffa", "##ble"]
    assert wordpiece_word("unx", vocab) == ["[UNK]"]                         # no "##x": the whole word is unknown
    assert wordpiece_word("zzz", vocab) == ["[UNK]"]
    assert wordpiece_word("x", vocab) == ["x"]
    long_vocab = {"a", "##a"}
    assert wordpiece_word("a" * MAX_CHARS_PER_WORD, long_vocab) == ["a"] + ["##a"] * (MAX_CHARS_PER_WORD - 1)
    assert wordpiece_word("a" * (MAX_CHARS_PER_WORD + 1), long_vocab) == ["[UNK]"]


def test_vocabulary_file_and_bad_input(tmp_path):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(specials + ["hello", "##s"]) + "\n", encoding="utf-8")
    tok = WordPieceTokenizer.from_file(path, max_len=5)
    assert len(tok) == 7 and tok.vocab["hello"] == 5
    assert tok.encode("hellos hellos hello") == [2, 5, 6, 5, 3]
    assert tok.tokenize("bye") == ["[UNK]"]
    path.write_text("a\nb\na\n", encoding="utf-8")
    with pytest.raises(ValueError, match="'a' appears twice"):
        load_vocab(path)
    with pytest.raises(ValueError, match="lacks the special tokens"):
        WordPieceTokenizer(["a", "b"])
    with pytest.raises(TypeError, match="from_file"):
        WordPieceTokenizer("vocab.txt")
    with pytest.raises(ValueError, match="max_len"):
        WordPieceTokenizer(specials, max_len=1)
    with pytest.raises(TypeError, match="must be a str"):
        tok.tokenize(3)
    with pytest.raises(TypeError, match="list of str"):
        tok(["a", 3])
    with pytest.raises(ValueError, match="empty"):
        tok([])


def test_decoding_an_unknown_id_is_a_clear_error(tok):
    words = [r"id 999999 is outside the vocabulary \(size 30522: ids 0\.\.30521\)"]
    for fn in (tok.decode, tok.convert_ids_to_tokens):
        with pytest.raises(ValueError, match=words[0]):
            fn([101, 999999])
        with pytest.raises(TypeError, match="got float 2.5"):
            fn([101, 2.5])
    small = WordPieceTokenizer(list(WordPieceTokenizer.special_tokens) + ["cat"])
    with pytest.raises(ValueError, match=r"id 999 is outside the vocabulary \(size 6"):   # a KeyError before
        small.decode([999])
    assert small.decode([5]) == "cat"
