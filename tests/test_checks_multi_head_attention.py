"""Lesson 04's checks accept any correct implementation and name each typical mistake."""
from __future__ import annotations

import math

import pytest
import torch

from transformer_lib import multi_head_attention as mha_module
from transformer_lib.attention import scaled_dot_product_attention
from transformer_lib.checks import (CheckFailed, check_merge_heads, check_multi_head_attention_forward,
                                    check_split_heads)


# ---------------------------------------------------------------------------- split_heads


def shape(x, H):
    B, T, D = x.shape
    return B, T, D, D // H


@pytest.mark.parametrize("fn", [
    mha_module.split_heads,
    lambda x, H: x.reshape(x.shape[0], x.shape[1], H, -1).permute(0, 2, 1, 3),
    lambda x, H: torch.stack(x.chunk(H, dim=-1), dim=1),
    lambda x, H: torch.stack([x[..., h * (x.shape[-1] // H):(h + 1) * (x.shape[-1] // H)] for h in range(H)], 1),
])
def test_split_heads_accepts_correct_versions(fn, capsys):
    assert check_split_heads(fn) is fn
    assert "✅ split_heads is correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda x, H: x.view(*shape(x, H)[:2], H, shape(x, H)[3]), r"= \(B, T, H, d_k\): the transpose is missing"),
    (lambda x, H: x.view(shape(x, H)[0], H, shape(x, H)[1], shape(x, H)[3]), r"reshapes straight to \(B, H, T, d_k\)"),
    (lambda x, H: x.view(*shape(x, H)[:2], H, -1).reshape(shape(x, H)[0], H, shape(x, H)[1], -1),
     r"reshapes straight to \(B, H, T, d_k\)"),                       # reshape where a transpose is needed
    (lambda x, H: x.view(*shape(x, H)[:2], -1, H).permute(0, 3, 1, 2), "every H-th feature"),
    (lambda x, H: x.view(*shape(x, H)[:2], H, -1).transpose(1, 2).flip(1), "reverse order"),
    (lambda x, H: x.view(*shape(x, H)[:2], H, -1).transpose(-2, -1), "should have shape"),
    (lambda x, H: x * 2, "should have shape"),
    (lambda x, H: x.view(x.shape[0], x.shape[1], H, x.shape[2] / H).transpose(1, 2),
     r"raised TypeError .*\n   Hint: a size is a float.*d_k = D // num_heads"),
])
def test_split_heads_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_split_heads(wrong)


# ---------------------------------------------------------------------------- merge_heads


def merged(x):
    B, H, T, d_k = x.shape
    return B, T, H * d_k


@pytest.mark.parametrize("fn", [
    mha_module.merge_heads,
    lambda x: torch.cat(x.unbind(1), dim=-1),
    lambda x: x.permute(0, 2, 1, 3).contiguous().view(*merged(x)),
])
def test_merge_heads_accepts_correct_versions(fn, capsys):
    assert check_merge_heads(fn) is fn
    assert "✅ merge_heads is correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda x: x.reshape(*merged(x)), "without moving the head axis back"),           # no transpose
    (lambda x: x.contiguous().view(*merged(x)), "without moving the head axis back"),
    (lambda x: x.permute(0, 2, 3, 1).reshape(*merged(x)), "wrong order: their features are interleaved"),
    (lambda x: x.flip(1).transpose(1, 2).reshape(*merged(x)), r"wrong order \(last head first\)"),
    (lambda x: x.transpose(1, 2).view(*merged(x)), "view needs the numbers in memory order"),
    (lambda x: x.sum(dim=1), r"= \(B, T, d_k\): it sums the heads. The heads must be concatenated"),
    (lambda x: x.mean(dim=1), "it averages the heads"),
    (lambda x: x[:, 0], "it returns head 0 only"),
    (lambda x: x[:, -1], r"it returns head 2 only"),
])
def test_merge_heads_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_merge_heads(wrong)


# ---------------------------------------------------------------------------- the forward pass


def forward_with(w_o=True, invert=False, ignore_mask=False, scale="d_k", merge="transpose", split="transpose",
                 value_proj="w_v", key_proj="w_k", average_heads=False, fill=-1e9):
    """A learner-style multi-head forward pass, written out, with one switchable mistake."""
    def fn(mha, query, key, value, mask=None):
        B, T, D = query.shape
        S, H = key.shape[1], mha.num_heads
        d_k = D // H

        def heads(x, n):
            if split == "transpose":
                return x.view(B, n, H, d_k).transpose(1, 2)
            return x.view(B, H, n, d_k)

        q = heads(mha.w_q(query), T)
        k = heads(getattr(mha, key_proj)(key), S)
        v = heads(getattr(mha, value_proj)(value), S)
        scores = q @ k.transpose(-2, -1) / {"d_k": math.sqrt(d_k), "none": 1.0, "d_model": math.sqrt(D)}[scale]
        if mask is not None and not ignore_mask:
            scores = scores.masked_fill(mask if invert else ~mask, fill)
        weights = torch.softmax(scores, dim=-1)
        out = weights @ v
        out = out.transpose(1, 2).reshape(B, T, D) if merge == "transpose" else out.reshape(B, T, D)
        return (mha.w_o(out) if w_o else out), (weights.mean(dim=1) if average_heads else weights)
    return fn


