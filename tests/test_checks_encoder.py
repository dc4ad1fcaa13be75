"""Lesson 05's checks accept correct code and name each typical mistake."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_lib.checks import CheckFailed, check_encoder_layer_forward, check_feed_forward, check_layer_norm
from transformer_lib.encoder import encoder_layer_forward
from transformer_lib.feed_forward import feed_forward
from transformer_lib.layer_norm import layer_norm


# --------------------------------------------------------------------------- layer_norm
def ln_torch(x, gamma, beta, eps=1e-5):
    return F.layer_norm(x, (x.shape[-1],), gamma, beta, eps)


def ln_two_pass(x, gamma, beta, eps=1e-5):
    centred = x - x.mean(-1, keepdim=True)
    return gamma * centred * torch.rsqrt((centred ** 2).mean(-1, keepdim=True) + eps) + beta


def ln_float64(x, gamma, beta, eps=1e-5):
    x64 = x.double()
    y = (x64 - x64.mean(-1, keepdim=True)) / (x64.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
    return (gamma * y + beta).to(x.dtype)


@pytest.mark.parametrize("fn", [layer_norm, ln_torch, ln_two_pass, ln_float64])
def test_layer_norm_accepts_correct_versions(fn, capsys):
    assert check_layer_norm(fn) is fn
    assert "✅ layer_norm is correct" in capsys.readouterr().out


def _ln(dim=-1, unbiased=False, eps_outside=False, affine=True, swap=False, no_eps=False, no_sqrt=False,
        fixed_eps=None):
    def fn(x, gamma, beta, eps=1e-5):
        eps = eps if fixed_eps is None else fixed_eps
        mean = x.mean(dim=dim, keepdim=True)
        var = x.var(dim=dim, keepdim=True, unbiased=unbiased)
        if no_eps:
            denom = var.sqrt()
        elif eps_outside:
            denom = var.sqrt() + eps
        elif no_sqrt:
            denom = var + eps
        else:
            denom = (var + eps).sqrt()
        y = (x - mean) / denom
        if not affine:
            return y
        return beta * y + gamma if swap else gamma * y + beta
    return fn


@pytest.mark.parametrize("wrong, words", [
    (_ln(unbiased=True), "unbiased variance"),
    (_ln(eps_outside=True), "eps is added outside the square root"),
    (_ln(dim=0), "normalises over the first"),
    (_ln(dim=-2), "normalises over"),
    (_ln(dim=None), "whole tensor"),
    (_ln(affine=False), "gamma and beta are not applied"),
    (_ln(swap=True), "swapped"),
    (_ln(no_sqrt=True), "instead of the standard deviation"),
    (_ln(no_eps=True), "eps is missing"),
    (_ln(fixed_eps=1e-5), r"the eps argument is ignored \(a fixed 1e-5 is used\): with eps=0.5"),
    (lambda x, gamma, beta, eps=1e-5: x, "largest difference"),
])
def test_layer_norm_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_layer_norm(wrong)


def test_layer_norm_nan_on_a_constant_token_is_explained():
    def small_eps_outside_only_for_constants(x, gamma, beta, eps=1e-5):
        y = layer_norm(x, gamma, beta, eps)
        return torch.where(x.var(-1, keepdim=True) == 0, torch.nan, y)
    with pytest.raises(CheckFailed, match="all equal .* gives NaN or inf"):
        check_layer_norm(small_eps_outside_only_for_constants)


def test_layer_norm_wrong_axis_words_name_the_last_dimension():
    with pytest.raises(CheckFailed, match=r"over the last dimension only \(dim=-1"):
        check_layer_norm(_ln(dim=-2))


# --------------------------------------------------------------------------- feed_forward
def ffn_clamp(x, w_1, b_1, w_2, b_2):
    return torch.addmm(b_2, (x.reshape(-1, x.shape[-1]) @ w_1 + b_1).clamp(min=0), w_2).reshape(x.shape)


def ffn_linear(x, w_1, b_1, w_2, b_2):
    """Correct: F.linear with the weights turned to nn.Linear's (out, in) orientation."""
    return F.linear(torch.relu(F.linear(x, w_1.T, b_1)), w_2.T, b_2)


def ffn_einsum_float64(x, w_1, b_1, w_2, b_2):
    h = torch.relu(torch.einsum("...d,df->...f", x.double(), w_1.double()) + b_1)
    return (torch.einsum("...f,fd->...d", h, w_2.double()) + b_2).float()


