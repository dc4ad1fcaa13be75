"""Checks for lesson 01's exercises: one-hot lookup, scaled embedding, cosine similarity."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..embeddings import cosine_similarity, one_hot_lookup, scaled_embedding
from ._core import call, call_diagnosing, exercise, expect_close, expect_result, fail, learner_source, raises_same

__all__ = ["check_one_hot_lookup", "check_scaled_embedding", "check_cosine_similarity"]


def _ids(g: torch.Generator, shape: tuple[int, ...], V: int) -> torch.Tensor:
    """Random ids in [0, V) that include the first (0) and the last (V - 1) id of the vocabulary."""
    ids = torch.randint(0, V, shape, generator=g)
    ids.view(-1)[0], ids.view(-1)[-1] = 0, V - 1
    return ids


# ---------------------------------------------------------------- one_hot_lookup
@exercise(reference=one_hot_lookup)
def check_one_hot_lookup(fn):
    g = torch.Generator().manual_seed(1)
    # (ids, V, D): a square table first (so a transposed table gives a wrong value, not an error),
    # then ids that miss the largest id (so F.one_hot without num_classes gives too short vectors)
    cases = [(_ids(g, (5,), 7), 7, 7), (torch.randint(0, 8, (2, 5), generator=g), 11, 6),
             (torch.tensor([[3, 0, 3]]), 4, 9)]
    for ids, V, D in cases:
        weight = torch.randn(V, D, generator=g)
        case = f"ids of shape {tuple(ids.shape)} (largest {int(ids.max())}) and weight of shape ({V}, {D})"
        got = call_diagnosing(fn, ids, weight, case=case, raising={
            "F.one_hot(ids) without num_classes makes vectors only max(ids) + 1 long; "
            "pass num_classes=weight.shape[0] (the vocabulary size V)":
                lambda i, w: F.one_hot(i).float() @ w,
            "the one-hot vectors have d_model entries; they need one entry per token of the "
            "vocabulary: num_classes=weight.shape[0]":
                lambda i, w: F.one_hot(i, w.shape[1]).float() @ w,
            "the product is in the wrong order: one_hot (..., V) @ weight (V, D)":
                lambda i, w: w @ F.one_hot(i, w.shape[0]).float(),
            "F.one_hot returns integers (int64); convert it with .float() (or .to(weight.dtype)) "
            "before multiplying":
                lambda i, w: F.one_hot(i, w.shape[0]) @ w,
            "num_classes is one too small: ids run from 0 to V - 1, so num_classes=weight.shape[0]":
                lambda i, w: F.one_hot(i, w.shape[0] - 1).float() @ w,
        })
        expect_result(got, f"one_hot_lookup for {case}")
        one_hot = F.one_hot(ids, V).float()                                 # (..., V)
        mistakes = {
            "it scales the vectors by sqrt(d_model): that comes later (TokenEmbedding), here "
            "return the plain rows": weight[ids] * math.sqrt(D),
        }
        if V == D:                                                          # same shape, wrong values
            mistakes["it picks columns of the table (one_hot @ weight.T): row i of weight is token i's "
                     "vector, multiply one_hot @ weight"] = one_hot @ weight.T
            mistakes["it returns the one-hot vectors themselves: multiply them by weight"] = one_hot
        expect_close(got, weight[ids], f"one_hot_lookup for {case}", mistakes=mistakes)
    return len(cases)


# ---------------------------------------------------------------- scaled_embedding
@exercise(reference=scaled_embedding)
def check_scaled_embedding(fn):
    g = torch.Generator().manual_seed(2)
    cases = [(_ids(g, (2, 5), 11), 11, 6), (_ids(g, (1, 3), 5), 5, 16), (_ids(g, (7,), 3), 3, 12)]
    for ids, V, D in cases:
        weight = torch.randn(V, D, generator=g) / math.sqrt(D)
        rows = weight[ids]
        case = f"ids of shape {tuple(ids.shape)} and weight of shape ({V}, {D})"
        got = call(fn, ids, weight, case=case)
        expect_result(got, f"scaled_embedding for {case}")
        expect_close(got, rows * math.sqrt(D), f"scaled_embedding for {case}", mistakes={
            "the vectors are not scaled: multiply the looked-up rows by math.sqrt(d_model)": rows,
            f"the vectors are multiplied by d_model={D}, not by its square root": rows * D,
            "the vectors are divided by sqrt(d_model): multiply instead": rows / math.sqrt(D),
            f"the scale uses the vocabulary size V={V}; use d_model = weight.shape[1] = {D}": rows * math.sqrt(V),
            f"the scale uses the number of ids (ids.shape[-1] = {ids.shape[-1]}); use d_model = weight.shape[1] "
            f"= {D}": rows * math.sqrt(ids.shape[-1]),
        })
    return len(cases)


# ---------------------------------------------------------------- cosine_similarity
_F_COSINE = ("F.cosine_similarity(a, b) compares a[n] with b[n] only, row by row; here every row of a is "
             "compared with every row of b: divide each row by its length, then a_unit @ b_unit.T")
_NORM_PRODUCT = ("it divides by a.norm(dim=-1) * b.norm(dim=-1), an element-wise product of the N lengths of a "
                 "and the M lengths of b (it only runs when N == M, and then divides column m by |a_m| |b_m|). "
                 "Divide by the outer product of the lengths: a.norm(dim=-1, keepdim=True) * b.norm(dim=-1), "
                 "(N, 1) times (M,) gives (N, M)")


def _explain_cosine_error(a, b):
    """F.cosine_similarity(a, b) and a product of the two length vectors raise the same error when
    N != M: tell them apart by the learner's line."""
    def explain(error):
        if not raises_same(lambda a, b: F.cosine_similarity(a, b, dim=-1), (a, b), {}, error):
            return None
        line = learner_source(error)
        return _NORM_PRODUCT if ".norm(" in line and "cosine_similarity" not in line else _F_COSINE
    return explain


