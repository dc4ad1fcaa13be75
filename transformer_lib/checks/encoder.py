"""Checks for lesson 05's exercises: LayerNorm, the feed-forward network, the encoder layer.

The layer checks watch the layer's parts while the learner's forward pass runs: when the result
is wrong and no typical mistake matches, the message names the first part (``layer.norm2``...)
that got a different input than in the reference, where, and what it should get.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..encoder import EncoderLayer, encoder_layer_forward
from ..feed_forward import feed_forward
from ..layer_norm import layer_norm
from ..masks import padding_mask
from ._core import call, call_diagnosing, close, diagnose, exercise, expect_close, expect_tensor, fail
from ._watch import compare_calls, forbid_calling, watch_modules

__all__ = ["check_layer_norm", "check_feed_forward", "check_encoder_layer_forward"]


# --------------------------------------------------------------------------- LayerNorm
def _normalise(x, dim, unbiased=False):
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, correction=1 if unbiased else 0)
    return mean, var


@exercise(reference=layer_norm)
def check_layer_norm(fn):
    g = torch.Generator().manual_seed(0)
    # (shape, eps, scale of x): small D makes D vs D - 1 visible, a large eps makes "eps outside the
    # root" visible, and a tiny variance with a large eps tells an ignored eps (a fixed 1e-5) from a
    # missing one
    cases = [((2, 5, 12), 1e-5, 3.0), ((4, 6), 0.5, 1e-3), ((7, 3), 0.5, 3.0), ((1, 4, 5), 0.1, 3.0),
             ((3, 1, 9), 1e-5, 3.0)]
    n = 0
    for shape, eps, scale in cases:
        x = torch.randn(shape, generator=g) * scale + 2.0
        D = shape[-1]
        gamma = torch.rand(D, generator=g) + 0.5
        beta = torch.randn(D, generator=g)
        spread = "" if scale >= 1 else f" (a tiny spread, variance about {scale ** 2:.0e})"
        case = f"x of shape {shape}{spread}, eps={eps}"
        got = call(fn, x, gamma, beta, eps, case=case)
        mean, var = _normalise(x, -1)
        _, var_unbiased = _normalise(x, -1, unbiased=True)
        mistakes = {
            "it uses the unbiased variance (divides by D - 1): LayerNorm uses the biased one, "
            "x.var(dim=-1, unbiased=False) or ((x - mean) ** 2).mean(dim=-1)":
                gamma * (x - mean) / torch.sqrt(var_unbiased + eps) + beta,
            "eps is added outside the square root: divide by torch.sqrt(var + eps), not by std + eps":
                gamma * (x - mean) / (torch.sqrt(var) + eps) + beta,
            f"the eps argument is ignored (a fixed 1e-5 is used): with eps={eps} divide by "
            f"torch.sqrt(var + eps), using the eps that is passed in":
                gamma * (x - mean) / torch.sqrt(var + 1e-5) + beta,
            "eps is missing: divide by torch.sqrt(var + eps); eps keeps a token whose features are all "
            "equal from giving NaN": gamma * (x - mean) / torch.sqrt(var) + beta,
            "gamma and beta are not applied: return gamma * x_hat + beta":
                (x - mean) / torch.sqrt(var + eps),
            "gamma and beta are swapped: gamma multiplies, beta is added":
                beta * (x - mean) / torch.sqrt(var + eps) + gamma,
            "it divides by the variance instead of the standard deviation: take the square root":
                gamma * (x - mean) / (var + eps) + beta,
        }
        if eps == 1e-5:                       # an ignored eps is right here
            mistakes = {k: v for k, v in mistakes.items() if "ignored" not in k}
        axes = [((0,), "the first (batch) axis"), (tuple(range(x.dim())), "the whole tensor")]
        if x.dim() >= 3:
            axes.append(((-2,), "the sequence axis (dim=-2)"))
        for dims, words in axes:
            m, v = _normalise(x, dims)
            mistakes[f"it normalises over {words}: mean and variance belong to each token, "
                     f"over the last dimension only (dim=-1, keepdim=True)"] = gamma * (x - m) / torch.sqrt(v + eps) + beta
        expect_close(got, layer_norm(x, gamma, beta, eps), f"layer_norm({case})", mistakes=mistakes,
                     hint="Normalise each token over its last dimension: (x - mean) / sqrt(var + eps), "
                          "biased variance, then * gamma + beta.")
        n += 1
    # a constant token (variance 0) must give beta, not NaN: eps keeps the division finite
    x = torch.full((2, 3, 4), 1.5)
    gamma, beta = torch.ones(4), torch.linspace(-1, 1, 4)
    got = call(fn, x, gamma, beta, 1e-5, case="a constant input (variance 0)")
    if isinstance(got, torch.Tensor) and not torch.isfinite(got).all():
        fail("a token whose features are all equal (variance 0) gives NaN or inf: "
             "add eps to the variance inside the square root, torch.sqrt(var + eps)")
    expect_close(got, layer_norm(x, gamma, beta, 1e-5), "layer_norm of a constant input (it should equal beta)")
    return n + 1


# --------------------------------------------------------------------------- feed-forward
@exercise(reference=feed_forward)
def check_feed_forward(fn):
    g = torch.Generator().manual_seed(1)
    cases = [((2, 5, 12), 20), ((1, 3, 7), 9), ((6, 4), 10)]
    relu = torch.relu
    for shape, d_ff in cases:
        D = shape[-1]
        x = torch.randn(shape, generator=g)
        w_1, b_1 = torch.randn(D, d_ff, generator=g) / D ** 0.5, torch.randn(d_ff, generator=g)
        w_2, b_2 = torch.randn(d_ff, D, generator=g) / d_ff ** 0.5, torch.randn(D, generator=g)
        case = f"x of shape {shape}, w_1 ({D}, {d_ff}), w_2 ({d_ff}, {D})"
        got = call_diagnosing(fn, x, w_1, b_1, w_2, b_2, case=case, raising={
            "F.linear(x, w) computes x @ w.T, for nn.Linear's (out, in) weights; here the weights are in the "
            "paper's orientation, w_1 (d_model, d_ff) and w_2 (d_ff, d_model): write x @ w_1 + b_1":
                lambda x, w_1, b_1, w_2, b_2: torch.nn.functional.linear(x, w_1, b_1),
        })
        h = x @ w_1 + b_1
        expect_close(got, feed_forward(x, w_1, b_1, w_2, b_2), f"feed_forward({case})", mistakes={
            "the activation is missing: apply ReLU to the hidden layer, relu(x @ w_1 + b_1) @ w_2 + b_2":
                h @ w_2 + b_2,
            "the activation is applied after the second linear layer: it belongs between the two, "
            "relu(x @ w_1 + b_1) @ w_2 + b_2":
                relu(h @ w_2 + b_2),
            "there is an activation after the second linear layer too: only the hidden layer has one "
            "(the output must be able to be negative)":
                relu(relu(h) @ w_2 + b_2),
            "the activation is applied to the input before the first linear layer: apply it to x @ w_1 + b_1":
                relu(x) @ w_1 @ w_2 + b_1 @ w_2 + b_2,
            "the bias b_1 is missing: the hidden layer is relu(x @ w_1 + b_1)":
                relu(x @ w_1) @ w_2 + b_2,
            "the bias b_2 is missing: add it after the second product":
                relu(h) @ w_2,
            "it uses GELU: the paper's feed-forward network uses ReLU":
                torch.nn.functional.gelu(h) @ w_2 + b_2,
            "b_1 is added after the activation: the hidden layer is relu(x @ w_1 + b_1), bias inside":
                (relu(x @ w_1) + b_1) @ w_2 + b_2,
        }, hint="FFN(x) = max(0, x W_1 + b_1) W_2 + b_2, with vectors as rows.")
    return len(cases)


# --------------------------------------------------------------------------- layers, shared with lesson 06
def _random_norms(layer: nn.Module, g: torch.Generator) -> None:
    """Give every LayerNorm a random gamma and beta, so that each norm's place matters."""
    with torch.no_grad():
        for m in layer.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))


