"""LayerNorm from scratch equals nn.LayerNorm (lesson 05)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import B, D, T
from transformer_lib.layer_norm import LayerNorm, layer_norm


@pytest.mark.parametrize("eps", [1e-5, 1e-12, 0.3])
@pytest.mark.parametrize("shape", [(B, T, D), (T, 3), (1, 1, 5)])
def test_equals_nn_layer_norm(shape, eps):
    ours, theirs = LayerNorm(shape[-1], eps=eps), nn.LayerNorm(shape[-1], eps=eps)
    with torch.no_grad():
        for m in (ours, theirs):
            m.weight.copy_(torch.linspace(0.5, 2.0, shape[-1]))
            m.bias.copy_(torch.linspace(-1.0, 1.0, shape[-1]))
    x = torch.randn(shape) * 4 + 3
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_normalises_each_token_to_mean_0_and_std_1():
    x = torch.randn(B, T, D) * 5 + 2
    y = LayerNorm(D)(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(B, T), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(B, T), atol=1e-3, rtol=0)


def test_biased_variance_and_eps_inside_the_root():
    x = torch.tensor([[1.0, 2.0, 4.0]])
    gamma, beta = torch.ones(3), torch.zeros(3)
    eps = 0.5
    var = ((x - x.mean()) ** 2).mean()                     # biased: divide by 3, not 2
    expected = (x - x.mean()) / torch.sqrt(var + eps)
    torch.testing.assert_close(layer_norm(x, gamma, beta, eps), expected)
    assert not torch.allclose(layer_norm(x, gamma, beta, eps), (x - x.mean()) / (var.sqrt() + eps))


def test_constant_token_gives_beta_not_nan():
    ln = LayerNorm(4)
    with torch.no_grad():
        ln.bias.copy_(torch.arange(4.0))
    torch.testing.assert_close(ln(torch.full((2, 4), 7.0)), torch.arange(4.0).expand(2, 4))


def test_gradients_match_nn_layer_norm():
    x = torch.randn(B, T, D, requires_grad=True)
    ours, theirs = LayerNorm(D), nn.LayerNorm(D)
    (ours(x) ** 2).sum().backward()
    ours_grad, x.grad = x.grad.clone(), None
    (theirs(x) ** 2).sum().backward()
    torch.testing.assert_close(ours_grad, x.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, atol=1e-4, rtol=1e-4)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match=r"last dimension must be d_model=12, got shape \(2, 5, 7\)"):
        LayerNorm(D)(torch.randn(B, T, 7))
    with pytest.raises(TypeError, match="float tensor"):
        LayerNorm(3)(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="eps must be a positive number"):
        LayerNorm(D, eps=0)
    assert "eps=1e-05" in repr(LayerNorm(D))


def test_input_of_another_dtype_and_mis_shaped_parameters_are_named():
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 but LayerNorm's weights are torch.float32"):
        LayerNorm(D)(torch.randn(B, T, D, dtype=torch.float64))
    x = torch.randn(B, T, D)
    with pytest.raises(ValueError, match=r"gamma must be \(D,\) = \(12,\) for x of shape \(2, 5, 12\), got shape \(5,\)"):
        layer_norm(x, torch.ones(5), torch.zeros(D))
    with pytest.raises(ValueError, match="eps must be a positive number, got -0.1"):
        layer_norm(x, torch.ones(D), torch.zeros(D), eps=-0.1)
