"""The exercise-check machinery, shown on lesson 00's warm-up exercise."""
from __future__ import annotations

import json

import pytest
import torch

from transformer_lib.checks import CheckFailed, check_normalize_rows
from transformer_lib.checks._core import PROGRESS_ENV
from transformer_lib.checks.start_here import normalize_rows


def test_correct_function_passes_and_is_returned(capsys):
    mine = lambda x: x / x.sum(-1).unsqueeze(-1)  # another correct way
    assert check_normalize_rows(mine) is mine
    assert "✅ normalize_rows is correct" in capsys.readouterr().out


def test_not_implemented_prints_friendly_message_and_returns_reference(capsys):
    def todo(x):
        raise NotImplementedError()
    assert check_normalize_rows(todo) is normalize_rows
    out = capsys.readouterr().out
    assert "not implemented yet" in out and "transformer_lib.checks.start_here.normalize_rows" in out


@pytest.mark.parametrize("wrong, words", [
    (lambda x: x / x.sum(dim=-2, keepdim=True), "column"),
    (lambda x: x / x.sum(), "whole tensor"),
    (lambda x: x / x.amax(dim=-1, keepdim=True), "largest value"),
    (lambda x: x * 0.5, "largest difference"),
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
        raise NotImplementedError
    check_normalize_rows(todo)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["status"] for r in rows] == ["pass", "fail", "todo"]
    assert rows[1]["check"] == "normalize_rows" and "wrong" in rows[1]["message"]
