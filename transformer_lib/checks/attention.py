"""Checks for lesson 03's exercises: attention scores, softmax, the padding mask, scaled dot-product attention.

Each check runs the learner's function on tiny tensors of odd, pairwise different sizes
(B=2, H=3, T=5, S=7, d_k=4, d_v=6), with masks, a fully masked query, a batch of 1 and T=1,
and compares with the reference in :mod:`transformer_lib.attention`. When the result is wrong
it recomputes what the typical mistakes would give (no scaling, scaling by d_k or by the wrong
length, scaling after the softmax, softmax over the wrong axis, mask ignored or inverted, ...)
and names the one that matches.

Masks are bool with **True = may attend**.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..attention import attention_scores, scaled_dot_product_attention, softmax
from ..masks import padding_mask
from ._core import (call, call_diagnosing, close, describe, diagnose, exercise, expect_close, expect_result,
                    expect_tensor, fail, first_difference, where_wrong)

__all__ = ["check_attention_scores", "check_softmax", "check_padding_mask", "check_scaled_dot_product_attention"]


TRANSPOSE_HINT = ("did you forget to transpose k, or transpose the wrong axes? q (..., T, d_k) times k^T "
                  "(..., d_k, S) gives the (..., T, S) scores: use k.transpose(-2, -1), which swaps the last two "
                  "axes (k.T reverses *all* axes of a batched tensor, and k.transpose(1, 2) swaps the wrong pair "
                  "of a 4-D one)")
PRODUCTS_HINT = ("check the two matrix products. Did you forget to transpose k, or transpose the wrong axes? "
                 "The scores are q @ k.transpose(-2, -1): (..., T, d_k) @ (..., d_k, S) -> (..., T, S); the "
                 "output is weights @ v: (..., T, S) @ (..., S, d_v) -> (..., T, d_v)")
SHAPE_ERRORS = ("cannot be multiplied", "must match the size", "size of tensor", "batch2 tensor",
                "dimension other than 2")


def _randn(g: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=g).to(dtype)


def _call(fn: Callable, *args, case: str, hint: str = TRANSPOSE_HINT, **kwargs):
    """``call`` plus a hint for the shape errors a missing transpose causes, and for a function
    whose signature lacks an argument the check passes by name (``mask=``)."""
    __tracebackhide__ = True
    return call(fn, *args, case=case, hints={
        "|".join(SHAPE_ERRORS): hint,
        "unexpected keyword argument": "keep the exercise's signature, e.g. scaled_dot_product_attention(q, k, v, mask=None)",
    }, **kwargs)


# --------------------------------------------------------------------------------------------
# exercise 1: the scores


@exercise(reference=attention_scores)
def check_attention_scores(fn):
    """Check ``fn(q, k) -> (..., T, S)`` scores ``q k^T / sqrt(d_k)``."""
    g = torch.Generator().manual_seed(3)
    cases = [  # (q shape, k shape): odd sizes; S == d_k in the second so a missing transpose runs
        ((2, 3, 5, 4), (2, 3, 7, 4)),
        ((2, 5, 4), (2, 4, 4)),
        ((1, 1, 9), (1, 6, 9)),
        ((7, 16), (3, 16)),
    ]
    for q_shape, k_shape in cases:
        q, k = _randn(g, *q_shape), _randn(g, *k_shape)
        case = f"q {q_shape} and k {k_shape}"
        got = _call(fn, q, k, case=case)
        expect_result(got, f"the score matrix for {case}")
        expected = attention_scores(q, k)
        T, S, d_k = q.shape[-2], k.shape[-2], q.shape[-1]
        what = f"the score matrix for {case}"
        if isinstance(got, torch.Tensor) and got.shape[:-2] == expected.shape[:-2] and got.shape[-2:] == (S, T) \
                and T != S:
            fail(f"{what} has shape {tuple(got.shape)}, the transpose of (..., T, S) = {tuple(expected.shape)}: "
                 f"you computed k q^T. Rows must be queries and columns keys: q @ k.transpose(-2, -1)")
        raw = q @ k.transpose(-2, -1)
        mistakes = {
            f"the scores are not scaled: divide q k^T by √d_k = √{d_k}": raw,
            f"the scores are divided by d_k = {d_k} instead of √d_k = {math.sqrt(d_k):.3g}: use math.sqrt(d_k)": raw / d_k,
            f"the scores are divided by √T, the number of queries (q.shape[-2] = {T}); scale by the feature size "
            f"d_k = q.shape[-1] = {d_k}": raw / math.sqrt(T),
            f"the scores are divided by √S, the number of keys (k.shape[-2] = {S}); scale by the feature size "
            f"d_k = q.shape[-1] = {d_k}": raw / math.sqrt(S),
            f"the scores are multiplied by √d_k instead of divided by it": raw * math.sqrt(d_k),
            "the scores are cosine similarities (q and k normalised to length 1): attention uses the plain dot product "
            "q k^T, scaled by 1/√d_k": torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(k, dim=-1).transpose(-2, -1),
        }
        if S == d_k:
            mistakes[f"k is not transposed (q @ k): {TRANSPOSE_HINT}"] = q @ k / math.sqrt(d_k)
            mistakes[f"k is not transposed and not scaled: use q @ k.transpose(-2, -1) / math.sqrt(d_k)"] = q @ k
        expect_tensor(got, expected.shape, what)
        if not close(got, expected) and not any(close(got, m) for m in mistakes.values()):
            ratio = (raw.abs().sum() / got.double().abs().sum()).item() if got.abs().sum() > 0 else 0.0
            if ratio > 0 and close(got * ratio, raw, atol=1e-4):
                fail(f"{what} is q k^T divided by {ratio:.4g}; divide by √d_k = {math.sqrt(d_k):.4g} instead "
                     f"(d_k = q.shape[-1], the feature size of a query)")
        expect_close(got, expected, what, mistakes=mistakes,
                     hint="Expected q @ k.transpose(-2, -1) / math.sqrt(d_k).")
    return len(cases)


# --------------------------------------------------------------------------------------------
# exercise 2: softmax


def _shifted_softmax(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - shift)
    return e / e.sum(dim=-1, keepdim=True)


@exercise(reference=softmax)
def check_softmax(fn):
    """Check ``fn(x) -> softmax over the last dimension``, stable for large and tiny scores."""
    g = torch.Generator().manual_seed(4)
    lowest = torch.finfo(torch.float32).min
    cases = [
        ("scores of shape (2, 3, 5, 7)", _randn(g, 2, 3, 5, 7)),
        ("a (1, 1) score", _randn(g, 1, 1)),
        ("a (3, 6) score matrix whose rows are shifted copies of each other", torch.tensor([[0.0, 1.0, 2.0, 0.0, 1.0, 2.0]]).repeat(3, 1)
         + torch.arange(3.0)[:, None] * 0.5),
        ("large scores (around 1000) of shape (4, 5)", 1000.0 + 5 * _randn(g, 4, 5)),
        ("rows of very different size: one around 0, one around -2000, shape (2, 5)",
         torch.stack([_randn(g, 5), -2000.0 + _randn(g, 5)])),
        # a large spread inside one row: subtracting the row's minimum or mean overflows exp
        ("the row [0, -100, -100] (a spread of 100 inside the row)", torch.tensor([[0.0, -100.0, -100.0]])),
        ("the rows [0, -1000, -1000] and [0.5, finfo.min, 1.0] (a score masked with torch.finfo(float32).min, "
         "as lesson 03's attention does)", torch.tensor([[0.0, -1000.0, -1000.0], [0.5, lowest, 1.0]])),
    ]
    for what_case, x in cases:
        got = call_diagnosing(fn, x, case=what_case, raising={
            "a maximum or a sum over dim=-1 without keepdim=True drops that axis, so it no longer lines up "
            "with the rows of x: pass keepdim=True, e.g. x.amax(dim=-1, keepdim=True)":
                lambda x: torch.exp(x - x.amax(dim=-1)),
            "x.max(dim=-1, keepdim=True) returns a pair (values, indices): use x.amax(dim=-1, keepdim=True) "
            "or x.max(dim=-1, keepdim=True).values": lambda x: x - x.max(dim=-1, keepdim=True),
        })
        what = f"softmax of {what_case}"
        expect_result(got, what)
        expected = softmax(x)
        expect_tensor(got, expected.shape, what)
        if not torch.isfinite(got).all():
            overflow = diagnose(got, {
                "it subtracts each row's *mean* before exp: a score far above the mean still overflows "
                "(exp(500) is inf in float32). Subtract each row's maximum, x.amax(dim=-1, keepdim=True): "
                "then every exponent is <= 0": _shifted_softmax(x, x.mean(dim=-1, keepdim=True)),
                "it subtracts each row's *minimum* before exp: then the largest score gives exp(max - min), "
                "which overflows for a row like [0, -100, -100]. Subtract each row's maximum, "
                "x.amax(dim=-1, keepdim=True): then every exponent is <= 0": _shifted_softmax(x, x.amin(dim=-1, keepdim=True)),
            }, equal_nan=True)
            if overflow:
                fail(f"{what} contains NaN or inf: {overflow}")
            if "different size" in what_case:
                fail(f"{what} contains NaN or inf: subtract each row's *own* maximum "
                     f"(x.amax(dim=-1, keepdim=True)), not one maximum for the whole tensor: exp(-2000) "
                     f"underflows to 0, and 0 / 0 is NaN")
            fail(f"{what} contains NaN or inf: exp of large (or very negative) scores overflows (underflows). "
                 f"Subtract each row's maximum first: exp(x - max) / sum(exp(x - max)) is the same softmax "
                 f"and never overflows")
        mistakes = {
            "it is normalised over the wrong axis: each row (the last dimension, dim=-1) must sum to 1":
                softmax(x, dim=-2) if x.dim() > 1 else x,
            "it is normalised over the whole tensor: normalise each row separately (sum over dim=-1 with "
            "keepdim=True)": torch.exp(x - x.max()) / torch.exp(x - x.max()).sum(),
            "exp is missing: softmax divides exp(x) by the row's sum of exp(x), not x by the sum of x":
                x / x.sum(dim=-1, keepdim=True),
            "it is not normalised: divide exp(x - max) by its sum over the row":
                torch.exp(x - x.amax(dim=-1, keepdim=True)),
            "this is log_softmax: take exp(x - max) / sum(exp(x - max))": torch.log_softmax(x, dim=-1),
        }
        for d in range(x.dim() - 2):            # the other wrong axes of a batch of score matrices
            mistakes[f"it is normalised over the wrong axis (dim={d}): each row (the last dimension, dim=-1) "
                     f"must sum to 1"] = softmax(x, dim=d)
        expect_close(got, expected, what, mistakes=mistakes,
                     hint="Expected exp(x - max) / exp(x - max).sum(dim=-1, keepdim=True), max over dim=-1.")
    return len(cases)


# --------------------------------------------------------------------------------------------
# exercise 3: the whole of scaled dot-product attention


def attention_with_mistake(q, k, v, mask=None, *, divisor: float | Callable | None = None, after_softmax: str = "",
                           dim: int = -1, mask_mode: str = "fill", fill: str | float = "min", zero_masked: bool = True,
                           transpose_k: bool = True):
    """Scaled dot-product attention with a switchable mistake; returns ``(output, weights)``.

    The one simulator of the typical mistakes: the check compares the learner's result with what
    each mistake gives, and the tests build learner-style wrong versions from it. It computes in
    the inputs' dtype (the check passes float64).

    Args:
        divisor: what the scores are divided by: a number, or a function of ``q`` (``None``: √d_k).
        after_softmax: ``"weights"`` divides the weights by √d_k after the softmax, ``"output"``
            divides the output, instead of the scores.
        dim: the softmax axis.
        mask_mode: ``"fill"`` (right), ``"ignore"``, ``"invert"``, ``"multiply"`` (scores * mask),
            ``"after"`` (weights * mask after the softmax, not renormalised).
        fill: the blocked scores' value: ``"min"`` (finfo.min, right), ``"-inf"`` or a number (-1e9).
        zero_masked: give blocked keys zero weight after the softmax (else a fully masked row
            gets uniform weights).
        transpose_k: ``False`` computes ``q @ k``.
    """
    scale = math.sqrt(q.shape[-1])
    scores = q @ (k.transpose(-2, -1) if transpose_k else k)
    if not after_softmax:
        d = divisor(q) if callable(divisor) else divisor
        scores = scores / (d if d is not None else scale)
    allowed = None if mask is None or mask_mode == "ignore" else (~mask if mask_mode == "invert" else mask)
    if allowed is not None and mask_mode == "multiply":
        scores = scores * allowed
    elif allowed is not None and mask_mode != "after":
        value = {"min": torch.finfo(scores.dtype).min, "-inf": float("-inf")}.get(fill, fill)
        scores = scores.masked_fill(~allowed, value)
    weights = torch.softmax(scores, dim=dim)
    if allowed is not None and mask_mode == "after":
        weights = weights * allowed
    elif allowed is not None and zero_masked:
        weights = weights.masked_fill(~allowed, 0.0)
    if after_softmax == "weights":
        weights = weights / scale
    out = weights @ v
    if after_softmax == "output":
        out = out / scale
    return out, weights


def _mistakes(q, k, v, mask) -> list[tuple[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(diagnosis, (output, weights) that the mistake gives) for every typical mistake on this case."""
    T, S, d_k, d_v = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    sq = math.sqrt(d_k)
    q, k, v = q.double(), k.double(), v.double()
    m = [
        (f"the scores are not scaled: divide q k^T by √d_k = √{d_k} before the softmax",
         attention_with_mistake(q, k, v, mask, divisor=1.0)),
        (f"the scores are divided by d_k = {d_k} instead of √d_k = {sq:.3g}: use math.sqrt(d_k)",
         attention_with_mistake(q, k, v, mask, divisor=float(d_k))),
        (f"the scores are scaled by the wrong length: √T (the number of queries, {T}); scale by √d_k, "
         f"the feature size q.shape[-1] = {d_k}", attention_with_mistake(q, k, v, mask, divisor=math.sqrt(T))),
        (f"the scores are scaled by the wrong length: √S (the number of keys, {S}); scale by √d_k, "
         f"the feature size q.shape[-1] = {d_k}", attention_with_mistake(q, k, v, mask, divisor=math.sqrt(S))),
        (f"the scores are scaled by √d_v = √{d_v} (v's feature size); scale by √d_k = √{d_k} (q's and k's)",
         attention_with_mistake(q, k, v, mask, divisor=math.sqrt(d_v))),
        ("the scores are multiplied by √d_k instead of divided by it", attention_with_mistake(q, k, v, mask, divisor=1 / sq)),
        ("the scaling comes after the softmax (the weights were divided by √d_k, so they no longer sum to 1): "
         "divide the *scores* by √d_k, then take the softmax", attention_with_mistake(q, k, v, mask, after_softmax="weights")),
        ("the scaling comes after the softmax (the output was divided by √d_k): divide the *scores* by √d_k, "
         "then take the softmax", attention_with_mistake(q, k, v, mask, after_softmax="output")),
        ("the softmax is over the wrong axis: each query's weights over the keys (dim=-1) must sum to 1, "
         "not each key's weights over the queries (dim=-2)", attention_with_mistake(q, k, v, mask, dim=-2)),
    ]
    if q.dim() >= 3:
        m.append(("the softmax is over the wrong axis (a batch or head axis): use dim=-1, the keys",
                  attention_with_mistake(q, k, v, mask, dim=0)))
        if q.dim() >= 4:
            m.append(("the softmax is over the wrong axis (dim=1, the heads): use dim=-1, the keys",
                      attention_with_mistake(q, k, v, mask, dim=1)))
    if mask is not None:
        m += [
            ("the mask is ignored: fill the scores of blocked keys (mask == False) with a very negative number "
             "before the softmax", attention_with_mistake(q, k, v, mask, mask_mode="ignore")),
            ("the mask is inverted: True means *may attend*, so block where the mask is False "
             "(scores.masked_fill(~mask, ...))", attention_with_mistake(q, k, v, mask, mask_mode="invert")),
            ("the mask is inverted and fully blocked rows are not zeroed: True means *may attend*, so block "
             "where the mask is False (scores.masked_fill(~mask, ...))",
             attention_with_mistake(q, k, v, mask, mask_mode="invert", zero_masked=False)),
            ("the scores were multiplied by the mask: a score of 0 still gets weight. Fill blocked scores with "
             "a very negative number (torch.finfo(scores.dtype).min) before the softmax",
             attention_with_mistake(q, k, v, mask, mask_mode="multiply", zero_masked=False)),
            ("the scores were multiplied by the mask: a score of 0 still gets weight, so zeroing the blocked "
             "weights afterwards leaves rows that do not sum to 1. Fill blocked scores with a very negative "
             "number (torch.finfo(scores.dtype).min) before the softmax",
             attention_with_mistake(q, k, v, mask, mask_mode="multiply")),
            ("the mask is applied after the softmax, so the weights of a query no longer sum to 1: fill the "
             "blocked *scores* before the softmax", attention_with_mistake(q, k, v, mask, mask_mode="after")),
            ("a query whose keys are all masked gets uniform weights 1/S: such a query must get zero weights "
             "and a zero output. After the softmax, set the weights of blocked keys to 0 "
             "(weights.masked_fill(~mask, 0.0))", attention_with_mistake(q, k, v, mask, zero_masked=False)),
        ]
    if S == d_k:
        m.append((f"k is not transposed (q @ k): {TRANSPOSE_HINT}", attention_with_mistake(q, k, v, mask, transpose_k=False)))
    return m