def loop_over_heads(mha, query, key, value, mask=None):
    """Correct: one head at a time with the head's slices of the weight matrices."""
    d_k = mha.d_k
    outs, weights = [], []
    for h in range(mha.num_heads):
        rows = slice(h * d_k, (h + 1) * d_k)
        q = query @ mha.w_q.weight[rows].T + (0 if mha.w_q.bias is None else mha.w_q.bias[rows])
        k = key @ mha.w_k.weight[rows].T + (0 if mha.w_k.bias is None else mha.w_k.bias[rows])
        v = value @ mha.w_v.weight[rows].T + (0 if mha.w_v.bias is None else mha.w_v.bias[rows])
        m = None if mask is None else (mask if mask.dim() < 4 else mask[:, 0])
        o, w = scaled_dot_product_attention(q, k, v, m)
        outs.append(o)
        weights.append(w)
    return mha.w_o(torch.cat(outs, dim=-1)), torch.stack(weights, dim=1)


def einsum_forward(mha, query, key, value, mask=None):
    """Correct: the heads with einsum, float64 scores."""
    B, T, D = query.shape
    H, d_k = mha.num_heads, D // mha.num_heads
    q = mha.w_q(query).view(B, T, H, d_k)
    k = mha.w_k(key).view(B, -1, H, d_k)
    v = mha.w_v(value).view(B, -1, H, d_k)
    scores = torch.einsum("bthd,bshd->bhts", q.double(), k.double()) / math.sqrt(d_k)
    if mask is not None:
        scores = scores.masked_fill(~mask, -1e9)                      # -1e9 is fine in float64
    weights = torch.softmax(scores, dim=-1).float()
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    out = torch.einsum("bhts,bshd->bthd", weights, v).reshape(B, T, D)
    return mha.w_o(out), weights


@pytest.mark.parametrize("fn", [mha_module.multi_head_attention_forward, forward_with(), loop_over_heads,
                                einsum_forward])
def test_forward_accepts_correct_versions(fn, capsys):
    assert check_multi_head_attention_forward(fn) is fn
    assert "✅ multi_head_attention_forward is correct on all 5 test cases" in capsys.readouterr().out


def returning(change):
    """The right forward pass, its (output, weights) changed by ``change``."""
    return lambda mha, q, k, v, mask=None: change(*mha_module.multi_head_attention_forward(mha, q, k, v, mask))


def swapped_key_and_value(mha, query, key, value, mask=None):
    return mha_module.multi_head_attention_forward(mha, query, value, key, mask)


@pytest.mark.parametrize("wrong, words", [
    (forward_with(w_o=False), "W\\^O is missing"),
    (forward_with(invert=True), "mask is inverted"),
    (forward_with(invert=True, fill=float("-inf")), "NaN.*is your mask inverted"),
    (forward_with(ignore_mask=True), "mask is ignored"),
    (forward_with(scale="none"), "not scaled"),
    (forward_with(scale="d_model"), "divided by √d_model"),
    (forward_with(merge="reshape"), "merged without moving the head axis back"),
    (forward_with(split="reshape"), r"split by reshaping straight to \(B, H, T, d_k\)"),
    (forward_with(value_proj="w_k"), "values are projected with w_k"),
    (forward_with(key_proj="w_q"), "keys are projected with w_q"),
    (forward_with(key_proj="w_v", value_proj="w_k"), "projections are swapped"),   # key is not value: it shows
    (swapped_key_and_value, "key and value inputs are swapped"),
    (lambda mha, q, k, v, mask=None: mha_module.multi_head_attention_forward(mha, q, q, q, None if mask is None or
                                                                             mask.shape[-1] != q.shape[1] else mask),
     "keys and values are computed from `query`"),
    (forward_with(average_heads=True), "not their average"),
    (returning(lambda out, w: out), "pair"),
    (returning(lambda out, w: (out, None)), "should be a torch.Tensor"),
    (returning(lambda out, w: (out * 1.5, w)), "the output is wrong: the first wrong entry"),
    (lambda mha, q, k, v, mask=None: mha(q, k, v, mask=mask), r"calls mha\(...\) \(or mha.forward\) itself"),
    (lambda mha, q, k, v, mask=None: mha.forward(q, k, v, mask=mask), r"calls mha\(...\) \(or mha.forward\) itself"),
])
def test_forward_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_multi_head_attention_forward(wrong)


def test_an_unknown_mistake_is_located_at_the_first_projection_with_a_wrong_input():
    def value_scaled(mha, query, key, value, mask=None):
        return mha_module.multi_head_attention_forward(mha, query, key, value * 1.1, mask)
    with pytest.raises(CheckFailed, match=r"mha.w_v gets the wrong input: the first wrong entry is \[0, 0, 0\]"):
        check_multi_head_attention_forward(value_scaled)


def test_the_forward_check_leaves_the_random_state_alone():
    state = torch.random.get_rng_state()
    check_multi_head_attention_forward(mha_module.multi_head_attention_forward)
    assert torch.equal(torch.random.get_rng_state(), state)
