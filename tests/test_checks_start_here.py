"""Lesson 00's check names the mistakes a newcomer makes first, and the shared helpers behind it."""
from __future__ import annotations

import pytest
import torch

from transformer_lib.checks import CheckFailed, check_normalize_rows
from transformer_lib.checks.start_here import call_diagnosing, expect_result


def in_place_without_return(x):
    x /= x.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("wrong, words", [
    (lambda x: x / x.sum(dim=-1), r"raised RuntimeError on an input of shape \(3, 5\): x\.sum\(dim=-1\) without keepdim=True"),
    (lambda x: x / x.norm(dim=-1, keepdim=True), r"row's length \(x\.norm\)"),
    (lambda x: torch.softmax(x, dim=-1), "it is a softmax"),
    (in_place_without_return, "returned None. Did you forget the `return` statement"),
    (lambda x: (x / x.sum(dim=-1, keepdim=True)).numpy(), "should be a torch.Tensor, got a NumPy array"),
])
def test_first_mistakes_are_named(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_normalize_rows(wrong)


def test_an_unrecognised_error_keeps_the_learners_message():
    def broken(x):
        raise ValueError("my own bug")
    with pytest.raises(CheckFailed, match="raised ValueError on an input of shape .*: my own bug") as info:
        check_normalize_rows(broken)
    assert isinstance(info.value.__cause__, ValueError)


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
