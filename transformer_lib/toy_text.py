"""Text for lessons 10 and 11, generated in code or read from Python's own installation.

Lesson 10: a tiny world of reviews
----------------------------------
:class:`ReviewWorld` writes short English sentences about films, meals, hotels... from a few
templates. Each sentence has a hidden sentiment, and its adjectives come from the positive or
the negative list, so *which* adjectives are good or bad can be learned from unlabelled text:
they appear next to "i loved" / "i hated", "we will go back" / "we want a refund", and next to
each other ("the meal was tasty and fresh").

The labelled task asks for the sentiment of a bare sentence such as ``"the hotel was dreadful ."``:
no cue word, only the adjective tells. With a handful of labels a model trained from scratch
sees only some adjectives and must guess on the others; a model pre-trained with the masked-LM
objective on the unlabelled sentences has already grouped the adjectives, which is exactly what
the task needs. That is transfer learning, and lesson 10 measures it.

Lesson 11: text that ships with Python
--------------------------------------
:func:`python_source_corpus` reads the source of a standard-library module (by default
``difflib.py``, identical in Python 3.10 to 3.13), so the character-level GPT trains on text
that exists on every installation, without downloads.
"""
from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from .tokenizer import SPECIALS, Tokenizer
from .validation import check_int, check_sequence, check_token_ids

__all__ = ["ReviewWorld", "CLS", "SEP", "MASK", "python_source_corpus"]

CLS, SEP, MASK = "[CLS]", "[SEP]", "[MASK]"

POSITIVE = ("good", "great", "lovely", "superb", "wonderful", "excellent", "brilliant", "charming",
            "delightful", "pleasant", "fantastic", "splendid")
NEGATIVE = ("bad", "awful", "terrible", "boring", "dull", "poor", "horrible", "dreadful", "weak",
            "sloppy", "tedious", "clumsy")
NOUNS = ("film", "movie", "book", "meal", "song", "show", "game", "hotel", "play", "album",
         "dinner", "concert", "trip", "novel", "cafe", "museum")
CUES = {1: ("loved", "liked", "enjoyed", "adored"), 0: ("hated", "disliked", "regretted", "loathed")}
OUTCOMES = {1: ("we will go back", "i smiled all day", "i recommend it", "we had fun"),
            0: ("we want a refund", "i left early", "i would avoid it", "what a waste")}
PEOPLE = ("my friend", "my sister", "the critic", "everyone", "my dad")

# pre-training templates: {cue}, {outcome} carry the sentiment; {adj}, {adj2} come from its list
PRETRAIN_TEMPLATES = (
    "i {cue} the {noun} , it was {adj} .",
    "the {noun} was {adj} , i {cue} it .",
    "the {noun} was {adj} and {adj2} .",
    "a {adj} {noun} , {outcome} .",
    "{person} said the {noun} was {adj} , {outcome} .",
    "{person} {cue} this {adj} {noun} .",
)
#: the labelled task: no cue word, the adjective alone tells the sentiment
TASK_TEMPLATE = "the {noun} was {adj} ."


