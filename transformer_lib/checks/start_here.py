"""Checks for lesson 00's warm-up exercise, and two helpers the early lessons' checks share.

:func:`call_diagnosing` names a typical mistake from the error it raises (e.g. a missing
``keepdim=True``); :func:`expect_result` catches a function that returns nothing or a NumPy array.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ._core import CheckFailed, call, exercise, expect_close, fail

__all__ = ["check_normalize_rows"]


def call_diagnosing(fn: Callable, *args, case: str = "", raising: dict[str, Callable] | None = None):
    """Like :func:`call`, but when ``fn`` raises, look for a typical mistake that raises the very
    same error on these arguments and name it. ``raising`` maps a diagnosis in words to a
    function with that mistake."""
    __tracebackhide__ = True
    try:
        return call(fn, *args, case=case)
    except CheckFailed as failed:
        error = failed.__cause__
        if error is None:
            raise
        for message, wrong in (raising or {}).items():
            try:
                wrong(*args)
            except type(error) as same:
                if str(same) == str(error):
                    raise CheckFailed(f"your function raised {type(error).__name__} on {case}: {message}") from error
            except Exception:  # noqa: BLE001 - a different error: not this mistake
                pass
        raise


def expect_result(got, what: str) -> None:
    """Fail with a hint when the learner's function returned ``None`` or a NumPy array.

    ``what`` names the result, e.g. "normalize_rows(x) for x of shape (3, 5)".
    """
    __tracebackhide__ = True
    if got is None:
        fail(f"{what}: your function returned None. Did you forget the `return` statement? (An in-place "
             f"operation such as `x /= ...` changes x but returns nothing.)")
    if isinstance(got, np.ndarray):
        fail(f"{what} should be a torch.Tensor, got a NumPy array: stay with torch operations, or convert "
             f"the array with torch.from_numpy(...)")


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Divide every row of ``x`` (last dimension) by its sum, so each row sums to 1."""
    return x / x.sum(dim=-1, keepdim=True)


@exercise(reference=normalize_rows)
def check_normalize_rows(fn):
    g = torch.Generator().manual_seed(0)
    cases = [torch.rand(3, 5, generator=g) + 0.1, torch.rand(2, 3, 7, generator=g) + 0.1, torch.rand(1, 4, generator=g) + 0.1]
    for x in cases:
        case = f"an input of shape {tuple(x.shape)}"
        got = call_diagnosing(fn, x.clone(), case=case, raising={
            "x.sum(dim=-1) without keepdim=True drops the summed axis, so the sums no longer line up with "
            "the rows of x: use x.sum(dim=-1, keepdim=True)": lambda x: x / x.sum(dim=-1),
        })
        what = f"normalize_rows(x) for x of shape {tuple(x.shape)}"
        expect_result(got, what)
        expect_close(got, normalize_rows(x), what, mistakes={
            "it divides by the sum of each *column* (dim=0 or dim=-2): sum over the last dimension, dim=-1": x / x.sum(dim=-2, keepdim=True),
            "it divides by the sum of the whole tensor: sum over the last dimension only, dim=-1": x / x.sum(),
            "it divides by the row's largest value: divide by its sum": x / x.amax(dim=-1, keepdim=True),
            "it divides by the row's length (x.norm): divide by its plain sum, x.sum(dim=-1, keepdim=True)":
                x / x.norm(dim=-1, keepdim=True),
            "it is a softmax (exponentials first): here divide the values themselves by their row's sum, "
            "without exp": torch.softmax(x, dim=-1),
        }, hint="Each entry should be divided by the sum of its row: x / x.sum(dim=-1, keepdim=True).")
    return len(cases)