@pytest.mark.parametrize("fn", [feed_forward, ffn_clamp, ffn_linear, ffn_einsum_float64])
def test_feed_forward_accepts_correct_versions(fn, capsys):
    assert check_feed_forward(fn) is fn
    assert "✅ feed_forward is correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (lambda x, w_1, b_1, w_2, b_2: (x @ w_1 + b_1) @ w_2 + b_2, "activation is missing"),
    (lambda x, w_1, b_1, w_2, b_2: torch.relu((x @ w_1 + b_1) @ w_2 + b_2), "after the second linear layer: it belongs between"),
    (lambda x, w_1, b_1, w_2, b_2: torch.relu(torch.relu(x @ w_1 + b_1) @ w_2 + b_2), "after the second linear layer too"),
    (lambda x, w_1, b_1, w_2, b_2: (torch.relu(x) @ w_1 + b_1) @ w_2 + b_2, "to the input before the first"),
    (lambda x, w_1, b_1, w_2, b_2: torch.relu(x @ w_1) @ w_2 + b_2, "b_1 is missing"),
    (lambda x, w_1, b_1, w_2, b_2: torch.relu(x @ w_1 + b_1) @ w_2, "b_2 is missing"),
    (lambda x, w_1, b_1, w_2, b_2: F.gelu(x @ w_1 + b_1) @ w_2 + b_2, "GELU"),
    (lambda x, w_1, b_1, w_2, b_2: (torch.relu(x @ w_1) + b_1) @ w_2 + b_2, "b_1 is added after the activation"),
    (lambda x, w_1, b_1, w_2, b_2: torch.relu(x @ w_1.T + b_1) @ w_2 + b_2, "raised RuntimeError"),
    (lambda x, w_1, b_1, w_2, b_2: F.linear(torch.relu(F.linear(x, w_1, b_1)), w_2, b_2),
     r"raised RuntimeError .*\(10x12 and 20x12\)\n   Hint: F.linear\(x, w\) computes x @ w.T"),
])
def test_feed_forward_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_feed_forward(wrong)


# --------------------------------------------------------------------------- encoder layer
def sa(layer, h, mask):
    return layer.self_attn(h, h, h, mask=mask)[0]


def enc_compact(layer, x, mask=None):
    """Another correct version: no dropout calls (eval mode), fused attention path."""
    attend = lambda h: layer.self_attn(h, h, h, mask=mask, need_weights=False)[0]
    if layer.norm_first:
        x = x + attend(layer.norm1(x))
        return x + layer.feed_forward(layer.norm2(x))
    x = layer.norm1(x + attend(x))
    return layer.norm2(x + layer.feed_forward(x))


def enc_modules_called_with_forward(layer, x, mask=None):
    """Another correct version: the parts' .forward methods, keyword arguments, no dropout."""
    if layer.norm_first:
        h = layer.norm1.forward(x)
        x = x + layer.self_attn.forward(query=h, key=h, value=h, mask=mask)[0]
        return x + layer.feed_forward.forward(layer.norm2.forward(x))
    x = layer.norm1.forward(x + layer.self_attn.forward(query=x, key=x, value=x, mask=mask)[0])
    return layer.norm2.forward(x + layer.feed_forward.forward(x))


@pytest.mark.parametrize("fn", [encoder_layer_forward, enc_compact, enc_modules_called_with_forward])
def test_encoder_layer_forward_accepts_correct_versions(fn, capsys):
    assert check_encoder_layer_forward(fn) is fn
    assert "✅ encoder_layer_forward is correct" in capsys.readouterr().out


def always_post(layer, x, mask=None):
    x = layer.norm1(x + sa(layer, x, mask))
    return layer.norm2(x + layer.feed_forward(x))


def always_pre(layer, x, mask=None):
    x = x + sa(layer, layer.norm1(x), mask)
    return x + layer.feed_forward(layer.norm2(x))


def post_no_residual(layer, x, mask=None):
    if layer.norm_first:
        return encoder_layer_forward(layer, x, mask)
    x = layer.norm1(sa(layer, x, mask))
    return layer.norm2(layer.feed_forward(x))


