"""Lesson 03's checks accept any correct implementation and name each typical mistake."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_lib import attention
from transformer_lib.checks import (CheckFailed, check_attention_scores, check_scaled_dot_product_attention,
                                    check_softmax)


def todo(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("check, reference", [(check_attention_scores, attention.attention_scores),
                                              (check_softmax, attention.softmax),
                                              (check_scaled_dot_product_attention, attention.scaled_dot_product_attention)])
def test_not_implemented_returns_the_reference(check, reference, capsys):
    assert check(todo) is reference
    assert "is not implemented yet" in capsys.readouterr().out


# ---------------------------------------------------------------------------- scores


@pytest.mark.parametrize("fn", [
    attention.attention_scores,
    lambda q, k: torch.einsum("...td,...sd->...ts", q, k) / q.shape[-1] ** 0.5,
    lambda q, k: (q / math.sqrt(q.size(-1))) @ k.mT,
])
def test_scores_accept_correct_versions(fn, capsys):
    assert check_attention_scores(fn) is fn
    assert "✅ attention_scores is correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda q, k: q @ k.transpose(-2, -1), "not scaled"),
    (lambda q, k: q @ k.transpose(-2, -1) / q.shape[-1], r"divided by d_k = 4 instead of √d_k"),
    (lambda q, k: q @ k.transpose(-2, -1) / math.sqrt(q.shape[-2]), r"√T, the number of queries"),
    (lambda q, k: q @ k.transpose(-2, -1) / math.sqrt(k.shape[-2]), r"√S, the number of keys"),
    (lambda q, k: q @ k.transpose(-2, -1) * math.sqrt(q.shape[-1]), "multiplied by √d_k"),
    (lambda q, k: F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1), "cosine"),
    (lambda q, k: q @ k.transpose(-2, -1) / math.sqrt(q.shape[1]), r"divided by 1\.732"),   # the head axis
    (lambda q, k: k @ q.transpose(-2, -1) / math.sqrt(q.shape[-1]), "k q\\^T"),
    (lambda q, k: q @ k / math.sqrt(q.shape[-1]), "transpose k"),                              # raises on (T, d_k) @ (S, d_k)
    pytest.param(lambda q, k: q @ k.T / math.sqrt(q.shape[-1]), "transpose",                  # .T on a 4-D tensor
                 marks=pytest.mark.filterwarnings("ignore:The use of `x.T`")),
    (lambda q, k: q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), r"transpose the wrong axes"),  # wrong pair of axes
    (lambda q, k: None, "forget the `return` statement"),
])
def test_scores_reject_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_attention_scores(wrong)


def test_missing_transpose_is_named_where_the_shapes_allow_it():
    """Where S == d_k, q @ k runs: the check names the mistake from the values."""
    calls = []

    def only_square_cases(q, k):
        calls.append(k.shape)
        if k.shape[-2] != k.shape[-1]:
            return attention.attention_scores(q, k)
        return q @ k / math.sqrt(q.shape[-1])
    with pytest.raises(CheckFailed, match=r"k is not transposed \(q @ k\)"):
        check_attention_scores(only_square_cases)


# ---------------------------------------------------------------------------- softmax


@pytest.mark.parametrize("fn", [
    attention.softmax,
    lambda x: torch.softmax(x, dim=-1),
    lambda x: torch.exp(x - torch.logsumexp(x, dim=-1, keepdim=True)),
])
def test_softmax_accepts_correct_versions(fn):
    assert check_softmax(fn) is fn


def naive_softmax(x):
    return torch.exp(x) / torch.exp(x).sum(dim=-1, keepdim=True)


def global_max_softmax(x):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=-1, keepdim=True)


def in_place_softmax(x):
    x -= x.amax(dim=-1, keepdim=True)
    x.exp_()
    return x / x.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("wrong, words", [
    (lambda x: torch.softmax(x, dim=-2), "wrong axis"),
    (lambda x: torch.exp(x - x.max()) / torch.exp(x - x.max()).sum(), "whole tensor"),
    (lambda x: x / x.sum(dim=-1, keepdim=True), "exp is missing"),
    (lambda x: torch.exp(x - x.amax(dim=-1, keepdim=True)), "not normalised"),
    (lambda x: torch.exp(x) / torch.exp(x).amax(dim=-1, keepdim=True), "not normalised"),
    (lambda x: torch.log_softmax(x, dim=-1), "log_softmax"),
    (naive_softmax, "Subtract each row's maximum"),
    (global_max_softmax, "each row's \\*own\\* maximum"),
    (in_place_softmax, "in place"),
    (lambda x: torch.softmax(x, dim=-1)[..., :-1], "should have shape"),
    (lambda x: torch.softmax(x, dim=0), r"wrong axis \(dim=0\)"),
    (lambda x: torch.softmax(x, dim=1), r"wrong axis \(dim=1\)"),
    (lambda x: torch.exp(x - x.amax(dim=-1)) / torch.exp(x - x.amax(dim=-1)).sum(dim=-1), "without keepdim=True"),
    (lambda x: (lambda e: e / e.sum(dim=-1))(torch.exp(x - x.amax(dim=-1, keepdim=True))), "without keepdim=True"),
    (lambda x: torch.exp(x - x.max(dim=-1, keepdim=True)), r"returns a pair \(values, indices\)"),
])
def test_softmax_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_softmax(wrong)


# ---------------------------------------------------------------------------- scaled dot-product attention


def attention_with(scale=lambda q: math.sqrt(q.shape[-1]), dim=-1, fill="min", zero_blocked=True, invert=False,
                   ignore_mask=False, scale_after=None, transpose_k=True, mask_how="fill"):
    """A learner-style attention with one switchable mistake."""
    def fn(q, k, v, mask=None):
        scores = q @ (k.transpose(-2, -1) if transpose_k else k)
        if scale_after is None:
            scores = scores / scale(q)
        m = None if mask is None or ignore_mask else (~mask if invert else mask)
        if m is not None and mask_how == "fill":
            value = {"min": torch.finfo(scores.dtype).min, "-inf": float("-inf"), "-1e9": -1e9}[fill]
            scores = scores.masked_fill(~m, value)
        elif m is not None and mask_how == "multiply":
            scores = scores * m
        weights = torch.softmax(scores, dim=dim)
        if m is not None and mask_how == "after":
            weights = weights * m
        elif m is not None and zero_blocked:
            weights = weights.masked_fill(~m, 0.0)
        if scale_after == "weights":
            weights = weights / scale(q)
        out = weights @ v
        if scale_after == "output":
            out = out / scale(q)
        return out, weights
    return fn


def fused_plus_recomputed_weights(q, k, v, mask=None):
    """Correct: PyTorch's fused kernel for the output, the weights recomputed with -inf and nan_to_num."""
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = q @ k.mT / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return out, torch.softmax(scores, dim=-1).nan_to_num(0.0)


