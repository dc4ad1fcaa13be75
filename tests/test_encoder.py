"""The encoder layer and stack (lesson 05), compared with PyTorch's own modules."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from conftest import B, D, D_FF, H, S, randomise_norms
from transformer_lib.config import LayerConfig
from transformer_lib.encoder import Encoder, EncoderLayer
from transformer_lib.masks import padding_mask
from transformer_lib.multi_head_attention import fused_attention
from transformer_lib.torch_interop import copy_stack, torch_encoder_layer_like

ACTIVATIONS = ["relu", "gelu", "gelu_tanh"]


def padded_ids(length=S):
    ids = torch.randint(1, 9, (B, length))
    ids[0, length - 3:] = 0                            # the first sequence ends in 3 <pad>
    return ids


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_layer_equals_torch_encoder_layer(norm_first, activation, masked):
    ours = EncoderLayer(D, H, D_FF, norm_first=norm_first, activation=activation).eval()
    randomise_norms(ours)
    theirs = torch_encoder_layer_like(ours).eval()
    x, ids = torch.randn(B, S, D), padded_ids()
    out = ours(x, padding_mask(ids, 0) if masked else None)
    expected = theirs(x, src_key_padding_mask=(ids == 0) if masked else None)   # PyTorch: True = blocked
    assert out.shape == (B, S, D)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
def test_layer_gradients_equal_torch_in_training_mode(norm_first):
    ours = EncoderLayer(D, H, D_FF, norm_first=norm_first, activation="gelu")   # train mode, dropout 0
    theirs = torch_encoder_layer_like(ours)
    x, ids = torch.randn(B, S, D, requires_grad=True), padded_ids()
    ours(x, padding_mask(ids, 0)).pow(2).sum().backward()
    ours_grad, x.grad = x.grad.clone(), None
    theirs(x, src_key_padding_mask=ids == 0).pow(2).sum().backward()
    torch.testing.assert_close(ours_grad, x.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.feed_forward.linear1.weight.grad, theirs.linear1.weight.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.self_attn.w_q.weight.grad, theirs.self_attn.in_proj_weight.grad[:D], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_stack_equals_torch_encoder(norm_first, activation):
    ours = Encoder(3, LayerConfig(D, H, D_FF, norm_first=norm_first, activation=activation)).eval()
    randomise_norms(ours)
    layer = nn.TransformerEncoderLayer(D, H, D_FF, 0.0, activation, batch_first=True, norm_first=norm_first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                # "enable_nested_tensor is True, but ... odd num_heads"
        theirs = copy_stack(ours, nn.TransformerEncoder(layer, 3)).eval()
    assert (ours.norm is None) == (not norm_first) and (theirs.norm is None) == (not norm_first)
    x, ids = torch.randn(B, S, D), padded_ids()
    with torch.no_grad():
        torch.testing.assert_close(ours(x, padding_mask(ids, 0)), theirs(x, src_key_padding_mask=ids == 0),
                                   atol=1e-5, rtol=1e-4)


def test_fast_path_zeroes_padded_positions_so_compare_the_others():
    """With an even number of heads and no autograd, nn.TransformerEncoder takes its "fast path"
    (nested tensors) and returns 0 at padded positions; ours computes them like any token."""
    ours = Encoder(2, LayerConfig(D, 4, D_FF)).eval()
    layer = nn.TransformerEncoderLayer(D, 4, D_FF, 0.0, batch_first=True)
    theirs = copy_stack(ours, nn.TransformerEncoder(layer, 2, enable_nested_tensor=True)).eval()
    x, ids = torch.randn(B, S, D), padded_ids()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")                # nested tensors are a prototype
        out, expected = ours(x, padding_mask(ids, 0)), theirs(x, src_key_padding_mask=ids == 0)
    keep = ids != 0
    torch.testing.assert_close(out[keep], expected[keep], atol=1e-5, rtol=1e-4)
    assert torch.all(expected[~keep] == 0) and out[~keep].abs().min() > 0


def test_padding_tokens_do_not_change_the_other_positions():
    enc = Encoder(2, LayerConfig(D, H, D_FF)).eval()
    x, ids = torch.randn(B, S, D), padded_ids()
    y = x.clone()
    y[0, S - 3:] = torch.randn(3, D)                   # change what sits at the padded positions
    keep = ids != 0
    mask = padding_mask(ids, 0)
    torch.testing.assert_close(enc(x, mask)[keep], enc(y, mask)[keep])
    assert not torch.allclose(enc(x)[keep], enc(y)[keep])   # without the mask they leak in


def test_every_layer_keeps_its_attention_weights_unless_fused():
    enc = Encoder(3, LayerConfig(D, H, D_FF))
    x, ids = torch.randn(B, S, D), padded_ids()
    with fused_attention(enc):
        enc(x, padding_mask(ids, 0))
    assert enc.attention_weights() == [None, None, None]     # the fused kernel keeps no weights
    enc(x, padding_mask(ids, 0))                             # training mode too: the weights are kept
    weights = enc.attention_weights()
    assert len(weights) == 3
    for w in weights:
        assert w.shape == (B, H, S, S)
        torch.testing.assert_close(w.sum(-1), torch.ones(B, H, S))
        assert torch.all(w[0, :, :, S - 3:] == 0)             # nobody looks at <pad>


def test_train_mode_uses_dropout_eval_mode_is_deterministic():
    enc = Encoder(2, LayerConfig(D, H, D_FF, dropout=0.3))
    x = torch.randn(B, S, D)
    assert not torch.equal(enc(x), enc(x))
    enc.eval()
    torch.testing.assert_close(enc(x), enc(x))


def test_layers_are_independent_copies():
    enc = Encoder(2, LayerConfig(D, H, D_FF))
    assert enc.layers[0].self_attn.w_q.weight is not enc.layers[1].self_attn.w_q.weight
    assert not torch.equal(enc.layers[0].self_attn.w_q.weight, enc.layers[1].self_attn.w_q.weight)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        EncoderLayer(10, 3, D_FF)
    with pytest.raises(ValueError, match="activation must be one of"):
        EncoderLayer(D, H, D_FF, activation="tanh")
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        Encoder(0, LayerConfig(D, H, D_FF))
    with pytest.raises(ValueError, match=r"d_model=12"):
        EncoderLayer(D, H, D_FF)(torch.randn(B, S, 7))


@pytest.mark.parametrize("norm_first", [False, True])
def test_input_errors_name_the_fix(norm_first):
    layer = EncoderLayer(D, H, D_FF, norm_first=norm_first)
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 but the encoder layer's weights are torch.float32"):
        layer(torch.randn(B, S, D, dtype=torch.float64))        # pre-LN: nn.LayerNorm would raise first
    with pytest.raises(ValueError, match=r"x must be \(B, T, d_model=12\), got shape \(2, 7, 10\)"):
        layer(torch.randn(B, S, 10))
    ids = torch.randint(1, 9, (S, S))                          # B == S: a (B, S) mask looks like a (T, S) one
    ids[0, 4:] = 0
    with pytest.raises(ValueError, match=r"ambiguous .*padding_mask\(ids, pad_id\)"):
        Encoder(2, LayerConfig(D, H, D_FF))(torch.randn(S, S, D), ids != 0)
    with pytest.raises(TypeError, match="norm_first must be True or False, got 1"):
        EncoderLayer(D, H, D_FF, norm_first=1)


def test_a_stack_is_built_from_one_layer_config():
    config = LayerConfig(D, H, D_FF, norm_first=True, activation="gelu", layer_norm_eps=1e-6)
    enc = Encoder(2, config)
    assert all(layer.norm_first and layer.norm1.eps == 1e-6 for layer in enc.layers) and enc.norm.eps == 1e-6
    assert config.kwargs() == dict(d_model=D, num_heads=H, d_ff=D_FF, dropout=0.0, norm_first=True,
                                   activation="gelu", layer_norm_eps=1e-6)
    with pytest.warns(DeprecationWarning, match=r"Encoder\(num_layers, d_model, num_heads, d_ff, \.\.\.\) is deprecated"):
        old = Encoder(2, D, H, D_FF, norm_first=True)              # the old form, for one release
    assert old.layers[0].norm_first and old.norm is not None
    with pytest.raises(TypeError, match=r"Encoder takes \(num_layers, config\) with config a LayerConfig"):
        Encoder(2, "config")
    with pytest.raises(ValueError, match="d_model=10 is not divisible by num_heads=3"):
        LayerConfig(10, 3, D_FF)