def check_layer_output(fn: Callable, layer: nn.Module, args: tuple, *, reference: Callable, parts: list[str],
                       expect: dict[str, str], last_step: str, masks: dict, mistakes: Callable[[], dict],
                       case: str, calling: str) -> None:
    """Run ``fn(layer, *args)`` and compare it with ``reference(layer, *args)``.

    While the learner's forward pass runs, the layer's ``parts`` are watched: an error, or a
    wrong result that no typical mistake (``mistakes()``) explains, is explained by the first part
    that got a different input than in the reference (``expect`` says in words what each part
    should get; ``last_step`` what the output is). Calling the layer itself (``layer(...)`` or
    ``layer.forward(...)``) fails.
    """
    __tracebackhide__ = True
    with torch.no_grad():
        with watch_modules(layer, parts) as expected_calls:
            expected = reference(layer, *args)

        def explain(error):
            where = compare_calls(calls, expected_calls, "layer", expect, masks, partial=True)
            return f"before the error, the first difference from the paper's layer: {where}" if where else None

        with watch_modules(layer, parts) as calls, forbid_calling(
                layer, "forward", f"on {case} it calls {calling} (or layer.forward) itself, which is the "
                                  f"library's answer: write the forward pass from the layer's parts "
                                  f"({', '.join('layer.' + p for p in parts)})"):
            got = call(fn, layer, *args, case=case, explain=explain)
        what = f"the output for {case}"
        expect_tensor(got, expected.shape, what)
        if close(got, expected, atol=1e-5):
            return
        found = diagnose(got, mistakes(), atol=1e-5)
        if found:
            fail(f"{what} is wrong: {found}")
        where = compare_calls(calls, expected_calls, "layer", expect, masks)
        if where is None:
            where = f"every part gets the right input, so the last step is wrong: {last_step}"
        expect_close(got, expected, what, hint=f"Where it goes wrong: {where}")


