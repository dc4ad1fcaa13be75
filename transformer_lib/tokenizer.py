"""Lesson 01: text -> tokens -> ids, and back.

A ``Tokenizer`` splits text into characters or words and maps each token to an integer id
through a fixed vocabulary. Four special tokens come first, so their ids are the same in
every vocabulary of the course:

    0 <pad>   fills short sequences up to the batch length
    1 <unk>   stands for any token the vocabulary does not know
    2 <bos>   "beginning of sequence", the decoder's first input
    3 <eos>   "end of sequence", tells generation to stop
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

import torch

from .validation import check_flag, check_int, check_positive_int, check_sequence, check_token_ids

__all__ = ["Tokenizer", "split_words", "PAD", "UNK", "BOS", "EOS", "SPECIALS"]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
LEVELS = ("char", "word")

_WORD_RE = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[str]:
    """Lower-case ``text`` and split it into words and single punctuation marks."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _WORD_RE.findall(text.lower())


class Tokenizer:
    """A character- or word-level tokenizer with a fixed vocabulary.

    Args:
        tokens: the vocabulary's ordinary tokens, in id order (the specials are put first).
        level: ``"char"`` (every character is a token) or ``"word"`` (lower-cased words and
            punctuation marks, see :func:`split_words`).

    Example:
        >>> tok = Tokenizer.from_corpus(["hello world"], level="char")
        >>> tok.decode(tok.encode("hello"))
        'hello'
    """

    def __init__(self, tokens: Sequence[str], level: str = "char"):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if isinstance(tokens, str):
            raise TypeError("tokens must be a sequence of token strings, got one str; "
                            "use Tokenizer.from_corpus([...]) to build a vocabulary from text")
        tokens = check_sequence("tokens", tokens, what="token strings")
        bad = [t for t in tokens if not isinstance(t, str) or not t]
        if bad:
            raise TypeError(f"every token must be a non-empty str, got {bad[0]!r} ({type(bad[0]).__name__})")
        ordinary = [t for t in tokens if t not in SPECIALS]
        if len(set(ordinary)) != len(ordinary):
            dupes = sorted(t for t, n in Counter(ordinary).items() if n > 1)
            raise ValueError(f"tokens must be unique, these repeat: {dupes[:10]}")
        self.level = level
        self.itos: list[str] = list(SPECIALS) + ordinary
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def from_corpus(cls, texts: Iterable[str], level: str = "char", min_freq: int = 1) -> "Tokenizer":
        """Build the vocabulary from ``texts``: every token seen ``min_freq`` times or more,
        most frequent first (ties in alphabetical order, so the result is deterministic)."""
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings, got a single str: wrap it in a list")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        check_positive_int("min_freq", min_freq)
        texts = check_sequence("texts", texts, str, "texts (str)")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(list(text) if level == "char" else split_words(text))
        kept = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        return cls(kept, level=level)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        ordinary = self.itos[len(SPECIALS):]
        shown = ", ".join(repr(t) for t in ordinary[:8]) + (", ..." if len(ordinary) > 8 else "")
        return f"Tokenizer(level={self.level!r}, size={len(self)}, tokens=[{shown}])"

    pad_id = property(lambda self: self.stoi[PAD])
    unk_id = property(lambda self: self.stoi[UNK])
    bos_id = property(lambda self: self.stoi[BOS])
    eos_id = property(lambda self: self.stoi[EOS])

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens (characters, or words and punctuation)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return list(text) if self.level == "char" else split_words(text)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of ``text``; unknown tokens become ``<unk>``."""
        check_flag("add_bos", add_bos)
        check_flag("add_eos", add_eos)
        ids = [self.stoi.get(t, self.unk_id) for t in self.tokenize(text)]
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Text of ``ids``. Stops at the first ``<eos>``; drops ``<pad>``/``<bos>`` when
        ``skip_special`` (``<unk>`` is kept so a reader sees what was lost). An id that is not
        an int of the vocabulary (``5.7``, ``999``) is an error."""
        check_flag("skip_special", skip_special)
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes one sequence (1-D), got shape {tuple(ids.shape)}; "
                                 "use decode_batch for a batch")
        out = []
        for i in check_token_ids(ids, len(self.itos)):
            tok = self.itos[i]
            if skip_special and tok == EOS:
                break
            if skip_special and tok in (PAD, BOS):
                continue
            out.append(tok)
        return ("" if self.level == "char" else " ").join(out)

    def encode_batch(self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = False,
                     max_len: int | None = None) -> torch.Tensor:
        """Encode several texts into one ``(B, T)`` LongTensor, padded with ``<pad>`` on the right.

        ``T`` is the longest encoding, or ``max_len`` when given (longer texts are an error,
        never silently cut).
        """
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of texts, got a single str")
        texts = check_sequence("texts", texts, str, "texts (str)")
        if max_len is not None:
            check_int("max_len", max_len, minimum=0)
        seqs = [self.encode(t, add_bos=add_bos, add_eos=add_eos) for t in texts]
        longest = max((len(s) for s in seqs), default=0)
        length = longest if max_len is None else max_len
        if longest > length:
            raise ValueError(f"a text encodes to {longest} tokens, more than max_len={max_len}")
        batch = torch.full((len(seqs), length), self.pad_id, dtype=torch.long)
        for row, s in enumerate(seqs):
            batch[row, :len(s)] = torch.tensor(s, dtype=torch.long)
        return batch

    def decode_batch(self, ids: torch.Tensor, skip_special: bool = True) -> list[str]:
        """Texts of a ``(B, T)`` batch of ids."""
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise ValueError("decode_batch takes a (B, T) tensor of ids")
        return [self.decode(row, skip_special=skip_special) for row in ids]
