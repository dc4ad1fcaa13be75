"""Lesson 09: byte-pair encoding (BPE), a subword vocabulary learned from text.

Legend: V vocabulary size, L sequence length (in tokens).

A word-level vocabulary (lesson 01) cannot write a word it never saw: ``<unk>``. A character-level
one can write anything, but its sequences are long. BPE (Sennrich, Haddow and Birch, 2016, after
Gage's 1994 compression algorithm) learns a vocabulary in between: frequent words become one
token, rare words are spelled from frequent pieces (``"▁gagnant"`` -> ``"▁gagn" + "ant"``).

1. **Pre-tokenization** (:func:`pretokenize`): white space is normalised, the text is cut into
   words and punctuation marks, and a word that follows a space (or starts the text) begins
   with ``"▁"`` (U+2581), which stands for that space, as in SentencePiece. So
   ``"I'm cold."`` -> ``["▁I'm", "▁cold", "."]``, and decoding is reversible: join the tokens
   and turn ``"▁"`` back into spaces.
2. **Training** (:func:`train_bpe`): every word starts as a tuple of characters; the corpus is
   ``{word: count}``. One **merge step** (:func:`bpe_merge_step`) counts every pair of
   adjacent symbols *inside* each word, weighted by the word's count (:func:`count_pairs`),
   takes the most frequent pair (ties: the pair that sorts first) and merges it everywhere,
   left to right (:func:`merge_word`). Repeat ``num_merges`` times; the merges, in order,
   are the tokenizer.
3. **Encoding** a new text (:meth:`BPETokenizer.tokenize`): cut it into words, start each from
   characters and apply the learned merges in the order they were learned. A character never
   seen in training becomes ``<unk>``; nothing else can be unknown.
"""
from __future__ import annotations

import heapq
import re
from collections import Counter
from typing import Iterable, Mapping, Sequence

from .tokenizer import UNK, Tokenizer
from .validation import check_positive_int

__all__ = ["SPACE", "normalize_text", "pretokenize", "word_counts", "count_pairs", "merge_word",
           "bpe_merge_step", "train_bpe", "BPETokenizer", "WordTokenizer"]

#: Stands for the space before a word (SentencePiece's meta symbol, U+2581).
SPACE = "\u2581"

_WORD = re.compile(r" ?\w+(?:'\w+)*| ?[^\w\s]")       # a word (apostrophes inside) or one punctuation mark


