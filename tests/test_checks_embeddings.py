"""Lesson 01's exercise checks accept correct functions and name each typical mistake."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_lib.checks import (CheckFailed, check_cosine_similarity, check_one_hot_lookup,
                                    check_scaled_embedding)
from transformer_lib.embeddings import cosine_similarity, one_hot_lookup, scaled_embedding

CHECKS = [(check_one_hot_lookup, one_hot_lookup), (check_scaled_embedding, scaled_embedding),
          (check_cosine_similarity, cosine_similarity)]


def todo(*args):
    raise NotImplementedError()


@pytest.mark.parametrize("check, reference", CHECKS, ids=lambda c: getattr(c, "__name__", ""))
def test_reference_passes_and_is_returned(check, reference, capsys):
    assert check(reference) is reference
    assert "is correct on all 3 test cases" in capsys.readouterr().out


@pytest.mark.parametrize("check, reference", CHECKS, ids=lambda c: getattr(c, "__name__", ""))
def test_not_implemented_returns_the_reference(check, reference, capsys):
    assert check(todo) is reference
    out = capsys.readouterr().out
    assert "not implemented yet" in out and f"transformer_lib.embeddings.{reference.__name__}" in out


@pytest.mark.parametrize("other", [
    lambda ids, w: torch.eye(w.shape[0], dtype=w.dtype)[ids] @ w,      # one-hot rows of the identity
    lambda ids, w: w[ids],                                              # the fast lookup, same values
    lambda ids, w: torch.einsum("...v,vd->...d", F.one_hot(ids, w.shape[0]).to(w.dtype), w),
])
def test_one_hot_lookup_accepts_other_correct_versions(other):
    assert check_one_hot_lookup(other) is other


@pytest.mark.parametrize("wrong, words", [
    (lambda ids, w: F.one_hot(ids).float() @ w, "without num_classes"),
    (lambda ids, w: F.one_hot(ids, w.shape[1]).float() @ w, "one entry per token of the vocabulary"),
    (lambda ids, w: w @ F.one_hot(ids, w.shape[0]).float(), "wrong order"),
    (lambda ids, w: F.one_hot(ids, w.shape[0]) @ w, r"\.float\(\)"),
    (lambda ids, w: F.one_hot(ids, w.shape[0]).float() @ w.T, r"columns of the table"),
    (lambda ids, w: F.one_hot(ids, w.shape[0]).float(), "one-hot vectors themselves"),
    (lambda ids, w: w[ids] * math.sqrt(w.shape[1]), "that comes later"),
    (lambda ids, w: F.one_hot(ids.reshape(-1), w.shape[0]).float() @ w, r"should have shape \(2, 5, 6\), got \(10, 6\)"),
    (lambda ids, w: w[ids] + 0.1, "largest difference"),
    (lambda ids, w: (F.one_hot(ids, w.shape[0]).float() @ w).numpy(), "got a NumPy array"),
])
def test_one_hot_lookup_rejects_typical_mistakes(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_one_hot_lookup(wrong)


def test_scaled_embedding_accepts_another_correct_version():
    other = lambda ids, w: F.embedding(ids, w * w.shape[-1] ** 0.5)  # noqa: E731 - scale the table first
    assert check_scaled_embedding(other) is other


@pytest.mark.parametrize("wrong, words", [
    (lambda ids, w: w[ids], "not scaled"),
    (lambda ids, w: w[ids] * w.shape[1], "multiplied by d_model=6, not by its square root"),
    (lambda ids, w: w[ids] / math.sqrt(w.shape[1]), "divided by sqrt"),
    (lambda ids, w: w[ids] * math.sqrt(w.shape[0]), "vocabulary size V=11"),
    (lambda ids, w: (w * math.sqrt(w.shape[1])).T, "should have shape"),
    (lambda ids, w: w[ids] * 2.0, "largest difference"),
    (lambda ids, w: w[ids] * math.sqrt(ids.shape[-1]), r"number of ids \(ids\.shape\[-1\] = 5\)"),
    (lambda ids, w: None, "forget the `return` statement"),
])
def test_scaled_embedding_rejects_typical_mistakes(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_scaled_embedding(wrong)


def test_cosine_similarity_accepts_another_correct_version():
    other = lambda a, b: F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)  # noqa: E731
    assert check_cosine_similarity(other) is other


def _unit(x, dim=-1):
    return x / x.norm(dim=dim, keepdim=True)


@pytest.mark.parametrize("wrong, words", [
    (lambda a, b: a @ b.T, "plain dot product"),
    (lambda a, b: _unit(a) @ b.T, "only a is normalised"),
    (lambda a, b: a @ _unit(b).T, "only b is normalised"),
    (lambda a, b: _unit(a, 0) @ _unit(b, 0).T, "wrong axis"),
    (lambda a, b: (a / a.norm(dim=-1, keepdim=True) ** 2) @ (b / b.norm(dim=-1, keepdim=True) ** 2).T, "squared lengths"),
    (lambda a, b: _unit(b) @ _unit(a).T, r"should have shape \(5, 7\), got \(7, 5\)"),
    (lambda a, b: F.cosine_similarity(a, b[: a.shape[0]], dim=-1), r"should have shape \(5, 7\), got \(5,\)"),
    (lambda a, b: (_unit(a) @ _unit(b).T).clamp(min=0), "largest difference"),
    (lambda a, b: F.cosine_similarity(a, b, dim=-1), r"compares a\[n\] with b\[n\] only"),
    (lambda a, b: (a / a.norm(dim=-1)) @ (b / b.norm(dim=-1)).T, "without keepdim=True"),
    (lambda a, b: (a @ b.T) / (a.norm() * b.norm()), "lengths of the whole matrices"),
    (lambda a, b: (_unit(b) @ _unit(a).T), "the result is transposed"),
])
def test_cosine_similarity_rejects_typical_mistakes(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_cosine_similarity(wrong)


def test_a_transposed_cosine_matrix_is_named_on_the_square_case():
    # the first case fails on shape; the diagnosis by value is reached when the first case is square
    transposed = lambda a, b: (_unit(a) @ _unit(b).T).T if a.shape[0] == b.shape[0] else _unit(a) @ _unit(b).T  # noqa: E731
    with pytest.raises(CheckFailed, match="result is transposed"):
        check_cosine_similarity(transposed)


def test_an_error_in_the_learners_code_is_reported_with_its_case():
    with pytest.raises(CheckFailed, match=r"raised ZeroDivisionError on ids of shape \(5,\)"):
        check_one_hot_lookup(lambda ids, w: 1 / 0)