@exercise(reference=cosine_similarity)
def check_cosine_similarity(fn):
    g = torch.Generator().manual_seed(3)
    # (N, M, D): a square case first, so that a transposed result, the wrong norm axis or a product of
    # the two length vectors keep their shape and are named from their values
    cases = [(4, 4, 4), (5, 7, 3), (1, 6, 5)]
    for N, M, D in cases:
        a = torch.randn(N, D, generator=g) * 3
        b = torch.randn(M, D, generator=g) + 0.5
        a[0] = 2.5 * b[-1]                                  # one pair with cosine exactly 1
        case = f"a of shape ({N}, {D}) and b of shape ({M}, {D})"
        got = call_diagnosing(fn, a, b, case=case, explain=_explain_cosine_error(a, b), raising={
            "a.norm(dim=-1) without keepdim=True has shape (N,), which does not line up with the rows of "
            "a (N, D): use a.norm(dim=-1, keepdim=True)":
                lambda a, b: (a / a.norm(dim=-1)) @ (b / b.norm(dim=-1)).T,
        })
        expect_result(got, f"cosine_similarity for {case}")
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (M, N) and N != M:
            fail(f"cosine_similarity for {case} should have shape ({N}, {M}), got ({M}, {N}): the result is "
                 f"transposed. Row n compares a[n] with every row of b: a_unit @ b_unit.T, not b_unit @ a_unit.T")
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (N,) and N == M:
            fail(f"cosine_similarity for {case} should have shape ({N}, {M}), got ({N},): {_F_COSINE}")
        expected = cosine_similarity(a, b)
        a_len, b_len = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
        mistakes = {
            "it is the plain dot product a @ b.T: divide by the lengths |a_n| |b_m| too": a @ b.T,
            "only a is normalised: divide b's rows by their length as well": (a / a_len) @ b.T,
            "only b is normalised: divide a's rows by their length as well": a @ (b / b_len).T,
            "the lengths are taken over the wrong axis (each column, dim=0): a vector's length is "
            "over its features, norm(dim=-1, keepdim=True)":
                (a / a.norm(dim=0, keepdim=True)) @ (b / b.norm(dim=0, keepdim=True)).T,
            "it divides by the squared lengths: use the norms |a_n| = sqrt(sum of squares)":
                (a / a_len ** 2) @ (b / b_len ** 2).T,
            "it divides by the lengths of the whole matrices (a.norm() without dim): divide every row by "
            "its own length, a.norm(dim=-1, keepdim=True)": (a @ b.T) / (a.norm() * b.norm()),
            "the result is transposed: row n should compare a[n] with every row of b, (N, M)":
                ((a / a_len) @ (b / b_len).T).T,
        }
        if N == M == D:                                      # a (N, D) / a.norm(dim=-1) (N,) runs here
            mistakes["a.norm(dim=-1) without keepdim=True has shape (N,): a / a.norm(dim=-1) then divides each "
                     "*column* of a instead of each row (it runs only because N == D here): use "
                     "a.norm(dim=-1, keepdim=True)"] = (a / a.norm(dim=-1)) @ (b / b.norm(dim=-1)).T
        if N == M:
            mistakes[_NORM_PRODUCT] = (a @ b.T) / (a.norm(dim=-1) * b.norm(dim=-1))
            mistakes["it divides row n by |a_n| |b_n| (a.norm(dim=-1, keepdim=True) * b.norm(dim=-1, "
                     "keepdim=True)): entry (n, m) needs |a_n| |b_m|, a.norm(dim=-1, keepdim=True) * "
                     "b.norm(dim=-1)"] = (a @ b.T) / (a_len * b_len)
        expect_close(got, expected, f"cosine_similarity for {case}", atol=1e-5, mistakes=mistakes)
        if got.abs().max() > 1 + 1e-4:
            fail(f"cosine similarities must lie in [-1, 1], got {got.abs().max().item():.3g} on {case}")
    return len(cases)