def loop_over_queries(q, k, v, mask=None):
    """Correct: one query at a time, with Python loops over every batch dimension."""
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    T, S = q.shape[-2], k.shape[-2]
    q, k, v = (x.expand(*batch, *x.shape[-2:]).reshape(-1, *x.shape[-2:]) for x in (q, k, v))
    allowed = (torch.ones(T, S, dtype=torch.bool) if mask is None else mask).expand(*batch, T, S).reshape(-1, T, S)
    out = torch.zeros(q.shape[0], T, v.shape[-1], dtype=q.dtype)
    weights = torch.zeros(q.shape[0], T, S, dtype=q.dtype)
    for b in range(q.shape[0]):
        for t in range(T):
            ok = allowed[b, t]
            if ok.any():
                s = (k[b] @ q[b, t]) / math.sqrt(q.shape[-1])
                e = torch.exp(s - s[ok].max()) * ok
                weights[b, t] = e / e.sum()
                out[b, t] = weights[b, t] @ v[b]
    return out.reshape(*batch, T, -1), weights.reshape(*batch, T, S)


def minus_inf_then_nan_to_num(q, k, v, mask=None):
    """Correct: -inf fill, then the NaN of a fully masked row replaced by 0."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ v, weights


@pytest.mark.parametrize("fn", [attention.scaled_dot_product_attention, fused_plus_recomputed_weights,
                                loop_over_queries, minus_inf_then_nan_to_num,
                                attention_with(fill="-inf")])   # -inf, then the blocked weights set to 0: also right
def test_attention_accepts_correct_versions(fn, capsys):
    assert check_scaled_dot_product_attention(fn) is fn
    assert "✅ scaled_dot_product_attention is correct on all 7 test cases" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (attention_with(scale=lambda q: 1.0), "not scaled"),
    (attention_with(scale=lambda q: q.shape[-1]), r"divided by d_k = 4 instead of √d_k = 2"),
    (attention_with(scale=lambda q: math.sqrt(q.shape[-2])), r"wrong length: √T"),
    (attention_with(scale=lambda q: math.sqrt(7)), r"wrong length: √S"),
    (attention_with(scale=lambda q: math.sqrt(q.shape[1])), r"softmax\(q k\^T / 1\.73\).*check your scaling"),
    (attention_with(scale_after="weights"), "scaling comes after the softmax"),
    (attention_with(scale_after="output"), "scaling comes after the softmax"),
    (attention_with(dim=-2), "softmax is over the wrong axis.*dim=-2"),
    (attention_with(dim=1), "softmax is over the wrong axis"),
    (attention_with(ignore_mask=True), "mask is ignored"),
    (attention_with(invert=True), "mask is inverted"),
    (attention_with(invert=True, fill="-1e9", zero_blocked=False), "mask is inverted"),
    (attention_with(fill="-inf", zero_blocked=False), "NaN in the query whose keys are all masked"),
    (attention_with(fill="-1e9", zero_blocked=False), "uniform weights 1/S"),
    (attention_with(zero_blocked=False), "uniform weights 1/S"),
    (attention_with(fill="-1e9"), "-1e9 does not fit in float16"),
    (attention_with(mask_how="multiply"), "multiplied by the mask"),
    (attention_with(mask_how="multiply", zero_blocked=False), "multiplied by the mask"),
    (attention_with(mask_how="after"), "mask is applied after the softmax"),
    (attention_with(transpose_k=False), "transpose k"),
    (lambda q, k, v, mask=None: attention.scaled_dot_product_attention(q, k, v, mask)[0], "pair"),
    (lambda q, k, v, mask=None: tuple(x.float() for x in attention.scaled_dot_product_attention(q, k, v, mask)),
     "stay float16"),
    (lambda q, k, v, mask=None: (lambda o, w: (2 * o, w))(*attention.scaled_dot_product_attention(q, k, v, mask)),
     "weights are right but the output is wrong"),
    (lambda q, k, v, mask=None: (lambda o, w: (o, w.transpose(-2, -1)))(*attention.scaled_dot_product_attention(q, k, v, mask)),
     "k q\\^T"),
    (lambda q, k, v, mask=None: (lambda o, w: (o, w * 0.5))(*attention.scaled_dot_product_attention(q, k, v, mask)),
     "should sum to 1"),
    (lambda q, k, v, mask=None: attention.scaled_dot_product_attention(q, k, v, mask)[::-1],
     r"returned \(weights, output\): return them in the order \(output, weights\)"),
    (lambda q, k, v, mask=None: None, "forget the `return` statement"),
    (lambda q, k, v: attention.scaled_dot_product_attention(q, k, v), r"keep the exercise's signature"),
    (lambda q, k, v, mask=None: (lambda w: (v.transpose(-2, -1) @ w, w))(attention.scaled_dot_product_attention(q, k, v, mask)[1]),
     r"the output is weights @ v"),
])
def test_attention_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_scaled_dot_product_attention(wrong)


def test_missing_transpose_is_named_where_the_shapes_allow_it():
    def transpose_only_when_needed(q, k, v, mask=None):
        if k.shape[-2] == k.shape[-1]:
            return attention_with(transpose_k=False)(q, k, v, mask)
        return attention.scaled_dot_product_attention(q, k, v, mask)
    with pytest.raises(CheckFailed, match=r"k is not transposed \(q @ k\)"):
        check_scaled_dot_product_attention(transpose_only_when_needed)


def test_the_check_leaves_the_thread_count_and_random_state_alone():
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    check_scaled_dot_product_attention(attention.scaled_dot_product_attention)
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), state)