# --------------------------------------------------------------------------- encoder layer
def _encoder_mistakes(layer: EncoderLayer, x, mask):
    sa = lambda h, m=mask: layer.self_attn(h, h, h, mask=m)[0]
    ff, n1, n2 = layer.feed_forward, layer.norm1, layer.norm2

    def post(h, m=mask):
        h = n1(h + sa(h, m))
        return n2(h + ff(h))

    def pre(h, m=mask):
        h = h + sa(n1(h), m)
        return h + ff(n2(h))

    if layer.norm_first:
        def residual_after_norm(h):
            h = n1(h)
            h = h + sa(h)
            h = n2(h)
            return h + ff(h)
        h1 = x + sa(n1(x))
        return {
            "the residual is added to the *normalised* x: in pre-LN the residual path carries the "
            "un-normalised x, x = x + self_attn(norm1(x)) (normalise only the sub-layer's input)": residual_after_norm(x),
            "the residual connections are missing: add each sub-layer's input back, x = x + sublayer(norm(x))":
                ff(n2(sa(n1(x)))),
            "the residual connection around the feed-forward network is missing: x = x + feed_forward(norm2(x))":
                ff(n2(h1)),
            "the residual connection around self-attention is missing: x = x + self_attn(norm1(x))":
                (lambda h: h + ff(n2(h)))(sa(n1(x))),
            "it is a post-LN layer, but layer.norm_first is True: normalise *before* each sub-layer "
            "(pre-LN), x = x + sublayer(norm(x))": post(x),
            "there is a LayerNorm at the end of the pre-LN layer: a pre-LN layer ends with the residual "
            "sum; the stack's final norm belongs to the Encoder": n2(pre(x)),
            "the mask is not passed to self-attention: call layer.self_attn(h, h, h, mask=mask)": pre(x, None),
            "norm1 and norm2 are swapped: norm1 goes with self-attention, norm2 with the feed-forward network":
                (lambda h: h + ff(n1(h)))(x + sa(n2(x))),
        }
    h1 = n1(x + sa(x))
    return {
        "the residual connections are missing: each sub-layer's output is added to its input before "
        "the norm, norm(x + sublayer(x))": n2(ff(n1(sa(x)))),
        "the residual connection around the feed-forward network is missing: x = norm2(x + feed_forward(x))":
            n2(ff(h1)),
        "the residual connection around self-attention is missing: x = norm1(x + self_attn(x))":
            (lambda h: n2(h + ff(h)))(n1(sa(x))),
        "the sub-layer output is normalised before the residual is added: post-LN normalises the sum, "
        "norm1(x + self_attn(x))": (lambda h: h + n2(ff(h)))(x + n1(sa(x))),
        "it is a pre-LN layer, but layer.norm_first is False: the paper's post-LN layer normalises "
        "*after* each residual sum, norm(x + sublayer(x))": pre(x),
        "the mask is not passed to self-attention: call layer.self_attn(x, x, x, mask=mask)": post(x, None),
        "norm1 and norm2 are swapped: norm1 goes with self-attention, norm2 with the feed-forward network":
            (lambda h: n1(h + ff(h)))(n2(x + sa(x))),
    }


