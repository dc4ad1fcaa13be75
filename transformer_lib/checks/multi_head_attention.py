"""Checks for lesson 04's exercises: splitting and merging heads, the multi-head forward pass.

Sizes are odd and pairwise different (B=2, T=5, S=7, D=12, H=3, d_k=4), so a swapped axis
changes a shape or a value. Masks are bool with **True = may attend**.
"""
from __future__ import annotations

import math

import torch

from ..multi_head_attention import MultiHeadAttention, merge_heads, multi_head_attention_forward, split_heads
from ._core import call, close, describe, exercise, expect_close, expect_tensor, fail
from ._watch import compare_calls, forbid_calling, watch_modules

__all__ = ["check_split_heads", "check_merge_heads", "check_multi_head_attention_forward"]


@exercise(reference=split_heads)
def check_split_heads(fn):
    """Check ``fn(x (B, T, D), num_heads) -> (B, H, T, d_k)``."""
    g = torch.Generator().manual_seed(6)
    cases = [(2, 5, 12, 3), (3, 7, 12, 4), (1, 1, 8, 2), (2, 5, 6, 1)]
    for B, T, D, H in cases:
        d_k = D // H
        x = torch.randn(B, T, D, generator=g)
        case = f"x of shape ({B}, {T}, {D}) with num_heads={H}"
        got = call(fn, x, H, case=case)
        expected = split_heads(x, H)
        what = f"split_heads(x, {H}) for x of shape ({B}, {T}, {D})"
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, T, H, d_k) and T != H:
            fail(f"{what} has shape {tuple(got.shape)} = (B, T, H, d_k): the transpose is missing. "
                 f"After x.view(B, T, H, d_k), move the head axis in front of the tokens with .transpose(1, 2)")
        expect_close(got, expected, what, mistakes={
            "it reshapes straight to (B, H, T, d_k) (view or reshape alone), which cuts the numbers in memory "
            "order and mixes tokens into the heads: view as (B, T, H, d_k) first, then .transpose(1, 2)":
                x.reshape(B, H, T, d_k),
            "each head gets every H-th feature (view as (B, T, d_k, H)): head h must get the block of features "
            "h*d_k ... (h+1)*d_k-1, so view as (B, T, H, d_k), then .transpose(1, 2)":
                x.view(B, T, d_k, H).permute(0, 3, 1, 2),
            "the heads are in reverse order: head 0 must hold the first d_k features":
                x.view(B, T, H, d_k).transpose(1, 2).flip(1),
        }, hint="Expected x.view(B, T, H, d_k).transpose(1, 2).")
    return len(cases)


@exercise(reference=merge_heads)
def check_merge_heads(fn):
    """Check ``fn(x (B, H, T, d_k)) -> (B, T, D)``, the inverse of split_heads."""
    g = torch.Generator().manual_seed(7)
    cases = [(2, 3, 5, 4), (3, 4, 7, 3), (1, 2, 1, 4), (2, 1, 5, 6)]
    for B, H, T, d_k in cases:
        x = torch.randn(B, H, T, d_k, generator=g)
        case = f"x of shape ({B}, {H}, {T}, {d_k})"
        got = call(fn, x, case=case)
        expected = merge_heads(x)
        what = f"merge_heads(x) for x of shape ({B}, {H}, {T}, {d_k})"
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, T, d_k) and H > 1:
            found = [words for words, merged in [("it sums the heads", x.sum(dim=1)),
                                                 ("it averages the heads", x.mean(dim=1))]
                     + [(f"it returns head {h} only", x[:, h]) for h in range(H)] if close(got, merged)]
            what_it_did = found[0] if found else "it returns one head's size d_k"
            fail(f"{what} has shape {tuple(got.shape)} = (B, T, d_k): {what_it_did}. The heads must be "
                 f"concatenated, not combined: (B, H, T, d_k) -> .transpose(1, 2) -> (B, T, H, d_k) -> "
                 f"reshape to (B, T, H*d_k) = {(B, T, H * d_k)}")
        expect_close(got, expected, what, mistakes={
            "the heads are merged without moving the head axis back (reshape of (B, H, T, d_k) straight to "
            "(B, T, D)), which mixes tokens and heads: first .transpose(1, 2) to (B, T, H, d_k), then reshape":
                x.reshape(B, T, H * d_k),
            "the heads are merged in the wrong order: their features are interleaved (feature j of head h at "
            "position j*H + h). Head h's d_k features must stay together, at h*d_k ... (h+1)*d_k-1: "
            ".transpose(1, 2) to (B, T, H, d_k), then reshape": x.permute(0, 2, 3, 1).reshape(B, T, H * d_k),
            "the heads are merged in the wrong order (last head first): concatenate head 0, head 1, ... in order":
                x.flip(1).transpose(1, 2).reshape(B, T, H * d_k),
        }, hint="Expected x.transpose(1, 2).reshape(B, T, H * d_k).")
    # it must undo split_heads
    y = torch.randn(2, 5, 12, generator=g)
    back = call(fn, split_heads(y, 3), case="split_heads(y, 3) for y of shape (2, 5, 12)")
    expect_close(back, y, "merge_heads(split_heads(y, 3))", hint="merge_heads must undo split_heads.")
    return len(cases) + 1


