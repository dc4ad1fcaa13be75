"""Lesson 13: BERT's WordPiece tokenizer, written from its vocabulary file.

Legend: B batch, T sequence length (after padding).

A word-level vocabulary (lesson 01) cannot hold every word; a character-level one makes
sequences long. WordPiece sits between: a fixed vocabulary of 30 522 whole words and word
*pieces*, where a piece that continues a word starts with ``##``. Tokenizing is two steps:

1. **Basic tokenization** (:meth:`WordPieceTokenizer.basic_tokenize`): remove control
   characters, turn every kind of white space into a space, put spaces around Chinese/Japanese
   characters, lower-case, strip accents (``"café" -> "cafe"``: Unicode NFD, then drop the
   combining marks, category ``Mn``), split on white space and around every punctuation mark.
2. **WordPiece** (:func:`wordpiece_word`): split each word greedily, longest match first::

       "unaffable" -> "una" + "##ffa" + "##ble"

   A word that cannot be split into vocabulary pieces, or is longer than 100 characters,
   becomes ``[UNK]`` as a whole.

Then ``[CLS] pieces [SEP]``, truncated to the model's limit (256 tokens for all-MiniLM-L6-v2),
padded with ``[PAD]`` (id 0) to the longest sequence of the batch. The special tokens written
literally in a text (``"[MASK]"``) stay whole, as in the reference tokenizer.

This follows Hugging Face's fast ``BertTokenizer`` (the ``tokenizers`` library, which
sentence-transformers uses); ``tests/test_wordpiece.py`` proves the ids equal on a varied set
of sentences stored by ``tools/make_reference_embeddings.py``.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch

from .validation import check_flag, check_int, check_path, check_sequence, check_token_ids, is_int

__all__ = ["WordPieceTokenizer", "wordpiece_word", "basic_tokenize", "strip_accents", "is_punctuation",
           "load_vocab", "text_list", "MAX_CHARS_PER_WORD"]

#: Words longer than this many characters become ``[UNK]`` without being split (as in BERT).
MAX_CHARS_PER_WORD = 100


def load_vocab(path: str | Path) -> dict[str, int]:
    """``{token: id}`` from a ``vocab.txt`` with one token per line; the id is the line number."""
    path = check_path("path", path)
    vocab: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        try:
            lines = list(f)
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not a vocab.txt (UTF-8 text, one token per line): {e}") from None
    for i, line in enumerate(lines):
        token = line.rstrip("\n")
        if token in vocab:
            raise ValueError(f"{path}: token {token!r} appears twice (lines {vocab[token] + 1} and {i + 1})")
        vocab[token] = i
    if not vocab:
        raise ValueError(f"{path} holds no tokens")
    return vocab


# --- step 1: basic tokenization -------------------------------------------------------------

def _is_whitespace(ch: str) -> bool:
    # as Rust's char::is_whitespace (the fast tokenizer): tab, newline, ..., space, NBSP, ...
    return ch.isspace() and ch not in "\x1c\x1d\x1e\x1f"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch).startswith("C")                 # Cc, Cf, Cn, Co, Cs


def is_punctuation(ch: str) -> bool:
    """Every ASCII non-letter, non-digit printable character (``$``, ``+``, ``^``...) and every
    Unicode punctuation mark (categories ``P*``): BERT splits words around each of them."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_chinese_char(cp: int) -> bool:
    """CJK Unified Ideographs (the blocks BERT treats as one word per character)."""
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def strip_accents(text: str) -> str:
    """``"Café Zürich" -> "Cafe Zurich"``: decompose (NFD) and drop the combining marks (``Mn``)."""
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")


def _normalize(text: str, lower_case: bool = True) -> str:
    """Clean control characters, space out Chinese characters, strip accents, lower-case."""
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            out.append(" ")
        elif _is_chinese_char(cp):
            out.append(f" {ch} ")
        else:
            out.append(ch)
    text = "".join(out)
    if lower_case:
        text = "".join(ch.lower() for ch in strip_accents(text))     # char by char: no Greek final-sigma rule
    return text


