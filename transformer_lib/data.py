"""Lesson 08: a sequence-to-sequence task generated in code, date normalisation.

Legend: B batch, S source length, T target length (with ``<bos>`` or ``<eos>``), V vocabulary size.

The model reads a date written in one of several human formats and writes it in ISO 8601::

    "3rd of March 1998"      -> "1998-03-03"
    "03/03/98"               -> "1998-03-03"      (day/month/year; yy >= 50 means 19yy, else 20yy)
    "March 3, 1998"          -> "1998-03-03"
    "1998-Mar-03"            -> "1998-03-03"
    "Tuesday 3 March 1998"   -> "1998-03-03"

To get it right the model must find the day, the month and the year wherever the format puts
them, turn month names into numbers, pad days with a zero, and restore the century of a
two-digit year: each output character depends on a few input characters, which is exactly what
cross-attention can learn and what its weights then show.

Everything is generated from a seed (no downloads). The splits are made by **date**: a date in
the test set appears in no format in the training or validation set, so test accuracy
measures generalisation to unseen inputs, not memory.

Batches hold ``src (B, S)``, the decoder input ``tgt_in (B, T)`` (``<bos>`` + target) and the
expected output ``tgt_out (B, T)`` (target + ``<eos>``), padded with ``<pad>`` = 0. Masks are
boolean with **True = may attend**.
"""
from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from .masks import decoder_self_mask, padding_mask
from .tokenizer import Tokenizer
from .training import shift_right
from .validation import check_flag, check_int, check_positive_int, check_sequence

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: The dates the task draws from (inclusive). Two-digit years 50-99 mean 1950-1999, 00-49 2000-2049.
FIRST_DATE, LAST_DATE = dt.date(1950, 1, 1), dt.date(2049, 12, 31)


def ordinal(day: int) -> str:
    """``1 -> "1st"``, ``2 -> "2nd"``, ``3 -> "3rd"``, ``11 -> "11th"``, ``22 -> "22nd"``."""
    check_int("day", day, minimum=0)
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th') }"


#: The input formats: name -> function(date) -> text. The target is always ``d.isoformat()``.
FORMATS: dict[str, Callable[[dt.date], str]] = {
    "ordinal": lambda d: f"{ordinal(d.day)} of {MONTHS[d.month - 1]} {d.year}",           # 3rd of March 1998
    "dmy_slash": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year % 100:02d}",               # 03/03/98
    "us_long": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",                       # March 3, 1998
    "ymd_abbrev": lambda d: f"{d.year}-{MONTHS[d.month - 1][:3]}-{d.day:02d}",             # 1998-Mar-03
    "weekday": lambda d: f"{WEEKDAYS[d.weekday()]} {d.day} {MONTHS[d.month - 1]} {d.year}",  # Tuesday 3 March 1998
    "short": lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year % 100:02d}",            # 3 Mar 98
    "dotted": lambda d: f"{d.day}.{d.month}.{d.year}",                                     # 3.3.1998
    "rfc": lambda d: f"{WEEKDAYS[d.weekday()][:3]}, {d.day:02d} {MONTHS[d.month - 1][:3].upper()} {d.year}",  # Tue, 03 MAR 1998
}

#: Every character an input can contain, and every character a target can contain.
SOURCE_CHARS = "".join(sorted(set("".join(MONTHS) + "".join(WEEKDAYS) + "".join(MONTHS).upper()
                                  + "0123456789 ,-./" + "stndrhof")))
TARGET_CHARS = "0123456789-"


def format_date(date: dt.date, fmt: str) -> str:
    """Write ``date`` in the format called ``fmt`` (a key of :data:`FORMATS`)."""
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
    if not isinstance(date, dt.date):
        raise TypeError(f"date must be a datetime.date, e.g. datetime.date(1998, 3, 3), got {type(date).__name__}")
    return FORMATS[fmt](date)


@dataclass(frozen=True)
class Example:
    """One input/output pair of the task."""

    source: str      # e.g. "March 3, 1998"
    target: str      # e.g. "1998-03-03"
    format: str      # the name of the input format, e.g. "us_long"


