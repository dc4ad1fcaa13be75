"""Lesson 00's check names the mistakes a newcomer makes first, and the shared helpers behind it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_lib.checks import CheckFailed, check_normalize_rows
from transformer_lib.checks._core import call_diagnosing, expect_result


def in_place_without_return(x):
    x /= x.sum(dim=-1, keepdim=True)


def in_place_with_return(x):
    x /= x.sum(dim=-1, keepdim=True)
    return x


@pytest.mark.parametrize("fn", [
    lambda x: x / x.sum(-1, keepdim=True),
    lambda x: torch.einsum("...d,...->...d", x, 1 / x.sum(-1)),
    lambda x: (x.double() / x.double().sum(-1, keepdim=True)),              # float64 inside: fine
    lambda x: torch.stack([row / row.sum() for row in x.reshape(-1, x.shape[-1])]).reshape(x.shape),
])
def test_other_correct_versions_pass(fn):
    assert check_normalize_rows(fn) is fn


@pytest.mark.parametrize("wrong, words", [
    (lambda x: x / x.sum(dim=-1),
     r"raised RuntimeError on an input of shape \(3, 5\): .*\n   Hint: x\.sum\(dim=-1\) without keepdim=True"),
    (lambda x: x / x.norm(dim=-1, keepdim=True), r"row's length \(x\.norm\)"),
    (lambda x: torch.softmax(x, dim=-1), "it is a softmax"),
    (in_place_without_return, "changed its argument `x` in place .* It also returned None"),
    (in_place_with_return, r"changed its argument `x` in place on an input of shape \(3, 5\) \(first change at \[0, 0\]"),
    (lambda x: (x / x.sum(dim=-1, keepdim=True)).numpy(), "should be a torch.Tensor, got a NumPy array"),
    (lambda x: x / x.sum(dim=-1, keepdim=True).clamp(min=1), r"clamps the row sums to at least 1 \(\.clamp\(min=1\)\)"),
    (lambda x: F.normalize(x, p=1, dim=-1), "sum of the absolute values"),
    (lambda x: None, "forget the `return` statement"),
])
def test_first_mistakes_are_named(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_normalize_rows(wrong)


def test_an_unrecognised_error_keeps_the_learners_message():
    def broken(x):
        raise ValueError("my own bug")
    with pytest.raises(CheckFailed, match="raised ValueError on an input of shape .*: my own bug") as info:
        check_normalize_rows(broken)
    assert isinstance(info.value.learner_error, ValueError)


def test_call_diagnosing_names_only_a_mistake_raising_the_same_error():
    x = torch.ones(3, 5)
    raising = {"no keepdim": lambda x: x / x.sum(dim=-1)}
    with pytest.raises(CheckFailed, match="no keepdim"):
        call_diagnosing(lambda x: x / x.sum(dim=-1), x, case="x", raising=raising)
    with pytest.raises(CheckFailed) as info:                        # another error: not diagnosed
        call_diagnosing(lambda x: x @ x, x, case="x", raising=raising)
    assert "no keepdim" not in str(info.value)
    assert call_diagnosing(lambda x: x + 1, x, case="x", raising=raising).sum() == 30


def test_expect_result_accepts_a_tensor():
    expect_result(torch.zeros(2), "the result")
    with pytest.raises(CheckFailed, match="returned None"):
        expect_result(None, "the result")