# --------------------------------------------------------------------------------------------
# the forward pass


def _mha(mha: MultiHeadAttention, query, key, value, mask=None, *, w_o: bool = True, invert: bool = False,
         ignore_mask: bool = False, zero_masked: bool = True, divisor: str = "d_k", merge: str = "ok", split: str = "ok",
         value_proj: str = "w_v", key_proj: str = "w_k", inputs: str = "ok"):
    """The forward pass with a switchable mistake; returns ``(output, weights)``."""
    if inputs == "key and value swapped":
        key, value = value, key
    elif inputs == "query for all":
        key = value = query
    B, T, D = query.shape
    S, H = key.shape[1], mha.num_heads
    d_k = D // H

    def heads(x, n):  # (B, n, D) -> (B, H, n, d_k)
        return x.reshape(B, H, n, d_k) if split == "no transpose" else x.view(B, n, H, d_k).transpose(1, 2)

    q = heads(mha.w_q(query), T)
    k = heads(getattr(mha, key_proj)(key), S)
    v = heads(getattr(mha, value_proj)(value), S)
    scores = q @ k.transpose(-2, -1)
    scores = scores / {"d_k": math.sqrt(d_k), "none": 1.0, "d_model": math.sqrt(D)}[divisor]
    m = None if mask is None or ignore_mask else (~mask if invert else mask)
    if m is not None:
        scores = scores.masked_fill(~m, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if m is not None and zero_masked:
        weights = weights.masked_fill(~m, 0.0)
    out = weights @ v                                     # (B, H, T, d_k)
    out = out.reshape(B, T, D) if merge == "no transpose" else out.transpose(1, 2).reshape(B, T, D)
    return (mha.w_o(out) if w_o else out), weights


def _mha_mistakes(mha, query, key, value, mask):
    m = [
        ("W^O is missing: after merging the heads, pass the result through mha.w_o",
         _mha(mha, query, key, value, mask, w_o=False)),
        ("the scores are not scaled: divide q k^T by √d_k (d_k = d_model / num_heads) in every head",
         _mha(mha, query, key, value, mask, divisor="none")),
        ("the scores are divided by √d_model; each head works in d_k = d_model / num_heads dimensions, so "
         "divide by √d_k", _mha(mha, query, key, value, mask, divisor="d_model")),
        ("the heads are merged without moving the head axis back: (B, H, T, d_k) -> .transpose(1, 2) -> "
         "(B, T, H, d_k) -> reshape to (B, T, D)", _mha(mha, query, key, value, mask, merge="no transpose")),
        ("the heads are split by reshaping straight to (B, H, T, d_k): view as (B, T, H, d_k), then "
         ".transpose(1, 2)", _mha(mha, query, key, value, mask, split="no transpose")),
        ("the heads are split and merged without transposes: view as (B, T, H, d_k) and .transpose(1, 2); "
         "merge with .transpose(1, 2) and reshape", _mha(mha, query, key, value, mask, split="no transpose",
                                                         merge="no transpose")),
        ("the values are projected with w_k: use mha.w_v(value)", _mha(mha, query, key, value, mask, value_proj="w_k")),
        ("the values are projected with w_q: use mha.w_v(value)", _mha(mha, query, key, value, mask, value_proj="w_q")),
        ("the keys are projected with w_q: use mha.w_k(key)", _mha(mha, query, key, value, mask, key_proj="w_q")),
        ("the keys are projected with w_v: use mha.w_k(key)", _mha(mha, query, key, value, mask, key_proj="w_v")),
        ("the keys and values projections are swapped: k = mha.w_k(key), v = mha.w_v(value)",
         _mha(mha, query, key, value, mask, key_proj="w_v", value_proj="w_k")),
        ("the key and value inputs are swapped: keys come from `key` (k = mha.w_k(key)), values from `value` "
         "(v = mha.w_v(value))", _mha(mha, query, key, value, mask, inputs="key and value swapped")),
    ]
    if query.shape == key.shape:
        m.append(("keys and values are computed from `query`: in cross-attention they come from `key` and "
                  "`value` (the encoder's memory), k = mha.w_k(key), v = mha.w_v(value)",
                  _mha(mha, query, key, value, mask, inputs="query for all")))
    if mask is not None:
        m += [("the mask is ignored: pass it on to the attention of every head",
               _mha(mha, query, key, value, mask, ignore_mask=True)),
              ("the mask is inverted: True means *may attend* (the opposite of nn.MultiheadAttention's "
               "convention), so pass it on unchanged", _mha(mha, query, key, value, mask, invert=True)),
              ("the mask is inverted: True means *may attend* (the opposite of nn.MultiheadAttention's "
               "convention), so pass it on unchanged",
               _mha(mha, query, key, value, mask, invert=True, zero_masked=False))]
    return m


def _mha_cases():
    g = torch.Generator().manual_seed(8)

    def module(d_model, num_heads, bias=True, seed=0):
        with torch.random.fork_rng():                     # leave the learner's random state alone
            torch.manual_seed(seed)
            mha = MultiHeadAttention(d_model, num_heads, bias=bias).eval()
        return mha

    B, T, S, D, H = 2, 5, 7, 12, 3
    x = torch.randn(B, T, D, generator=g)
    memory = torch.randn(B, S, D, generator=g)
    other = torch.randn(B, T, D, generator=g)
    pad = torch.ones(B, 1, 1, S, dtype=torch.bool)
    pad[1, ..., 4:] = False
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return [
        (f"self-attention, d_model={D}, num_heads={H}, x ({B}, {T}, {D}) with a causal mask ({T}, {T})",
         module(D, H, seed=1), (x, x, x, causal)),
        # key is not value, and T == S: swapped inputs or projections give wrong values, not errors
        (f"attention with query, key and value three different tensors of shape ({B}, {T}, {D}), no mask",
         module(D, H, seed=5), (x, other, x.flip(1) * 0.5 + 1.0, None)),
        (f"cross-attention, d_model={D}, num_heads={H}, query ({B}, {T}, {D}), key and value two different "
         f"({B}, {S}, {D}) tensors, with a padding mask {tuple(pad.shape)}", module(D, H, seed=2),
         (x, memory, torch.randn(B, S, D, generator=g), pad)),
        ("a batch of 1 with a single query, d_model=8, num_heads=2: query (1, 1, 8), key and value (1, 7, 8)",
         module(8, 2, seed=3), (torch.randn(1, 1, 8, generator=g), torch.randn(1, 7, 8, generator=g),
                                torch.randn(1, 7, 8, generator=g), None)),
        (f"self-attention without biases, d_model={D}, num_heads=4 (d_k=3), x ({B}, {T}, {D}), no mask",
         module(D, 4, bias=False, seed=4), (x, x, x, None)),
    ]


_PROJECTIONS = {"w_q": "the query (B, T, D)", "w_k": "the key (B, S, D)", "w_v": "the value (B, S, D)",
                "w_o": "the merged heads (B, T, D), merge_heads(attention output)"}


@exercise(reference=multi_head_attention_forward)
def check_multi_head_attention_forward(fn):
    """Check ``fn(mha, query, key, value, mask=None) -> (output (B, T, D), weights (B, H, T, S))``."""
    cases = _mha_cases()
    for case, mha, (query, key, value, mask) in cases:
        with torch.no_grad():
            with watch_modules(mha, list(_PROJECTIONS)) as expected_calls:
                exp_out, exp_w = multi_head_attention_forward(mha, query, key, value, mask=mask)
            with watch_modules(mha, list(_PROJECTIONS)) as calls, forbid_calling(
                    mha, "forward", f"on {case} it calls mha(...) (or mha.forward) itself, which is the library's "
                                    f"answer: write the forward pass from mha.w_q, mha.w_k, mha.w_v, mha.w_o, "
                                    f"split_heads, scaled_dot_product_attention and merge_heads"):
                got = call(fn, mha, query, key, value, mask=mask, case=case)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                fail(f"on {case} your function should return a pair (output, weights), got {describe(got)}")
            out, w = got
            B, H, T, S = exp_w.shape
            if isinstance(w, torch.Tensor) and tuple(w.shape) == (B, T, S) and H > 1:
                fail(f"on {case} the weights have shape {tuple(w.shape)}: return every head's weights, "
                     f"(B, H, T, S) = {tuple(exp_w.shape)}, not their average")
            expect_tensor(w, exp_w.shape, f"on {case} the weights")
            expect_tensor(out, exp_out.shape, f"on {case} the output")
            if torch.isnan(out).any() or torch.isnan(w).any():
                inverted = "" if mask is None else (" A query that may attend to no key gives NaN with a -inf "
                                                    "fill: is your mask inverted? True means *may attend*.")
                fail(f"on {case} the result contains NaN.{inverted}")
            if close(out, exp_out) and close(w, exp_w):
                continue
            mistakes = _mha_mistakes(mha, query, key, value, mask)
            for message, (m_out, m_w) in mistakes:
                if close(out, m_out) and close(w, m_w):
                    fail(f"on {case}: {message}")
            where = compare_calls(calls, expected_calls, "mha", expect=_PROJECTIONS)
            hint = f"First difference in how the projections are used: {where}" if where else ""
            expect_close(w, exp_w, f"on {case} the weight tensor", mistakes={msg: mw for msg, (_, mw) in mistakes},
                         hint=hint or "Expected scaled_dot_product_attention(q, k, v, mask) of the split projections.")
            expect_close(out, exp_out, f"on {case} the output", mistakes={msg: mo for msg, (mo, _) in mistakes},
                         hint=hint or "Expected mha.w_o(merge_heads(output of the attention)).")
    return len(cases)
