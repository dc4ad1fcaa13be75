"""The position-wise feed-forward network (lesson 05)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import B, D, D_FF, T
from transformer_lib.feed_forward import ACTIVATIONS, FeedForward, feed_forward, get_activation



@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_module_equals_the_formula(activation):
    ffn = FeedForward(D, D_FF, activation=activation)
    x = torch.randn(B, T, D)
    expected = feed_forward(x, ffn.linear1.weight.T, ffn.linear1.bias, ffn.linear2.weight.T, ffn.linear2.bias,
                            activation=activation)
    assert ffn(x).shape == (B, T, D)
    torch.testing.assert_close(ffn(x), expected)


def test_activations_are_relu_exact_gelu_and_tanh_gelu():
    x = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(get_activation("relu")(x), x.clamp(min=0))
    torch.testing.assert_close(get_activation("gelu")(x), x * 0.5 * (1 + torch.erf(x / 2 ** 0.5)))
    tanh_gelu = 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x ** 3)))
    torch.testing.assert_close(get_activation("gelu_tanh")(x), tanh_gelu)
    assert not torch.allclose(get_activation("gelu")(x), tanh_gelu, atol=1e-5, rtol=0)


def test_position_wise_same_mlp_on_every_token_and_a_1x1_convolution():
    ffn = FeedForward(D, D_FF)
    x = torch.randn(B, T, D)
    out = ffn(x)
    for t in range(T):                                      # token by token gives the same numbers
        torch.testing.assert_close(ffn(x[:, t]), out[:, t])
    conv1 = nn.Conv1d(D, D_FF, kernel_size=1)
    conv2 = nn.Conv1d(D_FF, D, kernel_size=1)
    with torch.no_grad():
        conv1.weight.copy_(ffn.linear1.weight[:, :, None]); conv1.bias.copy_(ffn.linear1.bias)
        conv2.weight.copy_(ffn.linear2.weight[:, :, None]); conv2.bias.copy_(ffn.linear2.bias)
    as_conv = conv2(F.relu(conv1(x.transpose(1, 2)))).transpose(1, 2)   # (B, D, T) convolutions
    torch.testing.assert_close(as_conv, out, atol=1e-6, rtol=1e-5)


def test_tokens_do_not_mix():
    ffn = FeedForward(D, D_FF)
    x = torch.randn(B, T, D)
    y = x.clone()
    y[:, 3] += 1.0
    changed = (ffn(x) - ffn(y)).abs().amax(dim=(0, 2))
    assert changed[3] > 0 and torch.all(changed[torch.arange(T) != 3] == 0)


def test_parameter_count_and_dropout():
    ffn = FeedForward(D, D_FF, dropout=0.5)
    assert sum(p.numel() for p in ffn.parameters()) == 2 * D * D_FF + D_FF + D
    x = torch.randn(B, T, D)
    ffn.eval()
    torch.testing.assert_close(ffn(x), ffn(x))
    ffn.train()
    assert not torch.equal(ffn(x), ffn(x))
    assert "activation='relu'" in repr(ffn)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match=r"activation must be one of \['gelu', 'gelu_tanh', 'relu'\], got 'swish'"):
        FeedForward(D, D_FF, activation="swish")
    with pytest.raises(ValueError, match="activation must be one of"):
        get_activation(None)
    with pytest.raises(TypeError, match="d_ff must be a positive int"):
        FeedForward(D, 2.5)
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        FeedForward(0, D_FF)
    with pytest.raises(ValueError, match="dropout"):
        FeedForward(D, D_FF, dropout=1.0)


def test_influence_map_of_the_ffn_is_diagonal():
    from transformer_lib.plotting import influence_matrix
    m = influence_matrix(FeedForward(D, D_FF), torch.randn(1, T, D))
    assert m.shape == (T, T)
    assert torch.all(m.diagonal() > 0) and torch.all(m[~torch.eye(T, dtype=torch.bool)] == 0)
    with pytest.raises(ValueError, match=r"one sequence of shape \(1, T, D\)"):
        influence_matrix(FeedForward(D, D_FF), torch.randn(B, T, D))


@pytest.mark.parametrize("x, error, words", [
    (torch.randn(B, T, D + 2), ValueError,
     r"x must be \(\.\.\., D\) with d_model=12 features in its last dimension, got shape \(2, 5, 14\): its last dimension has 14"),
    (torch.randn(B, T, D, dtype=torch.float64), TypeError,
     r"x has dtype torch.float64 but FeedForward's weights are torch.float32.*x.to\(torch.float32\)"),
    (torch.randn(B, T, D).half(), TypeError, r"x has dtype torch.float16 but FeedForward's weights are torch.float32"),
    (torch.ones(B, T, D, dtype=torch.long), TypeError, "x must be a float tensor"),
])
def test_module_input_errors_name_the_fix(x, error, words):
    with pytest.raises(error, match=words):
        FeedForward(D, D_FF)(x)


def test_formula_checks_the_matrix_shapes():
    x, w_1, b_1, w_2, b_2 = torch.randn(B, T, D), torch.randn(D, D_FF), torch.randn(D_FF), torch.randn(D_FF, D), torch.randn(D)
    with pytest.raises(ValueError, match=r"w_2 must be \(d_ff, D\) = \(20, 12\) .*got shape \(12, 20\); nn.Linear stores "
                                         r"the transpose: pass linear.weight.T"):
        feed_forward(x, w_1, b_1, w_2.T, b_2)
    with pytest.raises(ValueError, match=r"b_1 must be \(d_ff,\) = \(20,\)"):
        feed_forward(x, w_1, b_2, w_2, b_2)
    with pytest.raises(TypeError, match="x has dtype torch.float64 but the network's weights are torch.float32"):
        feed_forward(x.double(), w_1, b_1, w_2, b_2)
