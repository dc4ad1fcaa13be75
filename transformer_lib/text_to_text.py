"""Lesson 12: T5's idea, every task is text-to-text; and relative positions.

Legend: B batch, S source length, T target length, D = d_model, V vocabulary size.

T5 ("Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
Raffel et al., 2020) casts every task as "text in, text out" and names the task with a prefix
in the input, so one encoder-decoder, one loss and one decoding procedure serve them all:

    "reverse: stone"        -> "enots"
    "sort: stone"           -> "enost"
    "add: 57+264"           -> "321"
    "date: 7 march 2021"    -> "2021-03-07"

This module generates such examples in code (:func:`make_example`, :func:`generate_examples`),
turns them into padded id tensors (:func:`encode_examples`) and scores each task
(:func:`per_task_accuracy`); the encoder-decoder decodes with lesson 08's
:func:`~transformer_lib.decoding.greedy_decode`.

It also holds the two relative-position schemes lesson 12 shows as alternatives to the
absolute positions of lesson 02: T5's bucketed relative position bias
(:func:`relative_position_bucket`) and rotary position embeddings, RoPE (:func:`apply_rope`).
"""
from __future__ import annotations

import datetime
import math
import random
from typing import Callable, Sequence

import torch

from .tokenizer import Tokenizer
from .training import shift_right
from .validation import (check_flag, check_int, check_number, check_positive_int, check_sequence, check_tensor,
                         is_int)

__all__ = ["TASKS", "MONTHS", "make_example", "random_value", "generate_examples", "text_to_text_tokenizer",
           "encode_examples", "per_task_accuracy", "relative_position_bucket", "apply_rope"]

TASKS = ("reverse", "sort", "add", "date")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
ADD_MAX = 99
FIRST_DAY, LAST_DAY = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)


def make_example(task: str, value) -> tuple[str, str]:
    """One example of ``task`` as a (source, target) pair of strings.

    Args:
        task: ``"reverse"`` or ``"sort"`` (``value`` a string of lower-case letters),
            ``"add"`` (``value`` a pair of ints ``(a, b)``) or ``"date"`` (a ``datetime.date``).
        value: the task's input.

    Returns:
        ``(source, target)``: the source is the prefix ``"<task>: "`` followed by the input,
        e.g. ``("add: 57+264", "321")`` or ``("date: 7 march 2021", "2021-03-07")``.

    Raises:
        ValueError: for an unknown task; TypeError: for a value of the wrong kind.
    """
    _check_task(task)
    kinds = {"reverse": str, "sort": str, "add": (tuple, list), "date": datetime.date}
    if not isinstance(value, kinds[task]) or (task == "add" and (len(value) != 2 or not all(map(is_int, value)))):
        want = {"reverse": "a str", "sort": "a str", "add": "a pair of ints (a, b)", "date": "a datetime.date"}[task]
        raise TypeError(f"the value of task {task!r} must be {want}, got {type(value).__name__} {value!r}")
    if task == "reverse":
        return f"reverse: {value}", value[::-1]
    if task == "sort":
        return f"sort: {value}", "".join(sorted(value))
    if task == "add":
        a, b = value
        return f"add: {a}+{b}", str(a + b)
    if task == "date":
        return f"date: {value.day} {MONTHS[value.month - 1]} {value.year}", value.isoformat()
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def random_value(task: str, rng: random.Random):
    """A random input for ``task``: 3-8 letters, two numbers up to ADD_MAX (99), or a date in 1950-2049."""
    _check_task(task)
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random (e.g. random.Random(0)), got {type(rng).__name__}")
    if task in ("reverse", "sort"):
        return "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 8)))
    if task == "add":
        return rng.randint(0, ADD_MAX), rng.randint(0, ADD_MAX)
    if task == "date":
        return FIRST_DAY + datetime.timedelta(days=rng.randint(0, (LAST_DAY - FIRST_DAY).days))
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def generate_examples(n: int, seed: int = 0, tasks: Sequence[str] = TASKS,
                      maker: Callable[[str, object], tuple[str, str]] = make_example) -> list[tuple[str, str, str]]:
    """``n`` examples, tasks taken in turn: a list of ``(task, source, target)``.

    ``maker`` formats each example (the lesson passes the learner's ``make_example``).
    """
    try:
        check_int("n", n, minimum=0)
    except TypeError as e:                               # n=2.5 has always been a ValueError here
        raise ValueError(str(e)) from None
    check_int("seed", seed)
    if isinstance(tasks, str) or not tasks:
        raise ValueError(f"tasks must be a non-empty list of task names from {TASKS}, got {tasks!r}")
    for task in tasks:
        _check_task(task)
    if not callable(maker):
        raise TypeError(f"maker must be a function (task, value) -> (source, target), got {type(maker).__name__}")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        source, target = maker(task, random_value(task, rng))
        out.append((task, source, target))
    return out


def _check_task(task) -> None:
    if not isinstance(task, str) or task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def text_to_text_tokenizer() -> Tokenizer:
    """The character tokenizer of the four tasks: the specials, then ``" :+-"``, digits and
    letters (a fixed alphabet, so the ids never depend on the data)."""
    return Tokenizer(list(" :+-0123456789" + LETTERS), level="char")


