"""Checks for lesson 12's exercises: a task as text-to-text, and rotary position embeddings."""
from __future__ import annotations

import datetime

import torch

from ..text_to_text import apply_rope, make_example
from ._core import CheckFailed, call, describe, exercise, expect_close, fail

__all__ = ["check_make_example", "check_apply_rope"]

_CASES = [
    ("reverse", "stone"), ("reverse", "ab"), ("sort", "banana"), ("sort", "zyx"),
    ("add", (57, 264)), ("add", (0, 0)), ("add", (9, 91)),
    ("date", datetime.date(2021, 3, 7)), ("date", datetime.date(1999, 12, 31)), ("date", datetime.date(2005, 10, 1)),
]


def _diagnose(task, value, source, target) -> str | None:
    """A diagnosis for a typical wrong (source, target), or None."""
    want_source, want_target = make_example(task, value)
    prefix = f"{task}: "
    if source != want_source:
        if not source.startswith(task):
            return f"the source must start with the task's prefix {prefix!r} (task name, colon, space)"
        if source.startswith(f"{task}:") and not source.startswith(prefix):
            return f"put one space after the colon: the prefix is {prefix!r}"
        if source.lower() == want_source and source != want_source:
            return "keep everything lower case (month names are in MONTHS)"
        if task == "add" and source.replace(" ", "") == want_source.replace(" ", ""):
            return "write the two numbers as a+b without spaces around '+', e.g. 'add: 57+264'"
        if task == "date":
            if source.startswith(f"{prefix}0") and want_source != source:
                return "write the day without a leading zero: 'date: 7 march 2021'"
            return "the source of a date is 'date: <day> <month name> <year>', e.g. 'date: 7 march 2021' (MONTHS[month - 1])"
        return f"the source should be {want_source!r}"
    if target != want_target:
        if task == "reverse":
            return "the target is the input read backwards: value[::-1]"
        if task == "sort":
            if target == want_target[::-1]:
                return "the letters are sorted in descending order: sort them a to z"
            return "the target is the input's letters sorted a to z, joined into one string: ''.join(sorted(value))"
        if task == "add":
            a, b = value
            if target == f"{a}{b}":
                return "it glued the digits together: the target is the sum, str(a + b)"
            return "the target is the sum written in digits, str(a + b)"
        if task == "date":
            if target == f"{value.year}-{value.month}-{value.day}":
                return "pad month and day to two digits: '2021-03-07' (value.isoformat() does it)"
            return "the target of a date is its ISO form YYYY-MM-DD, value.isoformat()"
    return None


@exercise(reference=make_example)
def check_make_example(fn):
    for task, value in _CASES:
        case = f"task {task!r} with value {value!r}"
        got = call(fn, task, value, case=case)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            fail(f"make_example should return a pair (source, target), got {describe(got)} on {case}")
        source, target = got
        if not isinstance(source, str) or not isinstance(target, str):
            fail(f"source and target must both be strings (text in, text out), got {type(source).__name__} and "
                 f"{type(target).__name__} on {case}")
        want = make_example(task, value)
        if (source, target) != want:
            why = _diagnose(task, value, source, target)
            fail(f"on {case} expected {want!r}, got {(source, target)!r}" + (f": {why}" if why else ""))
    case = "the unknown task 'copy'"
    try:
        got = call(fn, "copy", "abc", case=case)
    except CheckFailed as e:
        error = e.learner_error
        if error is None:
            raise
        if not isinstance(error, ValueError):
            fail(f"an unknown task should raise ValueError naming the tasks, got {type(error).__name__}: {error}",
                 error)
    else:
        fail(f"make_example('copy', 'abc') returned {got!r}: an unknown task should raise ValueError naming the tasks")
    return len(_CASES) + 1


# ---- rotary position embeddings ------------------------------------------------------------

def _rope_rotate_half(x, base=10000.0):
    """The other common layout: feature i paired with feature i + d/2."""
    T, d = x.shape[-2], x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * theta
    cos, sin = angle.cos().float(), angle.sin().float()
    a, b = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def _rope_variant(x, sign=1.0, offset=0, exponent=2.0, base=10000.0):
    T, d = x.shape[-2], x.shape[-1]
    theta = base ** (-exponent * torch.arange(0, d // 2, dtype=torch.float64) / d)
    angle = sign * (torch.arange(T, dtype=torch.float64)[:, None] + offset) * theta
    cos, sin = angle.cos().float(), angle.sin().float()
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


@exercise(reference=apply_rope)
def check_apply_rope(fn):
    g = torch.Generator().manual_seed(7)
    cases = [torch.randn(5, 8, generator=g), torch.randn(2, 3, 7, 6, generator=g), torch.randn(1, 1, 4, generator=g),
             torch.randn(9, 16, generator=g) * 3]
    bases = [10000.0, 10000.0, 10000.0, 10000.0, 500.0]      # the last case passes base=500 by name
    cases.append(torch.randn(2, 6, 8, generator=g))
    for x, base in zip(cases, bases):
        case = f"x of shape {tuple(x.shape)}" + ("" if base == 10000.0 else f" and base={base:g}")
        got = call(fn, x, case=case) if base == 10000.0 else call(fn, x, base=base, case=case, hints={
            "unexpected keyword argument": "keep the exercise's signature, apply_rope(x, base=10000.0)"})
        mistakes = {
            "it pairs feature i with feature i + d/2 (the 'rotate half' layout of some libraries); this lesson "
            "pairs neighbours (2i, 2i+1), like the sine/cosine pairs of lesson 02": _rope_rotate_half(x, base),
            "it rotates the wrong way (angle -m*theta): out[2i] = x[2i] cos - x[2i+1] sin, "
            "out[2i+1] = x[2i] sin + x[2i+1] cos": _rope_variant(x, sign=-1.0, base=base),
            "positions start at 1: the first position, m = 0, is not rotated at all": _rope_variant(x, offset=1, base=base),
            "the frequencies are wrong: theta_i = base^(-2i/d) for i = 0 .. d/2 - 1": _rope_variant(x, exponent=1.0, base=base),
            "the position is taken along the wrong axis: m is the index along T, dimension -2":
                apply_rope(x.transpose(0, -2), base).transpose(0, -2) if x.dim() > 2 else apply_rope(x, base),
        }
        if base != 10000.0:
            mistakes[f"the base argument is ignored (10000 is used): with base={base:g}, theta_i = "
                     f"base^(-2i/d)"] = apply_rope(x)
        expect_close(got, apply_rope(x, base), f"apply_rope(x) for {case}", mistakes=mistakes,
                     hint="Check the formula: angle m * base^(-2i/d), pairs (2i, 2i+1), rotated counter-clockwise.")
    # the property that makes RoPE relative: scores depend on m - n only
    q, k = torch.randn(1, 16, generator=g).expand(12, 16), torch.randn(1, 16, generator=g).expand(12, 16)
    scores = call(fn, q, case="a query repeated at 12 positions") @ call(fn, k, case="a key repeated at 12 positions").T
    diagonals = [torch.diagonal(scores, offset).std().item() for offset in range(-5, 6)]
    if max(diagonals) > 1e-3 * max(1.0, scores.abs().max().item()):
        fail("q_m . k_n should depend on m - n only (each diagonal of the score matrix constant), but it does not")
    return len(cases) + 1