def normalize_text(text: str) -> str:
    """One plain space between words (no-break and narrow spaces too), typographic apostrophes
    (’ ‘) as ``'``, the meta symbol ``▁`` (reserved) as a space, no space at either end."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace(SPACE, " ")
    return " ".join(text.split())


def pretokenize(text: str) -> list[str]:
    """Cut ``text`` into words and punctuation marks; a word after a space starts with ``▁``.

    ``"Je suis prêt !"`` -> ``["▁Je", "▁suis", "▁prêt", "▁!"]``; ``"prêt!"`` -> ``["▁prêt", "!"]``.
    ``"".join(words).replace("▁", " ").strip()`` gives back ``normalize_text(text)``.
    """
    return [w.replace(" ", SPACE) for w in _WORD.findall(" " + normalize_text(text))]


def word_counts(texts: Iterable[str]) -> dict[tuple[str, ...], int]:
    """The corpus as BPE starts from it: ``{word as a tuple of characters: count}``, words in
    order of first appearance."""
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, got a single str: wrap it in a list")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(pretokenize(text))
    return {tuple(word): n for word, n in counts.items()}


def count_pairs(words: Mapping[tuple[str, ...], int]) -> Counter:
    """``{(a, b): count}`` of adjacent symbols inside each word, weighted by the word's count.

    Pairs are counted at every position, overlapping ones too: ``("a", "a", "a")`` holds the
    pair ``("a", "a")`` twice (Sennrich et al.'s convention). Pairs never span two words.
    """
    pairs: Counter = Counter()
    for word, n in words.items():
        for pair in zip(word, word[1:]):
            pairs[pair] += n
    return pairs


def merge_word(word: Sequence[str], pair: tuple[str, str]) -> tuple[str, ...]:
    """``word`` with every occurrence of ``pair`` replaced by one symbol, scanning left to right.

    ``merge_word(("a", "a", "a"), ("a", "a"))`` -> ``("aa", "a")``: after a merge the scan goes
    on *after* the merged pair, so occurrences never overlap.
    """
    first, second = pair
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
            out.append(first + second)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _best(pairs: Mapping[tuple[str, str], int]) -> tuple[str, str]:
    """The most frequent pair; among equally frequent ones, the one that sorts first."""
    return min(pairs, key=lambda p: (-pairs[p], p))


def bpe_merge_step(words: Mapping[tuple[str, ...], int]) -> tuple[tuple[str, str], dict[tuple[str, ...], int]]:
    """One step of BPE training.

    Args:
        words: ``{word as a tuple of symbols: count}``.

    Returns:
        ``(pair, merged)``: the most frequent pair of adjacent symbols inside words (counted
        with the words' counts; ties go to the pair that sorts first) and a new dict in which
        every occurrence of that pair, in every word, is one symbol ``a + b`` (left to right,
        non-overlapping). The counts and the order of the words are kept; ``words`` is not changed.
    """
    pairs = count_pairs(words)
    if not pairs:
        raise ValueError("every word is a single symbol: there is no pair left to merge")
    pair = _best(pairs)
    return pair, {merge_word(word, pair): n for word, n in words.items()}


def train_bpe(words: Mapping[tuple[str, ...], int], num_merges: int, min_count: int = 2) -> list[tuple[str, str]]:
    """Learn up to ``num_merges`` merges from ``{word: count}`` (see :func:`word_counts`).

    The same merges as calling :func:`bpe_merge_step` ``num_merges`` times, but fast: the pair
    counts are kept up to date, and each step re-counts only the words that contain the merged
    pair (``tests/test_bpe.py`` proves the two equal). Stops early when the most frequent pair
    occurs fewer than ``min_count`` times.
    """
    check_positive_int("num_merges", num_merges)
    check_positive_int("min_count", min_count)
    corpus = [list(word) for word in words]
    counts = list(words.values())
    pairs: Counter = Counter()
    where: dict[tuple[str, str], set[int]] = {}           # pair -> indices of the words holding it
    for i, word in enumerate(corpus):
        for pair in zip(word, word[1:]):
            pairs[pair] += counts[i]
            where.setdefault(pair, set()).add(i)
    heap = [(-n, pair) for pair, n in pairs.items()]       # max count first, then the smallest pair
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while len(merges) < num_merges and heap:
        negative, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -negative:                 # stale entry: the count has changed since
            continue
        if -negative < min_count:
            break
        merges.append(pair)
        changed = set()
        for i in sorted(where.pop(pair, ())):
            old = corpus[i]
            new = list(merge_word(old, pair))
            for p in zip(old, old[1:]):
                pairs[p] -= counts[i]
                changed.add(p)
            for p in zip(new, new[1:]):
                pairs[p] += counts[i]
                where.setdefault(p, set()).add(i)
                changed.add(p)
            corpus[i] = new
        for p in changed:
            if pairs[p] > 0:
                heapq.heappush(heap, (-pairs[p], p))
            else:
                pairs.pop(p, None)
    return merges


class _PieceTokenizer(Tokenizer):
    """A :class:`Tokenizer` over pre-tokenized pieces: decoding joins them and reads ``▁`` as a space."""

    def decode(self, ids, skip_special: bool = True) -> str:
        """Text of ``ids``: the pieces joined, ``▁`` read as a space (stops at ``<eos>``)."""
        text = super().decode(ids, skip_special=skip_special)                  # level "char": joined as is
        return text.replace(SPACE, " ").strip()


class WordTokenizer(_PieceTokenizer):
    """A word-level vocabulary over the same words as BPE (:func:`pretokenize`): every word seen
    ``min_count`` times or more is one token, any other word is ``<unk>``.

    Example:
        >>> tok = WordTokenizer.from_texts(["I'm cold.", "I'm cold.", "I'm hot."], min_count=2)
        >>> tok.decode(tok.encode("I'm hot."))
        "I'm <unk>."
    """

    def __init__(self, words: Sequence[str]):
        super().__init__(list(words), level="char")

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int = 2) -> "WordTokenizer":
        """Every word of ``texts`` seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings, got a single str: wrap it in a list")
        check_positive_int("min_count", min_count)
        counts = Counter(w for text in texts for w in pretokenize(text))
        return cls(sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)))

    def __repr__(self) -> str:
        shown = ", ".join(repr(t) for t in self.itos[4:10])
        return f"WordTokenizer(size={len(self)}, tokens=[{shown}, ...])"

    def tokenize(self, text: str) -> list[str]:
        """``text`` -> its words, e.g. ``"I'm cold."`` -> ``["▁I'm", "▁cold", "."]``."""
        return pretokenize(text)

    def decode(self, ids, skip_special: bool = True) -> str:
        """Text of ``ids``; an unknown word is shown as ``<unk>`` with a space before it."""
        text = Tokenizer.decode(self, ids, skip_special=skip_special)
        return " ".join(text.replace(UNK, SPACE + UNK).replace(SPACE, " ").split())


