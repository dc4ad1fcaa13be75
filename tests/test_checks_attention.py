"""Lesson 03's checks accept any correct implementation and name each typical mistake."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from transformer_lib import attention, masks
from transformer_lib.checks import (CheckFailed, check_attention_scores, check_padding_mask,
                                    check_scaled_dot_product_attention, check_softmax)
from transformer_lib.checks.attention import attention_with_mistake


# ---------------------------------------------------------------------------- scores


@pytest.mark.parametrize("fn", [
    attention.attention_scores,
    lambda q, k: torch.einsum("...td,...sd->...ts", q, k) / q.shape[-1] ** 0.5,
    lambda q, k: (q / math.sqrt(q.size(-1))) @ k.mT,
    lambda q, k: (q.double() @ k.double().transpose(-2, -1) / math.sqrt(q.shape[-1])).float(),   # float64 inside
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
    (lambda q, k: q.div_(math.sqrt(q.shape[-1])) @ k.transpose(-2, -1), r"changed its argument `q` in place"),
])
def test_scores_reject_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_attention_scores(wrong)


def test_scores_missing_transpose_is_named_where_the_shapes_allow_it():
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
    lambda x: (lambda e: e / e.sum(-1, keepdim=True))(torch.exp(x - x.max(dim=-1, keepdim=True).values)),
    lambda x: torch.softmax(x.double(), dim=-1),                                # float64 result: fine
])
def test_softmax_accepts_correct_versions(fn):
    assert check_softmax(fn) is fn


def naive_softmax(x):
    return torch.exp(x) / torch.exp(x).sum(dim=-1, keepdim=True)


def global_max_softmax(x):
    e = torch.exp(x - x.max())
    return e / e.sum(dim=-1, keepdim=True)


def min_shifted_softmax(x):
    e = torch.exp(x - x.amin(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def mean_shifted_softmax(x):
    e = torch.exp(x - x.mean(dim=-1, keepdim=True))
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
    (in_place_softmax, r"changed its argument `x` in place on scores of shape \(2, 3, 5, 7\)"),
    (min_shifted_softmax, r"row \[0, -100, -100\] .* contains NaN or inf: it subtracts each row's \*minimum\*"),
    (mean_shifted_softmax, r"finfo.min.* contains NaN or inf: it subtracts each row's \*mean\*"),
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


def attention_with(**mistake):
    """A learner-style attention with one mistake, built from the check's own simulator of the typical
    mistakes (attention_with_mistake), so tests and diagnoses share one definition."""
    return lambda q, k, v, mask=None: attention_with_mistake(q, k, v, mask, **mistake)


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


def float64_inside(q, k, v, mask=None):
    """Correct: computes in float64 and returns the inputs' dtype."""
    out, weights = attention.scaled_dot_product_attention(q.double(), k.double(), v.double(), mask)
    return out.to(q.dtype), weights.to(q.dtype)


def inverts_the_callers_mask(q, k, v, mask=None):
    """Right results, but the caller's mask is inverted in place."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        blocked = mask.logical_not_()
        scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1).masked_fill(blocked, 0.0)
    else:
        weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


def minus_inf_then_nan_to_num(q, k, v, mask=None):
    """Correct: -inf fill, then the NaN of a fully masked row replaced by 0."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ v, weights


@pytest.mark.parametrize("fn", [attention.scaled_dot_product_attention, fused_plus_recomputed_weights,
                                loop_over_queries, minus_inf_then_nan_to_num,
                                attention_with(fill="-inf"),    # -inf, then the blocked weights set to 0: also right
                                float64_inside])
def test_attention_accepts_correct_versions(fn, capsys):
    assert check_scaled_dot_product_attention(fn) is fn
    assert "✅ scaled_dot_product_attention is correct on all 7 test cases" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (attention_with(divisor=1.0), "not scaled"),
    (attention_with(divisor=lambda q: q.shape[-1]), r"divided by d_k = 4 instead of √d_k = 2"),
    (attention_with(divisor=lambda q: math.sqrt(q.shape[-2])), r"wrong length: √T"),
    (attention_with(divisor=math.sqrt(7)), r"wrong length: √S"),
    (attention_with(divisor=lambda q: math.sqrt(q.shape[1])), r"softmax\(q k\^T / 1\.73\).*check your scaling"),
    (attention_with(after_softmax="weights"), "scaling comes after the softmax"),
    (attention_with(after_softmax="output"), "scaling comes after the softmax"),
    (attention_with(dim=-2), "softmax is over the wrong axis.*dim=-2"),
    (attention_with(dim=1), "softmax is over the wrong axis"),
    (attention_with(mask_mode="ignore"), "mask is ignored"),
    (attention_with(mask_mode="invert"), "mask is inverted"),
    (attention_with(mask_mode="invert", fill=-1e9, zero_masked=False), "mask is inverted"),
    (attention_with(fill="-inf", zero_masked=False), "NaN in the query whose keys are all masked"),
    (attention_with(fill=-1e9, zero_masked=False), "uniform weights 1/S"),
    (attention_with(zero_masked=False), "uniform weights 1/S"),
    (attention_with(fill=-1e9), "-1e9 does not fit in float16"),
    (attention_with(mask_mode="multiply"), "multiplied by the mask"),
    (attention_with(mask_mode="multiply", zero_masked=False), "multiplied by the mask"),
    (attention_with(mask_mode="after"), "mask is applied after the softmax"),
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
    (inverts_the_callers_mask, r"inverted its argument `mask` in place on q \(2, 3, 5, 4\), k \(2, 3, 7, 4\), v \(2, 3, 7, 6\) with a padding mask"),
])
def test_attention_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_scaled_dot_product_attention(wrong)