def basic_tokenize(text: str, lower_case: bool = True) -> list[str]:
    """Split ``text`` into words and single punctuation marks, normalised as BERT does.

    Example:
        >>> basic_tokenize("Héllo,  WORLD!")
        ['hello', ',', 'world', '!']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_flag("lower_case", lower_case)
    words = []
    for chunk in _normalize(text, lower_case).split():
        word = []
        for ch in chunk:
            if is_punctuation(ch):
                if word:
                    words.append("".join(word))
                    word = []
                words.append(ch)
            else:
                word.append(ch)
        if word:
            words.append("".join(word))
    return words


# --- step 2: WordPiece -----------------------------------------------------------------------

def text_list(texts: str | Sequence[str], name: str = "texts") -> list[str]:
    """``texts`` as a non-empty list of str (one str becomes a list of one); else a clear error."""
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{name} must be a str or a list of str, got {type(texts).__name__}")
    if not texts:
        raise ValueError(f"{name} is empty: give at least one text")
    return list(texts)


def wordpiece_word(word: str, vocab: Mapping[str, int] | set[str], unk_token: str = "[UNK]",
                   prefix: str = "##", max_chars: int = MAX_CHARS_PER_WORD) -> list[str]:
    """Split one (already normalised) word into vocabulary pieces, greedily, longest match first.

    From the start of the word, take the longest prefix that is in the vocabulary; then from
    where it ended, the longest piece that is in the vocabulary *with* ``##`` in front; and so
    on to the end of the word.

    Args:
        word: one word from :func:`basic_tokenize` (no spaces).
        vocab: the vocabulary (a ``{token: id}`` dict or a set of tokens).
        unk_token: what the whole word becomes when some part of it matches no piece, or when it
            is longer than ``max_chars`` characters.
        prefix: marks a piece that continues a word.

    Returns:
        The pieces, e.g. ``["una", "##ffa", "##ble"]``, or ``[unk_token]``.
    """
    if not isinstance(word, str):
        raise TypeError(f"word must be a str, got {type(word).__name__}")
    if not isinstance(vocab, (Mapping, set, frozenset)):
        raise TypeError(f"vocab must be a {{token: id}} dict or a set of tokens, got {type(vocab).__name__}")
    if len(word) > max_chars:
        return [unk_token]
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):                      # longest candidate first
            piece = word[start:end] if start == 0 else prefix + word[start:end]
            if piece in vocab:
                break
        else:
            return [unk_token]                                      # nothing matched: the whole word is unknown
        pieces.append(piece)
        start = end
    return pieces


class WordPieceTokenizer:
    """BERT's uncased WordPiece tokenizer: text -> ``[CLS] pieces [SEP]`` ids, batched and padded.

    Args:
        vocab: ``{token: id}`` (see :func:`load_vocab`) or the tokens in id order.
        max_len: the model's length limit in tokens, ``[CLS]`` and ``[SEP]`` included; longer
            inputs are truncated (256 for all-MiniLM-L6-v2).
        lower_case: lower-case and strip accents (the "uncased" models).

    Example:
        >>> tok = WordPieceTokenizer.from_file(vocab_path)
        >>> tok.tokenize("Transformers are unaffable!")
        ['transformers', 'are', 'una', '##ffa', '##ble', '!']
        >>> batch = tok(["a short one", "and a longer sentence"])   # input_ids (2, 6) ...
    """

    special_tokens = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

    def __init__(self, vocab: Mapping[str, int] | Sequence[str], max_len: int = 256, lower_case: bool = True):
        if isinstance(vocab, (str, bytes)):
            raise TypeError("vocab must be a {token: id} dict or a list of tokens; "
                            "use WordPieceTokenizer.from_file(path) to read a vocab.txt")
        if not isinstance(vocab, Mapping):
            vocab = {t: i for i, t in enumerate(check_sequence("vocab", vocab, str, "tokens (str)"))}
        missing = [t for t in self.special_tokens if t not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the special tokens {missing}")
        check_int("max_len", max_len, minimum=2, hint="room for [CLS] and [SEP]")
        check_flag("lower_case", lower_case)
        self.vocab: dict[str, int] = dict(vocab)
        self.id_to_token: dict[int, str] = {i: t for t, i in self.vocab.items()}
        bad = [i for i in self.id_to_token if not is_int(i) or i < 0]
        if bad:
            raise ValueError(f"vocabulary ids must be ints >= 0, got {bad[0]!r}")
        self._id_bound = max(self.id_to_token) + 1
        self.max_len = max_len
        self.lower_case = bool(lower_case)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (self.vocab[t] for t in self.special_tokens)
        self._special_re = re.compile("(" + "|".join(re.escape(t) for t in self.special_tokens) + ")")
        self._word = functools.lru_cache(maxsize=65536)(self._wordpiece_uncached)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs) -> "WordPieceTokenizer":
        """Read a ``vocab.txt`` (one token per line, id = line number)."""
        return cls(load_vocab(path), **kwargs)

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"WordPieceTokenizer(vocab_size={len(self)}, max_len={self.max_len}, lower_case={self.lower_case})"

    def _wordpiece_uncached(self, word: str) -> tuple[str, ...]:
        return tuple(wordpiece_word(word, self.vocab))

    def basic_tokenize(self, text: str) -> list[str]:
        """Step 1 only: words and punctuation marks (see :func:`basic_tokenize`)."""
        return basic_tokenize(text, self.lower_case)

    def tokenize(self, text: str) -> list[str]:
        """Text -> WordPiece tokens, without ``[CLS]``/``[SEP]`` and without truncation."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        tokens: list[str] = []
        for part in self._special_re.split(text):                   # "[MASK]" written in the text stays whole
            if part in self.special_tokens:
                tokens.append(part)
            elif part:
                for word in basic_tokenize(part, self.lower_case):
                    tokens.extend(self._word(word))
        return tokens

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """``[CLS] tokens [SEP]`` as ids, truncated to ``max_len`` (default: the model's limit)."""
        limit = self.max_len if max_len is None else check_int("max_len", max_len, minimum=2,
                                                                 hint="room for [CLS] and [SEP]")
        ids = [self.vocab[t] for t in self.tokenize(text)][: limit - 2]
        return [self.cls_id] + ids + [self.sep_id]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids (a list or a 1-D tensor) -> their tokens."""
        ids = check_token_ids(ids, self._id_bound)
        missing = [i for i in ids if i not in self.id_to_token]
        if missing:
            raise ValueError(f"id {missing[0]} is not in the vocabulary (it has no token with that id)")
        return [self.id_to_token[i] for i in ids]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Ids -> text, gluing ``##`` pieces to the piece before (lower-cased, accents gone)."""
        check_flag("skip_special_tokens", skip_special_tokens)
        words: list[str] = []
        for token in self.convert_ids_to_tokens(ids):
            if skip_special_tokens and token in self.special_tokens:
                continue
            if token.startswith("##") and words:
                words[-1] += token[2:]
            else:
                words.append(token)
        return " ".join(words)

    def __call__(self, texts: str | Sequence[str], max_len: int | None = None) -> dict[str, torch.Tensor]:
        """Encode a batch and pad it to its longest sequence.

        Args:
            texts: one text or a list of texts.
            max_len: truncation limit (default: the model's).

        Returns:
            ``{"input_ids": (B, T) int64, "attention_mask": (B, T) int64 with 1 at real tokens
            and 0 at padding, "token_type_ids": (B, T) zeros}`` (the names and conventions of
            Hugging Face tokenizers; ``transformer_lib`` turns the attention mask into its bool
            True = may attend).
        """
        texts = text_list(texts)
        encoded = [self.encode(t, max_len) for t in texts]
        T = max(len(e) for e in encoded)
        input_ids = torch.full((len(encoded), T), self.pad_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros(len(encoded), T, dtype=torch.long)         # (B, T)
        for b, e in enumerate(encoded):
            input_ids[b, : len(e)] = torch.tensor(e)
            attention_mask[b, : len(e)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "token_type_ids": torch.zeros_like(input_ids)}
