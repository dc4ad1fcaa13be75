"""Lesson 01's exercise checks accept correct functions in several styles and name each typical mistake."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transformer_lib.checks import (CheckFailed, check_cosine_similarity, check_one_hot_lookup,
                                    check_scaled_embedding)


# ---------------------------------------------------------------- one_hot_lookup
@pytest.mark.parametrize("other", [
    lambda ids, w: torch.eye(w.shape[0], dtype=w.dtype)[ids] @ w,      # one-hot rows of the identity
    lambda ids, w: w[ids],                                              # the fast lookup, same values
    lambda ids, w: torch.einsum("...v,vd->...d", F.one_hot(ids, w.shape[0]).to(w.dtype), w),
    lambda ids, w: torch.from_numpy(np.eye(w.shape[0], dtype=np.float32)[ids.numpy()] @ w.numpy()),  # NumPy inside
])
def test_one_hot_lookup_accepts_other_correct_versions(other):
    assert check_one_hot_lookup(other) is other


@pytest.mark.parametrize("wrong, words", [
    (lambda ids, w: F.one_hot(ids).float() @ w, "without num_classes"),
    (lambda ids, w: F.one_hot(ids, w.shape[1]).float() @ w, "one entry per token of the vocabulary"),
    (lambda ids, w: w @ F.one_hot(ids, w.shape[0]).float(), "wrong order"),
    (lambda ids, w: F.one_hot(ids, w.shape[0]) @ w, r"\.float\(\)"),
    (lambda ids, w: F.one_hot(ids, w.shape[0] - 1).float() @ w, "num_classes is one too small"),  # the last id is used
    (lambda ids, w: F.one_hot(ids, w.shape[0]).float() @ w.T, r"columns of the table"),
    (lambda ids, w: F.one_hot(ids, w.shape[0]).float(), "one-hot vectors themselves"),
    (lambda ids, w: w[ids] * math.sqrt(w.shape[1]), "that comes later"),
    (lambda ids, w: F.one_hot(ids.reshape(-1), w.shape[0]).float() @ w if ids.dim() > 1 else w[ids],
     r"should have shape \(2, 5, 6\), got \(10, 6\)"),
    (lambda ids, w: w[ids] + 0.1, r"the first wrong entry is \[0, 0\]"),
    (lambda ids, w: (F.one_hot(ids, w.shape[0]).float() @ w).numpy(), "got a NumPy array"),
])
def test_one_hot_lookup_rejects_typical_mistakes(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_one_hot_lookup(wrong)


def test_an_error_in_the_learners_code_is_reported_with_its_case():
    with pytest.raises(CheckFailed, match=r"raised ZeroDivisionError on ids of shape \(5,\)"):
        check_one_hot_lookup(lambda ids, w: 1 / 0)


# ---------------------------------------------------------------- scaled_embedding
@pytest.mark.parametrize("other", [
    lambda ids, w: F.embedding(ids, w * w.shape[-1] ** 0.5),          # scale the table first (a new tensor)
    lambda ids, w: torch.index_select(w, 0, ids.reshape(-1)).reshape(*ids.shape, -1) * math.sqrt(w.shape[1]),
    lambda ids, w: (w.double()[ids] * math.sqrt(w.shape[1])),           # float64: the values count
])
def test_scaled_embedding_accepts_other_correct_versions(other):
    assert check_scaled_embedding(other) is other


def scales_the_table_in_place(ids, w):
    w *= math.sqrt(w.shape[1])                 # corrupts the caller's embedding table, more with every call
    return w[ids]


@pytest.mark.parametrize("wrong, words", [
    (lambda ids, w: w[ids], "not scaled"),
    (lambda ids, w: w[ids] * w.shape[1], "multiplied by d_model=6, not by its square root"),
    (lambda ids, w: w[ids] / math.sqrt(w.shape[1]), "divided by sqrt"),
    (lambda ids, w: w[ids] * math.sqrt(w.shape[0]), "vocabulary size V=11"),
    (lambda ids, w: (w * math.sqrt(w.shape[1])).T, "should have shape"),
    (lambda ids, w: w[ids] * 2.0, "first wrong entry"),
    (lambda ids, w: w[ids] * math.sqrt(ids.shape[-1]), r"number of ids \(ids\.shape\[-1\] = 5\)"),
    (lambda ids, w: None, "forget the `return` statement"),
    (scales_the_table_in_place, r"changed its argument `weight` in place on ids of shape \(2, 5\)"),
])
def test_scaled_embedding_rejects_typical_mistakes(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_scaled_embedding(wrong)


# ---------------------------------------------------------------- cosine_similarity
def _unit(x, dim=-1):
    return x / x.norm(dim=dim, keepdim=True)


@pytest.mark.parametrize("other", [
    lambda a, b: F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1),
    lambda a, b: (a @ b.T) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1)),      # cosine via the norms
    lambda a, b: (a @ b.T) / torch.outer(a.norm(dim=-1), b.norm(dim=-1)),
    lambda a, b: F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T,
    lambda a, b: torch.einsum("nd,md->nm", _unit(a.double()), _unit(b.double())),   # float64
])
def test_cosine_similarity_accepts_other_correct_versions(other):
    assert check_cosine_similarity(other) is other


def only_when_shapes_differ(wrong):
    """Right on the square first case, wrong on the others."""
    return lambda a, b: wrong(a, b) if a.shape[0] != b.shape[0] else _unit(a) @ _unit(b).T


@pytest.mark.parametrize("wrong, words", [
    (lambda a, b: a @ b.T, "plain dot product"),
    (lambda a, b: _unit(a) @ b.T, "only a is normalised"),
    (lambda a, b: a @ _unit(b).T, "only b is normalised"),
    (lambda a, b: _unit(a, 0) @ _unit(b, 0).T, "wrong axis"),
    (lambda a, b: (a / a.norm(dim=-1, keepdim=True) ** 2) @ (b / b.norm(dim=-1, keepdim=True) ** 2).T, "squared lengths"),
    (lambda a, b: _unit(b) @ _unit(a).T, "the result is transposed"),                # square case: by value
    (only_when_shapes_differ(lambda a, b: _unit(b) @ _unit(a).T), r"should have shape \(5, 7\), got \(7, 5\)"),
    (lambda a, b: F.cosine_similarity(a, b, dim=-1), r"got \(4,\): F.cosine_similarity\(a, b\) compares a\[n\] with b\[n\] only"),
    (only_when_shapes_differ(lambda a, b: F.cosine_similarity(a, b, dim=-1)),
     r"raised RuntimeError .*\n   Hint: F.cosine_similarity\(a, b\) compares a\[n\] with b\[n\] only"),
    (lambda a, b: (_unit(a) @ _unit(b).T).clamp(min=0), "first wrong entry"),
    (lambda a, b: (a / a.norm(dim=-1)) @ (b / b.norm(dim=-1)).T, "without keepdim=True"),
    (only_when_shapes_differ(lambda a, b: (a / a.norm(dim=-1)) @ (b / b.norm(dim=-1)).T), "without keepdim=True"),
    (lambda a, b: (a @ b.T) / (a.norm() * b.norm()), "lengths of the whole matrices"),
    (lambda a, b: (a @ b.T) / (a.norm(dim=-1) * b.norm(dim=-1)), "element-wise product of the N lengths of a"),
    (lambda a, b: (a @ b.T) / (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, keepdim=True)),
     r"divides row n by \|a_n\| \|b_n\|"),
])
def test_cosine_similarity_rejects_typical_mistakes(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_cosine_similarity(wrong)


def norm_product_when_shapes_differ(a, b):
    if a.shape[0] == b.shape[0]:
        return _unit(a) @ _unit(b).T
    return (a @ b.T) / (a.norm(dim=-1) * b.norm(dim=-1))


def test_the_product_of_length_vectors_is_told_from_f_cosine_similarity_by_the_learners_line():
    """Both raise the same error when N != M; the learner's own line tells them apart."""
    with pytest.raises(CheckFailed, match="element-wise product of the N lengths"):
        check_cosine_similarity(norm_product_when_shapes_differ)