def _estimated_divisor(weights: torch.Tensor, raw: torch.Tensor) -> float | None:
    """If ``weights == softmax(raw / c)`` for some constant c, return c (else ``None``)."""
    lw = torch.log(weights.double().clamp_min(1e-300))
    lw = lw - lw.mean(dim=-1, keepdim=True)
    r = raw.double() - raw.double().mean(dim=-1, keepdim=True)
    denom = (r * r).sum()
    if denom <= 0:
        return None
    c = ((lw * r).sum() / denom).item()
    if c <= 0 or (lw - c * r).abs().max().item() > 1e-3:
        return None
    return 1.0 / c


def _expect_attention(got, q, k, v, mask, case: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Compare the learner's ``(output, weights)`` with the reference and diagnose a mistake."""
    __tracebackhide__ = True
    exp_out, exp_w = scaled_dot_product_attention(q.double(), k.double(), v.double(), mask=mask)
    if got is None:
        fail(f"on {case} your function returned None: did you forget the `return` statement? Return the pair "
             f"(output, weights)")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        fail(f"on {case} your function should return a pair (output, weights), got {describe(got)}")
    out, w = got
    T, S = exp_w.shape[-2:]
    if all(isinstance(x, torch.Tensor) for x in got) and exp_out.shape != exp_w.shape \
            and out.shape == exp_w.shape and w.shape == exp_out.shape:
        fail(f"on {case} your function returned (weights, output): return them in the order (output, weights)")
    if isinstance(w, torch.Tensor) and T != S and tuple(w.shape) == tuple(exp_w.shape[:-2]) + (S, T):
        fail(f"on {case} the weights have shape {tuple(w.shape)}, the transpose of (..., T, S) = "
             f"{tuple(exp_w.shape)}: did you compute k q^T? Rows must be queries: q @ k.transpose(-2, -1)")
    expect_tensor(w, exp_w.shape, f"on {case} the weights")
    expect_tensor(out, exp_out.shape, f"on {case} the output")
    for name, x in (("weights", w), ("output", out)):
        if torch.isnan(x).any():
            if mask is not None and not mask.expand(exp_w.shape).any(dim=-1).all():
                fail(f"on {case} the {name} contain NaN in the query whose keys are all masked. A row of "
                     f"-inf scores gives softmax 0/0 = NaN: fill blocked scores with torch.finfo(scores.dtype).min "
                     f"(or -inf and then replace the NaN), and set the weights of blocked keys to 0 after the "
                     f"softmax, so that such a query gets zero weights and a zero output")
            fail(f"on {case} the {name} contain NaN")
    mistakes = _mistakes(q, k, v, mask)
    w_ok = close(w, exp_w, atol=atol, rtol=rtol)
    out_ok = close(out, exp_out, atol=atol, rtol=rtol)
    if w_ok and out_ok:
        return
    for message, (m_out, m_w) in mistakes:      # the mistake that explains both results
        if close(w, m_w, atol=atol, rtol=rtol) and close(out, m_out, atol=atol, rtol=rtol):
            fail(f"on {case}, {message}")
    if not w_ok:
        for message, (_, m_w) in mistakes:       # ... or at least the weights
            if close(w, m_w, atol=atol, rtol=rtol):
                fail(f"on {case} the weights are wrong: {message}")
        sums = w.double().sum(dim=-1)
        expected_sums = exp_w.sum(dim=-1)
        if not torch.allclose(sums, expected_sums, atol=1e-3):
            fail(f"on {case} the weights of each query should sum to 1 over the keys (the last dimension); "
                 f"yours sum to values between {sums.min().item():.3g} and {sums.max().item():.3g}")
        if mask is None:
            divisor = _estimated_divisor(w, q.double() @ k.double().transpose(-2, -1))
            if divisor is not None and abs(divisor - math.sqrt(q.shape[-1])) > 1e-3:
                fail(f"on {case} the weights are softmax(q k^T / {divisor:.3g}), but they should be "
                     f"softmax(q k^T / √d_k) = softmax(q k^T / {math.sqrt(q.shape[-1]):.3g}): check your scaling")
        fail(f"on {case} the weights are wrong: {where_wrong(w, exp_w, atol, rtol)}. "
             f"Expected softmax(q k^T / √d_k) with blocked keys filled before the softmax.")
    fail(f"on {case} the weights are right but the output is wrong: {where_wrong(out, exp_out, atol, rtol)}. "
         f"The output is the weighted sum of the values, weights @ v")


def _attention_cases() -> list[tuple[str, tuple]]:
    g = torch.Generator().manual_seed(5)
    B, H, T, S, d_k, d_v = 2, 3, 5, 7, 4, 6
    pad = torch.ones(B, 1, 1, S, dtype=torch.bool)
    pad[0, ..., 5:] = False                                 # sequence 0: 5 real keys, 2 padding
    pad[1, ..., 3:] = False                                 # sequence 1: 3 real keys, 4 padding
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    holes = torch.rand(T, S, generator=g) < 0.6
    holes[:, 0] = True                                      # every query may see key 0 ...
    holes[2] = False                                        # ... except query 2, which may see nothing
    one = torch.tensor([[[True, False, True, True, False, True, False]]])
    cases = [
        (f"q ({B}, {H}, {T}, {d_k}), k ({B}, {H}, {S}, {d_k}), v ({B}, {H}, {S}, {d_v}) without a mask",
         (_randn(g, B, H, T, d_k), _randn(g, B, H, S, d_k), _randn(g, B, H, S, d_v), None)),
        (f"q ({B}, {H}, {T}, {d_k}), k ({B}, {H}, {S}, {d_k}), v ({B}, {H}, {S}, {d_v}) with a padding mask of shape "
         f"{tuple(pad.shape)}",
         (_randn(g, B, H, T, d_k), _randn(g, B, H, S, d_k), _randn(g, B, H, S, d_v), pad)),
        (f"self-attention (T = S = {T}) with a causal mask of shape {tuple(causal.shape)}",
         (_randn(g, B, H, T, d_k), _randn(g, B, H, T, d_k), _randn(g, B, H, T, d_v), causal)),
        (f"a ({T}, {S}) mask in which query 2 may attend to no key at all",
         (_randn(g, B, H, T, d_k), _randn(g, B, H, S, d_k), _randn(g, B, H, S, d_v), holes)),
        ("3-D inputs q (2, 5, 4), k (2, 4, 4), v (2, 4, 6) without heads",
         (_randn(g, 2, 5, 4), _randn(g, 2, 4, 4), _randn(g, 2, 4, 6), None)),
        ("a batch of 1 with a single query: q (1, 1, 8), k (1, 7, 8), v (1, 7, 3), mask (1, 1, 7)",
         (_randn(g, 1, 1, 8), _randn(g, 1, 7, 8), _randn(g, 1, 7, 3), one)),
    ]
    return cases


@exercise(reference=scaled_dot_product_attention)
def check_scaled_dot_product_attention(fn):
    """Check ``fn(q, k, v, mask=None) -> (output, weights)`` against the reference."""
    cases = _attention_cases()
    for case, (q, k, v, mask) in cases:
        got = _call(fn, q, k, v, mask=mask, case=case, hint=PRODUCTS_HINT)
        _expect_attention(got, q, k, v, mask, case)
    # float16: a -1e9 fill overflows, a -inf fill gives NaN in the fully masked row
    case, (q, k, v, mask) = cases[3]
    q, k, v = q.half(), k.half(), v.half()
    case = "float16 inputs (" + case + ")"
    got = call(fn, q, k, v, mask=mask, case=case, hints={
        "overflow": "-1e9 does not fit in float16 (its largest number is 65504): fill with "
                    "torch.finfo(scores.dtype).min, which fits every dtype"})
    if isinstance(got, (tuple, list)) and len(got) == 2 and all(isinstance(x, torch.Tensor) for x in got) \
            and any(x.dtype != torch.float16 for x in got):
        fail(f"on {case} the result should stay float16, got {got[0].dtype} and {got[1].dtype}")
    _expect_attention(got, q, k, v, mask, case, atol=1e-2, rtol=1e-2)
    return len(cases) + 1


# --------------------------------------------------------------------------------------------
# exercise: the padding mask (and what every mask check judges)

SCORE_AXES = ("B", "H", "T", "S")
_MASK_DTYPE_FIX = ("a comparison such as ids != pad_id or >= already gives a bool tensor; otherwise create it with "
                   "dtype=torch.bool or convert it with .bool()")


def _mask_dtype_problem(got: torch.Tensor, expected: torch.Tensor) -> str:
    """Why a mask of ``got``'s dtype is wrong (``got`` is not bool), naming the float and int kinds."""
    values = None if got.device.type == "meta" else got.detach()
    if got.is_floating_point():
        if values is not None and bool(((values == 0) | (values < -1e3)).all()) and bool((values < -1e3).any()):
            return (f"it is an *additive* float mask (0 = may attend, {values.min().item():.3g} = blocked), the kind "
                    f"nn.Transformer.generate_square_subsequent_mask returns. The course's masks are bool with "
                    f"True = may attend: return the condition itself, e.g. the comparison that is True where a query "
                    f"may attend, not scores to add")
        return (f"it has dtype {got.dtype}: a float 0/1 mask is not a bool mask. F.scaled_dot_product_attention "
                f"*adds* a float mask to the scores (so 0 blocks nothing), and ~mask fails on floats. Masks are "
                f"bool with True = may attend: {_MASK_DTYPE_FIX}")
    return (f"it has dtype {got.dtype}: an integer mask is not a bool mask. ~ on integers is bitwise NOT (~1 = -2 "
            f"and ~0 = -1, both non-zero), and masked_fill refuses {got.dtype} masks. Masks are bool with "
            f"True = may attend: {_MASK_DTYPE_FIX}")


def _broadcast_story(shape: tuple[int, ...], scores: tuple[int, ...]) -> str:
    """How a mask of ``shape`` lines up with (B, H, T, S) scores: its axes meet the scores' from the right."""
    names = SCORE_AXES[len(SCORE_AXES) - len(shape):] if len(shape) <= len(SCORE_AXES) else None
    try:
        result = tuple(torch.broadcast_shapes(shape, scores))
    except RuntimeError:
        result = None
    lined = f"its axes line up with ({', '.join(names)}) of the scores" if names else "it has more axes than the scores"
    if result is None:
        return f"Against scores of shape (B, H, T, S) = {scores} {lined}, and it does not broadcast at all"
    if result != scores:
        return f"Against scores of shape (B, H, T, S) = {scores} {lined}, and broadcasting gives {result}, not the scores' shape"
    return f"Against scores of shape (B, H, T, S) = {scores} {lined}: it broadcasts, but to the wrong places"


def expect_mask(got, expected: torch.Tensor, what: str, *, scores: tuple[int, ...], shapes: dict | None = None,
                mistakes: dict[str, torch.Tensor] | None = None, device_fix: str = "", hint: str = "") -> None:
    """Fail unless ``got`` is the bool mask ``expected`` (True = may attend): type, dtype, shape (with
    how a wrong one broadcasts against ``scores``), device, then values. A wrong shape found in
    ``shapes`` ({shape: diagnosis}) or a value that equals one of ``mistakes`` is named; an
    inverted mask always is."""
    __tracebackhide__ = True
    expect_result(got, what)
    if not isinstance(got, torch.Tensor):
        fail(f"{what} should be a bool torch.Tensor, got {describe(got)}")
    if got.dtype != torch.bool:
        fail(f"{what}: {_mask_dtype_problem(got, expected)}")
    if tuple(got.shape) != tuple(expected.shape):
        known = (shapes or {}).get(tuple(got.shape))
        fail(f"{what} should have shape {tuple(expected.shape)}, got {tuple(got.shape)}: "
             + (f"{known}. " if known else "")
             + f"{_broadcast_story(tuple(got.shape), scores)}. {hint}")
    if got.device != expected.device:
        fail(f"{what} is on device {got.device}, but should be on {expected.device}: {device_fix}")
    if expected.device.type == "meta":
        return
    if torch.equal(got, expected):
        return
    for diagnosis, wrong in (mistakes or {}).items():
        if torch.equal(got, wrong):
            fail(f"{what} is wrong: {diagnosis}")
    if torch.equal(got, ~expected):
        fail(f"{what} is inverted: it is True where a query may NOT attend (the convention of "
             f"nn.MultiheadAttention's bool masks). The course's masks, like F.scaled_dot_product_attention's, "
             f"are True = may attend")
    index = first_difference(got, expected, atol=0.0, rtol=0.0)
    fail(f"{what} is wrong: entry {list(index)} is {bool(got[index])}, expected {bool(expected[index])}. {hint}")


_PADDING_FIX = "ids != pad_id gives the (B, S) keys, and [:, None, None, :] (or .unsqueeze(1).unsqueeze(2)) makes them (B, 1, 1, S)"


def _padding_shapes(B: int, S: int) -> dict[tuple[int, ...], str]:
    return {
        (B, S): "the (B, S) comparison lacks the head and query axes",
        (B, 1, S): "one axis is missing: the mask needs the head *and* the query axis",
        (B, 1, S, 1): "the keys lie on the query axis: such a mask hides the *rows* (queries) of padding tokens, not "
                      "their columns (keys)",
        (B, S, 1, 1): "the keys lie on the head axis",
        (B, 1, 1, 1, S): "one axis too many",
    }


def _padding_cases(g: torch.Generator) -> list[tuple[str, torch.Tensor, int]]:
    ids = torch.randint(1, 9, (2, 7), generator=g)
    ids[1, 4:] = 0
    other = torch.randint(0, 9, (3, 5), generator=g)
    other[other == 3] = 4
    other[0, 3:] = 3                                                   # padding at the end
    other[2, :2] = 3                                                   # padding at the start (left padding)
    other[1, 1] = 0                                                    # 0 is a real token here
    one = torch.randint(2, 9, (1, 6), generator=g)
    all_pad = torch.tensor([[5, 6, 0, 0], [0, 0, 0, 0]])
    short = torch.tensor([[4], [0], [7], [0]])
    return [
        ("ids of shape (2, 7), pad_id=0, the second sentence padded at the end", ids, 0),
        ("ids of shape (3, 5), pad_id=3 (0 is a real token here), one sentence padded at the end, one at the start",
         other, 3),
        ("a batch of 1, ids of shape (1, 6) with no padding, pad_id=1", one, 1),
        ("ids of shape (2, 4), pad_id=0, the second sentence all padding", all_pad, 0),
        ("ids of shape (4, 1), pad_id=0 (sequences of one token)", short, 0),
    ]


def _padding_mistakes(ids: torch.Tensor, pad_id: int) -> dict[str, torch.Tensor]:
    def keys(m):
        return m[:, None, None, :]
    lengths = (ids != pad_id).sum(dim=1, keepdim=True)
    positions = torch.arange(ids.shape[1])
    mistakes = {
        "it marks every key True: the padding is not hidden. Compare ids with pad_id":
            keys(torch.ones_like(ids, dtype=torch.bool)),
        f"it assumes the padding is always at the end (position < number of real tokens); compare every id with "
        f"pad_id instead, ids != pad_id": keys(positions < lengths),
    }
    if pad_id != 0:
        mistakes = {f"it compares with 0 (ids != 0 or ids > 0), not with pad_id = {pad_id}: use ids != pad_id":
                    keys(ids != 0), **mistakes}
    return mistakes


def _explain_device(error: BaseException) -> str | None:
    if "meta" in str(error):
        return ("the check passed ids on PyTorch's 'meta' device, a stand-in for a GPU (shapes, no values): build the "
                "mask with tensor operations on ids (ids != pad_id), which stay on ids's device, not from Python "
                "numbers or a new tensor on the CPU")
    return None


@exercise(reference=padding_mask)
def check_padding_mask(fn):
    """Check ``fn(ids, pad_id) -> (B, 1, 1, S)`` bool mask, True = may attend (the non-padding keys)."""
    g = torch.Generator().manual_seed(7)
    hints = {"unexpected keyword argument|positional argument": "keep the exercise's signature, padding_mask(ids, pad_id)"}
    cases = _padding_cases(g)
    for case, ids, pad_id in cases:
        got = call(fn, ids, pad_id, case=case, hints=hints)
        expected = padding_mask(ids, pad_id)
        B, S = ids.shape
        if isinstance(got, torch.Tensor) and got.dtype == torch.bool and tuple(got.shape) == (B, 1, 1, S) \
                and torch.equal(got, (ids == pad_id)[:, None, None, :]):
            fail(f"the mask for {case} is True at the padding: it compares ids == pad_id. True means *may attend*, "
                 f"so the real tokens must be True: ids != pad_id")
        expect_mask(got, expected, f"the mask for {case}", scores=(B, 3, 5, S), shapes=_padding_shapes(B, S),
                    mistakes=_padding_mistakes(ids, pad_id), hint=f"Expected {_PADDING_FIX}.")
    ids = torch.zeros(2, 7, dtype=torch.long, device="meta")
    case = "ids of shape (2, 7) on another device ('meta', a stand-in for a GPU)"
    got = call(fn, ids, 0, case=case, explain=_explain_device)
    expect_mask(got, padding_mask(ids, 0), f"the mask for {case}", scores=(2, 3, 5, 7), shapes=_padding_shapes(2, 7),
                device_fix="the mask must live where ids lives. Build it from ids with tensor operations "
                           "(ids != pad_id); a new tensor needs device=ids.device")
    return len(cases) + 1
