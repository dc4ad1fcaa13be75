"""Checks for lesson 02's exercises: the sinusoidal table and the rotation M_k."""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..positional import rotation_for_offset, sinusoidal_positional_encoding
from ._core import CheckFailed, call, close, exercise, expect_close, expect_result, expect_tensor, fail, reword

__all__ = ["check_sinusoidal_positional_encoding", "check_rotation_for_offset"]


def _table(max_len: int, d_model: int, base: float = 10000.0, first: Callable = torch.sin,
           second: Callable = torch.cos, exponent: Callable | None = None, start: int = 0,
           multiply: bool = False) -> torch.Tensor:
    """The sinusoidal table with one ingredient changed (for the typical mistakes)."""
    pos = torch.arange(start, start + max_len, dtype=torch.float64).unsqueeze(1)   # (L, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)                      # (ceil(D/2),)
    div = base ** (two_i / d_model if exponent is None else exponent(two_i, d_model))
    angle = pos * div if multiply else pos / div                                  # (L, ceil(D/2))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = first(angle)
    pe[:, 1::2] = second(angle[:, : d_model // 2])
    return pe


def _cos_with_own_exponent(max_len: int, d_model: int) -> torch.Tensor:
    """Column j uses the exponent j / d_model, so the cosine of pair i uses (2i+1) / d_model."""
    pos = torch.arange(max_len, dtype=torch.float64).unsqueeze(1)
    div = 10000.0 ** (torch.arange(d_model, dtype=torch.float64) / d_model)      # (D,)
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos / div[0::2])
    pe[:, 1::2] = torch.cos(pos / div[1::2])
    return pe


def _expect_float32(got, what: str) -> None:
    """A float64 table or matrix is right in value but not in dtype: say how to fix it."""
    __tracebackhide__ = True
    if isinstance(got, torch.Tensor) and got.dtype == torch.float64:
        fail(f"{what} should have dtype torch.float32, got torch.float64: torch's default is float32, so build "
             f"it from float32 tensors (e.g. torch.arange(..., dtype=torch.float32)) or return result.float()")


def _first_wrong_entry(got: torch.Tensor, expected: torch.Tensor, atol: float,
                       prefer: Callable[[int, int], bool] | None = None) -> tuple[int, int] | None:
    """(row, column) of the first entry that differs by more than ``atol``, row by row; among
    them the first for which ``prefer(row, column)`` holds, if any does."""
    bad = [tuple(rc) for rc in ((got.double() - expected.double()).abs() > atol).nonzero().tolist()]
    preferred = [rc for rc in bad if prefer is not None and prefer(*rc)]
    return (preferred or bad or [None])[0]


def _halves(max_len: int, d_model: int) -> torch.Tensor:
    """All sines first, then all cosines (tensor2tensor's layout), instead of interleaved."""
    pe = _table(max_len, d_model)
    return torch.cat([pe[:, 0::2], pe[:, 1::2]], dim=1)


# ---------------------------------------------------------------- sinusoidal_positional_encoding
@exercise(reference=sinusoidal_positional_encoding)
def check_sinusoidal_positional_encoding(fn):
    # (max_len, d_model): a square one (so a transposed table keeps its shape), a long one
    # (large angles), then odd sizes, after the even ones so that the diagnosis can say so
    cases = [(7, 12), (6, 6), (50, 16), (5, 7), (3, 1)]
    for L, D in cases:
        case = f"max_len={L}, d_model={D}"
        try:
            got = call(fn, L, D, case=case)
        except CheckFailed as e:
            error = e.learner_error
            if D % 2 and error is not None:
                raise reword(e, f"your function works for even d_model but raised {type(error).__name__} for the "
                                f"odd d_model={D} ({error}). With an odd d_model there are {(D + 1) // 2} sine "
                                f"columns (0, 2, ...) but only {D // 2} cosine columns: use angle[:, :d_model // 2] "
                                f"for the cosines") from None
            raise
        what = f"the table for {case}"
        expect_result(got, what)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (D, L) and L != D:
            fail(f"{what} has shape {(D, L)}, it should be (max_len, d_model) = {(L, D)}: rows are "
                 f"positions and columns are dimensions (positions and dimensions are transposed)")
        if isinstance(got, torch.Tensor) and D % 2 and tuple(got.shape) == (L, D + 1):
            fail(f"{what} has one column too many, {tuple(got.shape)}: for an odd d_model the last pair "
                 f"has only its sine; keep d_model columns")
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (L, D):
            _expect_float32(got, what)
        expect_tensor(got, (L, D), what, dtype=torch.float32)
        reference = _table(L, D)
        wrong_way = _table(L, D, multiply=True)[:, :4]
        if not close(got, reference, atol=1e-4) and D >= 4 and close(got[:, :4], wrong_way, atol=1e-4):
            # compared on the first columns only: the other angles are so large that float32 sines differ
            fail(f"{what} is wrong: the angle is pos * 10000^(2i/d_model): divide by it "
                 f"(the wavelengths grow with i)")
        mistakes = {
            "sin and cos are swapped: sines go in the even columns 2i, cosines in the odd columns 2i+1":
                _table(L, D, first=torch.cos, second=torch.sin),
            "sines fill the first half and cosines the second: interleave them, sin in the even "
            "columns (pe[:, 0::2]) and cos in the odd columns (pe[:, 1::2])": _halves(L, D),
            "the exponent is i/d_model with i the pair number: it is 2i/d_model, i.e. the even "
            "column index 0, 2, 4, ... divided by d_model":
                _table(L, D, exponent=lambda two_i, d: two_i / 2 / d),
            "the exponent is 4i/d_model: torch.arange(0, d_model, 2) already holds 2i, do not "
            "multiply it by 2 again": _table(L, D, exponent=lambda two_i, d: 2 * two_i / d),
            "the cosine of column 2i+1 uses the exponent (2i+1)/d_model: both columns of a pair "
            "share the frequency 1/10000^(2i/d_model)": _cos_with_own_exponent(L, D),
            "positions start at 1: the first row is position 0, PE[0] = [0, 1, 0, 1, ...]":
                _table(L, D, start=1),
            "rows and columns are transposed: rows are positions, columns are dimensions":
                _table(L, D).T,
            "the exponent's base is e (torch.exp(two_i / d_model)): the paper's base is 10000":
                _table(L, D, base=math.e),
        }
        for base in (10.0, 100.0, 1000.0, 100000.0):
            mistakes[f"the base is {base:g}, the paper uses 10000"] = _table(L, D, base=base)
        hint = ("Compare a few values with PE[pos, 2i] = sin(pos / 10000^(2i/d_model)) and "
                "PE[pos, 2i+1] = cos(pos / 10000^(2i/d_model)).")
        wrong = _first_wrong_entry(got, reference, atol=1e-4)
        if wrong is not None:
            p, c = wrong
            two_i = c - c % 2
            hint += (f" The first wrong entry is PE[{p}, {c}] = {got[p, c].item():.4g}; it should be "
                     f"{'sin' if c % 2 == 0 else 'cos'}({p} / 10000^({two_i}/{D})) = {reference[p, c].item():.4g}.")
        expect_close(got, reference, what, mistakes=mistakes, atol=1e-4, hint=hint)
    return len(cases)


# ---------------------------------------------------------------- rotation_for_offset
def _rotation(k: int, d_model: int, angle: Callable[[int], float], transpose: bool = False) -> torch.Tensor:
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    for two_i in range(0, d_model, 2):
        c, s = math.cos(angle(two_i)), math.sin(angle(two_i))
        m[two_i:two_i + 2, two_i:two_i + 2] = torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    return m.T if transpose else m


@exercise(reference=rotation_for_offset)
def check_rotation_for_offset(fn):
    cases = [(1, 8), (3, 12), (0, 6), (-2, 4), (25, 16)]
    for k, D in cases:
        case = f"k={k}, d_model={D}"
        got = call(fn, k, D, case=case)
        what = f"M_k for {case}"
        expect_result(got, what)
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (D, D):
            _expect_float32(got, what)
        expect_tensor(got, (D, D), what, dtype=torch.float32)
        w = lambda two_i: 1.0 / 10000.0 ** (two_i / D)  # noqa: E731 - the pair's frequency
        reference = _rotation(k, D, lambda two_i: k * w(two_i))
        mistakes = {
            "M_k @ PE[pos] gives PE[pos - k], a rotation the wrong way: the pair is (sin, cos), so "
            "the block is [[cos, sin], [-sin, cos]] (the textbook [[cos, -sin], [sin, cos]] is for "
            "(cos, sin) pairs)": _rotation(k, D, lambda two_i: k * w(two_i), transpose=True),
            "every block turns by the same angle k: pair i turns by k * w_i with "
            "w_i = 1/10000^(2i/d_model)": _rotation(k, D, lambda two_i: float(k)),
            "the angle uses the exponent i/d_model: w_i = 1/10000^(2i/d_model), with 2i the even "
            "column index": _rotation(k, D, lambda two_i: k / 10000.0 ** (two_i / 2 / D)),
            "the angle is k * 10000^(2i/d_model): divide k by 10000^(2i/d_model)":
                _rotation(k, D, lambda two_i: k * 10000.0 ** (two_i / D)),
            "M_k is the identity: it has to turn every pair by its angle k * w_i":
                torch.eye(D, dtype=torch.float64),
        }
        if k == 0:                                       # every mistake is right for k = 0
            mistakes = {}
        hint = "Test it yourself: PE[pos + k] should equal M_k @ PE[pos] for every pos."
        wrong = _first_wrong_entry(got, reference, atol=1e-5, prefer=lambda r, c: r // 2 != c // 2)
        if wrong is not None:
            r, c = wrong
            if r // 2 != c // 2:
                hint = (f"Entry [{r}, {c}] is {got[r, c].item():.4g} but lies outside the 2×2 blocks: M_k is zero "
                        f"except at rows and columns 2i, 2i+1 of each pair (index with two_i = 0, 2, 4, ..., "
                        f"not with i). " + hint)
            else:
                two_i = r - r % 2
                hint = (f"The first wrong entry is [{r}, {c}] = {got[r, c].item():.4g}, expected "
                        f"{reference[r, c].item():.4g}: the block of pair i = {two_i // 2} (rows and columns "
                        f"{two_i}, {two_i + 1}) turns by k * w_i = {k} / 10000^({two_i}/{D}) = "
                        f"{k * w(two_i):.4g} rad, with [[cos, sin], [-sin, cos]] of that angle. " + hint)
        expect_close(got, reference, what, mistakes=mistakes, atol=1e-5, hint=hint)
    return len(cases)