@dataclass
class Batch:
    """A padded batch: ``src (B, S)``, decoder input ``tgt_in (B, T)`` = ``<bos>`` + target,
    expected output ``tgt_out (B, T)`` = target + ``<eos>`` (teacher forcing). ``pad_id`` pads all three."""

    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    pad_id: int = 0

    @property
    def src_mask(self) -> torch.Tensor:
        """Bool ``(B, 1, 1, S)``: True at real source tokens (True = may attend)."""
        return padding_mask(self.src, self.pad_id)

    @property
    def tgt_mask(self) -> torch.Tensor:
        """Bool ``(B, 1, T, T)``: causal and no padded target keys (True = may attend)."""
        return decoder_self_mask(self.tgt_in, self.pad_id)

    @property
    def num_tokens(self) -> int:
        """Number of target tokens the loss is computed on (padding excluded)."""
        return int((self.tgt_out != self.pad_id).sum())

    def __len__(self) -> int:
        return self.src.shape[0]


class DateTask:
    """The date-normalisation task: tokenizers, train/validation/test splits and batching.

    Args:
        n_train: number of training examples.
        n_val: number of validation examples (watched during training).
        n_test: number of test examples (measured once, at the end).
        seed: everything (dates, formats, split) follows from it.
        formats: names of the input formats to use (default: all of :data:`FORMATS`).

    The dates are shuffled and cut into three disjoint sets (test, validation, training), so no
    date, and therefore no input and no target, is shared between splits. Each example's format
    is drawn at random.
    """

    def __init__(self, n_train: int = 60_000, n_val: int = 500, n_test: int = 2_000, seed: int = 0,
                 formats: Sequence[str] | None = None):
        for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
            check_positive_int(name, n)
        check_int("seed", seed)
        if formats is not None:
            formats = check_sequence("formats", formats, what="format names")
        self.formats = tuple(FORMATS) if formats is None else tuple(formats)
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown or not self.formats:
            raise ValueError(f"formats must be a non-empty subset of {sorted(FORMATS)}, got {list(self.formats)}")
        n_days = (LAST_DATE - FIRST_DATE).days + 1
        if n_val + n_test >= n_days:
            raise ValueError(f"n_val + n_test = {n_val + n_test} leaves no dates for training (there are {n_days})")
        self.seed = seed
        rng = random.Random(seed)
        days = list(range(n_days))
        rng.shuffle(days)
        held_out = n_test + n_val
        test_days, val_days, train_days = days[:n_test], days[n_test:held_out], days[held_out:]
        self.test = self._examples(test_days, rng)
        self.val = self._examples(val_days, rng)
        # training dates are drawn with replacement from the remaining ones, each in a random format
        self.train = self._examples([rng.choice(train_days) for _ in range(n_train)], rng)
        self.src_tokenizer = Tokenizer(list(SOURCE_CHARS), level="char")
        self.tgt_tokenizer = Tokenizer(list(TARGET_CHARS), level="char")
        self.pad_id = self.src_tokenizer.pad_id
        self._encoded: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        assert self.pad_id == self.tgt_tokenizer.pad_id == 0

    def _examples(self, days: list[int], rng: random.Random) -> list[Example]:
        out = []
        for day in days:
            date = FIRST_DATE + dt.timedelta(days=day)
            fmt = rng.choice(self.formats)
            out.append(Example(format_date(date, fmt), date.isoformat(), fmt))
        return out

    def split(self, name: str) -> list[Example]:
        """The examples of ``"train"``, ``"val"`` or ``"test"``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {name!r}")
        return getattr(self, name)

    def __repr__(self) -> str:
        return (f"DateTask(train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
                f"formats={len(self.formats)}, source vocabulary={len(self.src_tokenizer)}, "
                f"target vocabulary={len(self.tgt_tokenizer)})")

    # -- encoding ------------------------------------------------------------------------
    def encode_sources(self, sources: Sequence[str]) -> torch.Tensor:
        """Source texts -> ``(B, S)`` ids padded with ``<pad>`` (no ``<bos>``/``<eos>``)."""
        return self.src_tokenizer.encode_batch(check_sequence("sources", sources, str, "texts (str)"))

    def make_batch(self, examples: Sequence[Example]) -> Batch:
        """Encode and pad a list of examples into one :class:`Batch`."""
        src, tgt = self._encode(examples)
        return self._batch(src, tgt[:, 1:])

    def _encode(self, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sources ``(B, S)`` and targets with ``<bos>`` and ``<eos>`` ``(B, T+1)``, padded."""
        examples = check_sequence("examples", examples, what="Example objects")
        if not examples:
            raise ValueError("make_batch needs at least one example")
        bad = [e for e in examples if not (hasattr(e, "source") and hasattr(e, "target"))]
        if bad:
            raise TypeError(f"make_batch takes Example objects with .source and .target (task.train[:8], ...), "
                            f"got {type(bad[0]).__name__}")
        src = self.encode_sources([e.source for e in examples])                       # (B, S)
        tgt = self.tgt_tokenizer.encode_batch([e.target for e in examples], add_bos=True, add_eos=True)  # (B, T+1)
        return src, tgt

    def _batch(self, src: torch.Tensor, tgt_out: torch.Tensor) -> Batch:
        """A :class:`Batch` whose decoder input is ``tgt_out`` shifted right (teacher forcing)."""
        tgt_in = shift_right(tgt_out, self.tgt_tokenizer.bos_id, self.pad_id)           # (B, T)
        return Batch(src=src, tgt_in=tgt_in, tgt_out=tgt_out, pad_id=self.pad_id)

    def encoded(self, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A whole split encoded once (cached): ``src (N, S_max)``, ``tgt (N, T+1)`` (with
        ``<bos>`` and ``<eos>``), and the source lengths ``(N,)``."""
        if split not in self._encoded:
            src, tgt = self._encode(self.split(split))
            self._encoded[split] = (src, tgt, (src != self.pad_id).sum(dim=1))
        return self._encoded[split]

    def batches(self, split: str | Sequence[Example], batch_size: int, shuffle: bool = False,
                bucket: bool = True, seed: int = 0) -> list[Batch]:
        """Cut a split into padded batches.

        Args:
            split: ``"train"``, ``"val"``, ``"test"`` or a list of examples.
            batch_size: examples per batch (the last batch may be smaller).
            shuffle: shuffle the examples (with ``seed``) before cutting.
            bucket: sort by source length first, so each batch holds inputs of similar length
                and needs little padding; the batches themselves are then shuffled when
                ``shuffle``.
        """
        check_positive_int("batch_size", batch_size)
        check_flag("shuffle", shuffle)
        check_flag("bucket", bucket)
        check_int("seed", seed)
        if not isinstance(split, str):
            src, tgt = self._encode(split)
            lengths = (src != self.pad_id).sum(dim=1)
        else:
            src, tgt, lengths = self.encoded(split)
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(src), generator=g) if shuffle else torch.arange(len(src))
        if bucket:
            order = order[torch.sort(lengths[order], stable=True).indices]   # by length, shuffled within a length
        chunks = list(order.split(batch_size))
        if shuffle and bucket:
            chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=g).tolist()]
        out = []
        for index in chunks:
            S = int(lengths[index].max())                                    # trim columns that are padding in every row
            rows_tgt = tgt[index]
            T = int((rows_tgt != self.pad_id).sum(dim=1).max())
            out.append(self._batch(src[index, :S], rows_tgt[:, 1:T]))
        return out

    def batch_stream(self, batch_size: int, bucket: bool = True, seed: int = 0) -> "BatchStream":
        """Endless training batches for :func:`transformer_lib.training.train`: a new shuffle
        (and bucketing) every epoch, the same sequence for the same seed."""
        return BatchStream(self, batch_size, bucket=bucket, seed=seed)


class BatchStream:
    """Training batches epoch after epoch; call it with the step number or iterate over it."""

    def __init__(self, task: DateTask, batch_size: int, bucket: bool = True, seed: int = 0):
        if not (callable(getattr(task, "batches", None)) and hasattr(task, "train")):
            raise TypeError(f"task must be a task with .train and .batches() (a DateTask, or lesson 09's "
                            f"TranslationTask), got {type(task).__name__}")
        self.task, self.batch_size = task, check_positive_int("batch_size", batch_size)
        self.bucket, self.seed = check_flag("bucket", bucket), check_int("seed", seed)
        self.epoch, self._batches, self._next = 0, [], 0

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-len(self.task.train) // self.batch_size)

    def __call__(self, step: int | None = None) -> Batch:
        if self._next == len(self._batches):
            self._batches = self.task.batches("train", self.batch_size, shuffle=True, bucket=self.bucket,
                                              seed=self.seed * 1_000_003 + self.epoch)
            self.epoch, self._next = self.epoch + 1, 0
        self._next += 1
        return self._batches[self._next - 1]

    def __iter__(self) -> Iterator[Batch]:
        while True:
            yield self()


def padding_fraction(batches: Sequence[Batch]) -> float:
    """Fraction of source positions that are padding, over ``batches``."""
    batches = check_sequence("batches", batches, Batch, "Batch objects (task.batches(...))")
    total = sum(b.src.numel() for b in batches)
    pads = sum(int((b.src == b.pad_id).sum()) for b in batches)
    return pads / total if total else 0.0