def encode_examples(tokenizer: Tokenizer, examples: Sequence[tuple[str, str, str]]):
    """Ids for training: ``(src (B, S), tgt_in (B, T), tgt_out (B, T))``.

    ``tgt_in`` is ``<bos>`` + target (the decoder's input), ``tgt_out`` is target + ``<eos>``
    (what it must predict), both right-padded with ``<pad>``.
    """
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"tokenizer must be a Tokenizer (text_to_text_tokenizer()), got {type(tokenizer).__name__}")
    if not isinstance(examples, (list, tuple)) or not examples or any(
            not isinstance(e, (tuple, list)) or len(e) != 3 for e in examples):
        raise ValueError("examples must be a non-empty list of (task, source, target) triples, "
                         "as generate_examples gives")
    src = tokenizer.encode_batch([s for _, s, _ in examples])
    tgt = tokenizer.encode_batch([t for _, _, t in examples], add_bos=True, add_eos=True)
    tgt_out = tgt[:, 1:]                                           # (B, T+1) -> (B, T)
    return src, shift_right(tgt_out, tokenizer.bos_id, tokenizer.pad_id), tgt_out


def per_task_accuracy(tasks: Sequence[str], predictions: Sequence[str], targets: Sequence[str]) -> dict[str, float]:
    """Exact-match accuracy of each task (and ``"all"``): the fraction of predictions equal to
    their target."""
    tasks = check_sequence("tasks", tasks, what="task names")
    predictions = check_sequence("predictions", predictions, what="texts")
    targets = check_sequence("targets", targets, what="texts")
    if not len(tasks) == len(predictions) == len(targets):
        raise ValueError(f"tasks, predictions and targets must have the same length, got "
                         f"{len(tasks)}, {len(predictions)} and {len(targets)}")
    scores: dict[str, list[bool]] = {}
    for task, p, t in zip(tasks, predictions, targets):
        scores.setdefault(task, []).append(p == t)
    result = {task: sum(v) / len(v) for task, v in scores.items()}
    if scores:
        result["all"] = sum(sum(v) for v in scores.values()) / len(tasks)
    return result


# ---- relative positions -------------------------------------------------------------------

def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """T5's bucket of every relative position ``key - query`` (an integer tensor, any shape).

    Small distances get a bucket each; larger ones share logarithmically wider buckets up to
    ``max_distance``, beyond which all distances share the last bucket. With
    ``bidirectional`` half the buckets are for keys after the query. Each bucket has one
    learned bias per head, added to the attention scores: the model learns how much to
    attend at each distance, whatever the absolute positions.
    """
    check_tensor("relative_position", relative_position, floating=False)
    check_flag("bidirectional", bidirectional)
    check_int("num_buckets", num_buckets, minimum=4 if bidirectional else 2, hint="at least 2 per direction")
    check_positive_int("max_distance", max_distance)
    exact = (num_buckets // 2 if bidirectional else num_buckets) // 2
    if max_distance <= exact:
        raise ValueError(f"max_distance={max_distance} must be larger than the {exact} distances that get a "
                         f"bucket each (num_buckets={num_buckets}; T5 uses 32 and 128)")
    n = -relative_position
    bucket = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (n < 0).long() * num_buckets                 # keys after the query: upper half
        n = n.abs()
    else:
        n = n.clamp(min=0)                                               # a decoder never looks ahead
    max_exact = num_buckets // 2
    is_small = n < max_exact
    large = max_exact + (torch.log(n.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return bucket + torch.where(is_small, n, large)


def apply_rope(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (RoPE, Su et al. 2021) of queries or keys.

    The features are taken in pairs ``(2i, 2i+1)``, as the sine/cosine pairs of lesson 02,
    and the pair of position ``m`` is rotated by the angle ``m * theta_i`` with
    ``theta_i = base^(-2i / d)``:

        out[m, 2i]   = x[m, 2i] cos(m theta_i) - x[m, 2i+1] sin(m theta_i)
        out[m, 2i+1] = x[m, 2i] sin(m theta_i) + x[m, 2i+1] cos(m theta_i)

    Rotating a query at ``m`` and a key at ``n`` makes their dot product depend on ``m - n``
    only: attention sees relative positions, with nothing added to the token vectors.

    Args:
        x: ``(..., T, d)`` with an even ``d``; position ``m`` is the index along ``T``.
        base: the wavelength base (10000, as in lesson 02).

    Returns:
        ``(..., T, d)``.
    """
    check_tensor("x", x, floating=True)
    check_number("base", base, low=1.0, low_open=True, hint="10000.0, as in lesson 02")
    if x.dim() < 2 or x.shape[-1] % 2:
        raise ValueError(f"x must be (..., T, d) with an even d, got shape {tuple(x.shape)}")
    T, d = x.shape[-2], x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)              # (d/2,)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * theta                   # (T, d/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]                                          # (..., T, d/2) each
    out = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)     # (..., T, d/2, 2)
    return out.flatten(-2)                                                          # (..., T, d/2, 2) -> (..., T, d)
