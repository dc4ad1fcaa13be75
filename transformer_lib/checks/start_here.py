"""Checks for lesson 00's warm-up exercise."""
from __future__ import annotations

import torch

from ..start_here import normalize_rows
from ._core import call_diagnosing, exercise, expect_close, expect_result

__all__ = ["check_normalize_rows"]


@exercise(reference=normalize_rows)
def check_normalize_rows(fn):
    g = torch.Generator().manual_seed(0)
    cases = [
        ("an input of shape (3, 5)", torch.rand(3, 5, generator=g) + 0.1),
        ("an input of shape (2, 3, 7)", torch.rand(2, 3, 7, generator=g) + 0.1),
        ("an input of shape (1, 4)", torch.rand(1, 4, generator=g) + 0.1),
        # rows summing to less than 1, and a row with a negative entry: a clamped sum shows here
        ("an input of shape (2, 6) whose rows sum to less than 1", torch.rand(2, 6, generator=g) * 0.1 + 0.01),
        ("an input of shape (2, 3) with a negative entry", torch.tensor([[2.0, -0.5, 1.0], [0.25, 0.5, 0.125]])),
    ]
    for case, x in cases:
        got = call_diagnosing(fn, x, case=case, raising={
            "x.sum(dim=-1) without keepdim=True drops the summed axis, so the sums no longer line up with "
            "the rows of x: use x.sum(dim=-1, keepdim=True)": lambda x: x / x.sum(dim=-1),
        })
        what = f"normalize_rows(x) for {case}"
        expect_result(got, what)
        sums = x.sum(dim=-1, keepdim=True)
        expect_close(got, normalize_rows(x), what, mistakes={
            "it divides by the sum of each *column* (dim=0 or dim=-2): sum over the last dimension, dim=-1": x / x.sum(dim=-2, keepdim=True),
            "it divides by the sum of the whole tensor: sum over the last dimension only, dim=-1": x / x.sum(),
            "it divides by the row's largest value: divide by its sum": x / x.amax(dim=-1, keepdim=True),
            "it divides by the row's length (x.norm): divide by its plain sum, x.sum(dim=-1, keepdim=True)":
                x / x.norm(dim=-1, keepdim=True),
            "it is a softmax (exponentials first): here divide the values themselves by their row's sum, "
            "without exp": torch.softmax(x, dim=-1),
            "it clamps the row sums to at least 1 (.clamp(min=1)), so rows that sum to less than 1 are not "
            "divided: divide by the plain sum": x / sums.clamp(min=1),
            "it divides by the sum of the absolute values (or normalises with F.normalize(p=1)): divide by the "
            "plain sum, x.sum(dim=-1, keepdim=True)": x / x.abs().sum(dim=-1, keepdim=True),
        }, hint="Each entry should be divided by the sum of its row: x / x.sum(dim=-1, keepdim=True).")
    return len(cases)
