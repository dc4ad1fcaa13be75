"""The exercise-check machinery, shown on lesson 00's warm-up exercise (the rules every check
follows are tested over all checks in test_checks_all.py)."""
from __future__ import annotations

import json

import pytest
import torch

from transformer_lib.checks import CheckFailed, check_normalize_rows
from transformer_lib.checks._core import PROGRESS_ENV, translate
from transformer_lib.start_here import normalize_rows


def test_correct_function_passes_and_is_returned(capsys):
    mine = lambda x: x / x.sum(-1).unsqueeze(-1)  # another correct way
    assert check_normalize_rows(mine) is mine
    assert "✅ normalize_rows is correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda x: x / x.sum(dim=-2, keepdim=True), "column"),
    (lambda x: x / x.sum(), "whole tensor"),
    (lambda x: x / x.amax(dim=-1, keepdim=True), "largest value"),
    (lambda x: x * 0.5, r"the first wrong entry is \[0, 0\] = .*, expected .* \(largest difference"),
    (lambda x: x.sum(-1), r"shape \(3, 5\), got \(3,\)"),
    (lambda x: x.numpy(), "should be a torch.Tensor"),
    (lambda x: x.reshape(-1) @ x, "raised RuntimeError"),
])
def test_wrong_versions_are_rejected_with_a_diagnosis(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_normalize_rows(wrong)
    assert issubclass(CheckFailed, AssertionError)


def test_a_non_function_is_a_type_error():
    with pytest.raises(TypeError, match="takes your function"):
        check_normalize_rows(torch.ones(3))


def test_results_are_recorded_for_the_progress_command(tmp_path, monkeypatch):
    log = tmp_path / "progress.jsonl"
    monkeypatch.setenv(PROGRESS_ENV, str(log))
    check_normalize_rows(normalize_rows)
    with pytest.raises(CheckFailed):
        check_normalize_rows(lambda x: x)

    def todo(x):
        raise NotImplementedError()
    check_normalize_rows(todo)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["pass", "fail", "todo"]
    assert rows[1]["check"] == "normalize_rows" and "wrong" in rows[1]["message"]


@pytest.mark.parametrize("error, words", [
    (TypeError("unsupported operand type(s) for +: 'Tensor' and 'tuple'"), "take the output with [0]"),
    (TypeError("layer_norm(): argument 'input' (position 1) must be Tensor, not tuple"), "take the output with [0]"),
    (TypeError("view(): argument 'size' failed to unpack the object at pos 4 with error \"type must be tuple of "
               "ints,but got float\""), "d_k = D // num_heads"),
    (TypeError("view(): argument 'size' (position 1) must be tuple of ints, but found element of type float at pos 3"),
     "d_k = D // num_heads"),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied (10x12 and 20x12)"), "is used as x @ w_1"),
    (RuntimeError("view size is not compatible with input tensor's size and stride"), ".reshape(...)"),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied (10x12 and 13x20)"), None),
    (ValueError("my own bug"), None),
])
def test_common_raw_errors_are_translated_into_what_to_change(error, words):
    said = translate(error)
    assert said is None if words is None else words in said


def test_raw_errors_from_real_code_are_translated():
    x, w_1 = torch.randn(2, 5, 12), torch.randn(12, 20)
    with pytest.raises(RuntimeError) as info:
        torch.nn.functional.linear(x, w_1)                     # the paper's (D, d_ff) weight in F.linear
    assert "x @ w_1" in translate(info.value)
    with pytest.raises(TypeError) as info:
        x.view(2, 5, 3, 12 / 3)                                 # a float size
    assert "//" in translate(info.value)