_ENCODER_PARTS = ["norm1", "self_attn", "norm2", "feed_forward"]
_ENCODER_EXPECT = {
    False: ({"self_attn": "the layer's input x as query, key and value, and mask=mask",
             "norm1": "the residual sum x + self_attn(x, x, x, mask=mask)[0]",
             "feed_forward": "h = norm1(x + self_attention)",
             "norm2": "the residual sum h + feed_forward(h)"},
            "the output of a post-LN layer is norm2(h + feed_forward(h))"),
    True: ({"norm1": "the layer's input x",
            "self_attn": "h = norm1(x) as query, key and value, and mask=mask",
            "norm2": "the un-normalised residual sum x + self_attn(h, h, h, mask=mask)[0]",
            "feed_forward": "norm2 of that residual sum"},
           "the output of a pre-LN layer is the residual sum x + feed_forward(norm2(x)), with no norm after it"),
}


@exercise(reference=encoder_layer_forward)
def check_encoder_layer_forward(fn):
    g = torch.Generator().manual_seed(2)
    cases = []
    with torch.random.fork_rng():                  # the layers' initialisation leaves the notebook's RNG alone
        torch.manual_seed(2)
        for norm_first in (False, True):
            for B, T, D, H, d_ff, pad in ((2, 5, 12, 3, 20, True), (1, 7, 10, 2, 9, False)):
                layer = EncoderLayer(D, H, d_ff, norm_first=norm_first).eval()
                _random_norms(layer, g)
                x = torch.randn(B, T, D, generator=g)
                ids = torch.randint(1, 5, (B, T), generator=g)
                if pad:
                    ids[0, T - 2:] = 0
                cases.append((layer, x, padding_mask(ids, 0) if pad else None, norm_first))
    for layer, x, mask, norm_first in cases:
        case = (f"a {'pre' if norm_first else 'post'}-LN layer, x of shape {tuple(x.shape)}, "
                f"{'a padding mask ' + str(tuple(mask.shape)) if mask is not None else 'no mask'}")
        expect, last_step = _ENCODER_EXPECT[norm_first]
        check_layer_output(fn, layer, (x, mask), reference=encoder_layer_forward, parts=_ENCODER_PARTS,
                           expect=expect, last_step=last_step, masks={"mask": mask},
                           mistakes=lambda: _encoder_mistakes(layer, x, mask), case=case, calling="layer(x, mask)")
    return len(cases)