def test_attention_missing_transpose_is_named_where_the_shapes_allow_it():
    def transpose_only_when_needed(q, k, v, mask=None):
        if k.shape[-2] == k.shape[-1]:
            return attention_with(transpose_k=False)(q, k, v, mask)
        return attention.scaled_dot_product_attention(q, k, v, mask)
    with pytest.raises(CheckFailed, match=r"k is not transposed \(q @ k\)"):
        check_scaled_dot_product_attention(transpose_only_when_needed)


# ---------------------------------------------------------------------------- the padding mask


@pytest.mark.parametrize("fn", [
    masks.padding_mask,
    lambda ids, pad_id: (ids != pad_id).unsqueeze(1).unsqueeze(2),
    lambda ids, pad_id: torch.ne(ids, pad_id).view(ids.shape[0], 1, 1, ids.shape[1]),
    lambda ids, pad_id: ~(ids == pad_id)[:, None, None],
    lambda ids, pad_id: torch.where(ids == pad_id, False, True).reshape(ids.shape[0], 1, 1, -1),
    lambda ids, pad_id: (ids - pad_id).bool()[:, None, None, :],
])
def test_padding_mask_accepts_correct_versions(fn, capsys):
    assert check_padding_mask(fn) is fn
    assert "✅ padding_mask is correct on all 6 test cases" in capsys.readouterr().out


def keys(mask):
    return mask[:, None, None, :]


@pytest.mark.parametrize("wrong, words", [
    (lambda ids, pad_id: keys(ids == pad_id), r"True at the padding: it compares ids == pad_id"),
    (lambda ids, pad_id: keys(ids != 0), r"compares with 0 \(ids != 0 or ids > 0\), not with pad_id = 3"),
    (lambda ids, pad_id: keys(ids > 0), r"compares with 0 \(ids != 0 or ids > 0\), not with pad_id = 3"),
    (lambda ids, pad_id: keys(torch.arange(ids.shape[1]) < (ids != pad_id).sum(1, keepdim=True)),
     r"assumes the padding is always at the end"),
    (lambda ids, pad_id: torch.ones(ids.shape[0], 1, 1, ids.shape[1], dtype=torch.bool),
     r"marks every key True: the padding is not hidden"),
    (lambda ids, pad_id: keys(ids != pad_id).float(), r"dtype torch.float32: a float 0/1 mask is not a bool mask"),
    (lambda ids, pad_id: keys(torch.zeros(ids.shape).masked_fill(ids == pad_id, float("-inf"))),
     r"an \*additive\* float mask \(0 = may attend, -inf = blocked\)"),
    (lambda ids, pad_id: keys(torch.zeros(ids.shape).masked_fill(ids == pad_id, -1e9)),
     r"an \*additive\* float mask \(0 = may attend, -1e\+09 = blocked\)"),
    (lambda ids, pad_id: keys(ids != pad_id).long(), r"dtype torch.int64: an integer mask is not a bool mask"),
    (lambda ids, pad_id: keys(ids != pad_id).to(torch.uint8), r"dtype torch.uint8: an integer mask"),
    (lambda ids, pad_id: ids != pad_id, r"should have shape \(2, 1, 1, 7\), got \(2, 7\): the \(B, S\) comparison "
     r"lacks the head and query axes. .*line up with \(T, S\) of the scores, and it does not broadcast at all"),
    (lambda ids, pad_id: (ids != pad_id)[:, None, :, None], r"got \(2, 1, 7, 1\): the keys lie on the query axis"),
    (lambda ids, pad_id: (ids != pad_id)[:, None, :], r"got \(2, 1, 7\): one axis is missing.*line up with \(H, T, S\)"),
    (lambda ids, pad_id: (ids != pad_id)[:, :, None, None], r"got \(2, 7, 1, 1\): the keys lie on the head axis"),
    (lambda ids, pad_id: (ids != pad_id)[None, None], r"got \(1, 1, 2, 7\): Against scores .* does not broadcast at all"),
    (lambda ids, pad_id: keys(ids[:1] != pad_id), r"got \(1, 1, 1, 7\): Against scores .* broadcasts, but to the wrong places"),
    (lambda ids, pad_id: keys(torch.tensor((ids != pad_id).tolist())), r"'meta' device, a stand-in for a GPU"),
    (lambda ids, pad_id: keys(torch.zeros(ids.shape, dtype=torch.bool).logical_or(ids != pad_id)),
     r"'meta' device, a stand-in for a GPU"),
    (lambda ids, pad_id: keys(torch.stack([torch.tensor([t != pad_id for t in row.tolist()]) for row in ids])),
     r"'meta' device"),
    (lambda ids, pad_id: None, r"forget the `return` statement"),
    (lambda ids, pad_id: keys(ids != pad_id).numpy(), r"got a NumPy array"),
    (lambda ids: keys(ids != 0), r"keep the exercise's signature, padding_mask\(ids, pad_id\)"),
])
def test_padding_mask_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_padding_mask(wrong)


def test_padding_mask_that_leaves_the_device_is_named():
    """A mask built right, then moved to the CPU: on a GPU the mask would not meet the scores."""
    def on_cpu(ids, pad_id):
        mask = keys(ids != pad_id)
        return mask if ids.device.type != "meta" else torch.ones(mask.shape, dtype=torch.bool)
    with pytest.raises(CheckFailed, match=r"is on device cpu, but should be on meta: the mask must live where ids lives"):
        check_padding_mask(on_cpu)