class BPETokenizer(_PieceTokenizer):
    """A byte-pair-encoding tokenizer: the learned merges and the vocabulary they make.

    Args:
        merges: the merges in the order they were learned (see :func:`train_bpe`).
        alphabet: the characters of the training text (every symbol starts as one of them).

    The vocabulary is the four special tokens, the alphabet and the symbol each merge makes
    (``4 + len(alphabet) + len(merges)`` tokens, fewer in the rare case that two merges make
    the same string). It has :class:`Tokenizer`'s
    interface (``encode``, ``decode``, ``encode_batch``, ``decode_batch``, ``pad_id``...).

    Example:
        >>> tok = BPETokenizer.train(["low lower lowest", "newer wider"], num_merges=10)
        >>> tok.decode(tok.encode("lowest"))
        'lowest'
    """

    def __init__(self, merges: Sequence[tuple[str, str]], alphabet: Iterable[str]):
        self.merges = [tuple(m) for m in merges]
        self.alphabet = sorted(set(alphabet))
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        # two merges can make the same string (("a", "bc") and ("ab", "c")): one token for both;
        # level "char": pieces are joined without spaces when decoding, as characters are
        super().__init__(list(dict.fromkeys(self.alphabet + [a + b for a, b in self.merges])), level="char")
        self._cache: dict[str, tuple[str, ...]] = {}

    @classmethod
    def train(cls, texts: Iterable[str], num_merges: int, min_count: int = 2) -> "BPETokenizer":
        """Learn a tokenizer from ``texts`` (see :func:`train_bpe`)."""
        words = word_counts(texts)
        alphabet = {ch for word in words for ch in word}
        return cls(train_bpe(words, num_merges, min_count=min_count), alphabet)

    def __repr__(self) -> str:
        shown = ", ".join(repr(t) for t in self.itos[-4:])
        return (f"BPETokenizer(size={len(self)}, alphabet={len(self.alphabet)}, merges={len(self.merges)}, "
                f"last tokens=[{shown}])")

    def encode_word(self, word: str) -> tuple[str, ...]:
        """The pieces of one pre-tokenized word: its characters, merged in the learned order."""
        if word not in self._cache:
            symbols = tuple(word)
            while len(symbols) > 1:
                ranked = [(self.ranks[p], p) for p in zip(symbols, symbols[1:]) if p in self.ranks]
                if not ranked:
                    break
                symbols = merge_word(symbols, min(ranked)[1])       # the earliest learned merge first
            self._cache[word] = symbols
        return self._cache[word]

    def tokenize(self, text: str) -> list[str]:
        """``text`` -> BPE pieces, e.g. ``"I'm cold."`` -> ``["▁I'm", "▁cold", "."]``."""
        return [piece for word in pretokenize(text) for piece in self.encode_word(word)]