def post_no_ffn_residual(layer, x, mask=None):
    if layer.norm_first:
        return encoder_layer_forward(layer, x, mask)
    x = layer.norm1(x + sa(layer, x, mask))
    return layer.norm2(layer.feed_forward(x))


def post_norm_before_add(layer, x, mask=None):
    if layer.norm_first:
        return encoder_layer_forward(layer, x, mask)
    x = x + layer.norm1(sa(layer, x, mask))
    return x + layer.norm2(layer.feed_forward(x))


def pre_residual_after_norm(layer, x, mask=None):
    if not layer.norm_first:
        return encoder_layer_forward(layer, x, mask)
    x = layer.norm1(x)
    x = x + sa(layer, x, mask)
    x = layer.norm2(x)
    return x + layer.feed_forward(x)


def pre_no_residual(layer, x, mask=None):
    if not layer.norm_first:
        return encoder_layer_forward(layer, x, mask)
    x = sa(layer, layer.norm1(x), mask)
    return layer.feed_forward(layer.norm2(x))


def pre_final_norm(layer, x, mask=None):
    out = encoder_layer_forward(layer, x, mask)
    return layer.norm2(out) if layer.norm_first else out


def ignores_mask(layer, x, mask=None):
    return encoder_layer_forward(layer, x, None)


def swapped_norms(layer, x, mask=None):
    x = layer.norm2(x + sa(layer, x, mask))
    return layer.norm1(x + layer.feed_forward(x))


def calls_the_layer(layer, x, mask=None):
    return layer(x, mask)


def calls_the_layers_forward(layer, x, mask=None):
    return layer.forward(x, mask)                     # side-steps a guard that only watches layer(...)


def adds_the_tuple(layer, x, mask=None):
    x = layer.norm1(x + layer.self_attn(x, x, x, mask=mask))
    return layer.norm2(x + layer.feed_forward(x))


def inverts_the_callers_mask(layer, x, mask=None):
    if mask is not None:
        mask = ~mask.logical_not_()                   # inverts the caller's mask in place
    return encoder_layer_forward(layer, x, mask)


def ffn_gets_a_scaled_input(layer, x, mask=None):
    """An unknown mistake: the message must say where, not only 'is wrong'."""
    if layer.norm_first:
        return encoder_layer_forward(layer, x, mask)
    x = layer.norm1(x + sa(layer, x, mask))
    return layer.norm2(x + layer.feed_forward(1.5 * x))


def shortened_mask(layer, x, mask=None):
    m = None if mask is None else mask[..., :-1]      # the library raises on this mask
    return encoder_layer_forward(layer, x, m)


@pytest.mark.parametrize("wrong, words", [
    (always_pre, "it is a pre-LN layer, but layer.norm_first is False"),
    (always_post, "it is a post-LN layer, but layer.norm_first is True"),
    (post_no_residual, "residual connections are missing"),
    (post_no_ffn_residual, "residual connection around the feed-forward network is missing"),
    (post_norm_before_add, "normalised before the residual is added"),
    (pre_residual_after_norm, r"residual is added to the \*normalised\* x"),
    (pre_no_residual, "residual connections are missing"),
    (pre_final_norm, "LayerNorm at the end of the pre-LN layer"),
    (ignores_mask, "mask is not passed to self-attention"),
    (swapped_norms, "norm1 and norm2 are swapped"),
    (calls_the_layer, r"calls layer\(x, mask\) \(or layer.forward\) itself"),
    (calls_the_layers_forward, r"calls layer\(x, mask\) \(or layer.forward\) itself"),
    (adds_the_tuple, r"raised TypeError .*'Tensor' and 'tuple'\n   Hint: .*take the output with \[0\]"),
    (inverts_the_callers_mask, r"inverted its argument `mask` in place"),
    (ffn_gets_a_scaled_input, r"is wrong: the first wrong entry is .* Where it goes wrong: layer.feed_forward gets "
                              r"the wrong x: the first wrong entry is \[0, 0, 0\].* It should get h = norm1"),
    (shortened_mask, r"raised ValueError .*\n   Hint: before the error, the first difference from the paper's layer: "
                     r"layer.self_attn gets the wrong mask: a mask of shape \(2, 1, 1, 4\)"),
])
def test_encoder_layer_forward_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_encoder_layer_forward(wrong)


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_encoder_layer_forward(encoder_layer_forward)
    assert torch.equal(torch.rand(3), expected)