@dataclass
class ReviewWorld:
    """Generator of the lesson-10 sentences and their word-level tokenizer.

    The vocabulary is the four course specials, then ``[CLS]``, ``[SEP]``, ``[MASK]``, then the
    words; ``num_special`` (7) counts the ids that the masking rule must never choose.
    """

    positive: tuple[str, ...] = POSITIVE
    negative: tuple[str, ...] = NEGATIVE
    nouns: tuple[str, ...] = NOUNS

    def __post_init__(self):
        words: list[str] = []
        pieces = (self.positive, self.negative, self.nouns, *CUES.values(), *OUTCOMES.values(), PEOPLE,
                  PRETRAIN_TEMPLATES, (TASK_TEMPLATE,))
        for piece in pieces:
            for text in piece:
                for w in text.split():
                    if not (w.startswith("{") and w.endswith("}")) and w not in words:
                        words.append(w)
        self.tokenizer = Tokenizer([CLS, SEP, MASK] + words, level="word")
        self.cls_id, self.sep_id, self.mask_id = (self.tokenizer.stoi[t] for t in (CLS, SEP, MASK))
        self.num_special = len(SPECIALS) + 3
        self.sentiment = {w: 1 for w in self.positive} | {w: 0 for w in self.negative}

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    # ---- sentences -------------------------------------------------------------------------
    def _fill(self, template: str, label: int, rng: random.Random, adjectives: tuple[str, ...] | None = None) -> str:
        pool = adjectives or (self.positive if label else self.negative)
        adj, adj2 = rng.sample(pool, 2) if len(pool) > 1 else (pool[0], pool[0])
        return template.format(adj=adj, adj2=adj2, noun=rng.choice(self.nouns), cue=rng.choice(CUES[label]),
                               outcome=rng.choice(OUTCOMES[label]), person=rng.choice(PEOPLE))

    def pretraining_sentences(self, n: int, seed: int = 0) -> list[str]:
        """``n`` unlabelled sentences from the pre-training templates."""
        check_int("n", n, minimum=0)
        check_int("seed", seed)
        rng = random.Random(seed)
        return [self._fill(rng.choice(PRETRAIN_TEMPLATES), rng.randint(0, 1), rng) for _ in range(n)]

    def labelled_examples(self, n: int, seed: int = 0) -> tuple[list[str], list[int]]:
        """``n`` sentences of the labelled task with their sentiment (1 positive, 0 negative),
        balanced: the labels alternate."""
        check_int("n", n, minimum=0)
        check_int("seed", seed)
        rng = random.Random(seed)
        texts, labels = [], []
        for i in range(n):
            label = i % 2
            texts.append(self._fill(TASK_TEMPLATE, label, rng))
            labels.append(label)
        return texts, labels

    # ---- ids -------------------------------------------------------------------------------
    def encode(self, sentences: list[str], max_len: int | None = None) -> torch.Tensor:
        """``[CLS] words [SEP]`` ids ``(B, T)``, padded with ``<pad>`` (0) on the right.
        The word ``[MASK]`` may appear in a sentence (for fill-in-the-blank)."""
        if isinstance(sentences, str):
            raise TypeError("encode takes a list of sentences, got a single str")
        sentences = check_sequence("sentences", sentences, str, "sentences (str)")
        if not sentences:
            raise ValueError("encode needs at least one sentence")
        if max_len is not None:
            check_int("max_len", max_len, minimum=2, hint="room for [CLS] and [SEP]")
        stoi = self.tokenizer.stoi
        rows = []
        for s in sentences:
            unknown = [w for w in s.split() if w not in stoi]
            if unknown:
                raise ValueError(f"words not in the vocabulary: {unknown}")
            rows.append([self.cls_id] + [stoi[w] for w in s.split()] + [self.sep_id])
        length = max(len(r) for r in rows) if max_len is None else max_len
        if max(len(r) for r in rows) > length:
            raise ValueError(f"a sentence has {max(len(r) for r in rows)} tokens, more than max_len={length}")
        ids = torch.full((len(rows), length), self.tokenizer.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
        return ids

    def decode(self, ids) -> str:
        """Words of one row of ids, without padding (``[CLS]``/``[SEP]``/``[MASK]`` shown)."""
        ids = check_token_ids(ids, self.vocab_size)
        return " ".join(self.tokenizer.itos[i] for i in ids if i != self.tokenizer.pad_id)


def python_source_corpus(modules: tuple[str, ...] = ("difflib",), max_chars: int | None = None) -> str:
    """The source code of standard-library modules, concatenated: text on every Python install.

    Args:
        modules: module names; each must be a pure-Python file of the standard library.
            ``difflib`` (83 KB) is byte-identical in CPython 3.10, 3.11, 3.12 and 3.13, so the
            lesson trains on the same text everywhere.
        max_chars: keep only the first ``max_chars`` characters.

    Returns:
        the text (with ``\\n`` line ends).
    """
    if isinstance(modules, str):
        modules = (modules,)
    modules = check_sequence("modules", modules, str, "module names such as 'difflib'")
    if not modules:
        raise ValueError("modules is empty: name at least one module, e.g. ('difflib',)")
    if max_chars is not None:
        check_int("max_chars", max_chars, minimum=0)
    parts = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            raise ValueError(f"module {name!r} has no .py source file in this Python installation")
        parts.append(Path(spec.origin).read_text(encoding="utf-8").replace("\r\n", "\n"))
    text = "\n".join(parts)
    return text if max_chars is None else text[:max_chars]
