"""The decoder layer and stack (lesson 06): equal to PyTorch's, causal, cache-friendly."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import B, D, D_FF, H, S, T, randomise_norms
from transformer_lib.config import LayerConfig
from transformer_lib.decoder import Decoder, DecoderLayer, leaks_future
from transformer_lib.masks import causal_mask, padding_mask, to_torch_mask
from transformer_lib.multi_head_attention import fused_attention
from transformer_lib.torch_interop import copy_stack, torch_decoder_layer_like, torch_encoder_layer_like



def masks():
    """Target ids with padding at the end of the second sequence, source ids with padding in the first."""
    tgt = torch.randint(1, 9, (B, T))
    tgt[1, T - 2:] = 0
    src = torch.randint(1, 9, (B, S))
    src[0, S - 3:] = 0
    return tgt, src


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_layer_equals_torch_decoder_layer(norm_first, activation):
    ours = DecoderLayer(D, H, D_FF, norm_first=norm_first, activation=activation).eval()
    randomise_norms(ours)
    theirs = torch_decoder_layer_like(ours).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    tgt, src = masks()
    out = ours(x, memory, causal_mask(T) & padding_mask(tgt, 0), padding_mask(src, 0))
    expected = theirs(x, memory, tgt_mask=to_torch_mask(causal_mask(T)), tgt_key_padding_mask=tgt == 0,
                      memory_key_padding_mask=src == 0)
    assert out.shape == (B, T, D)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_stack_equals_torch_decoder(norm_first, activation):
    ours = Decoder(3, LayerConfig(D, H, D_FF, norm_first=norm_first, activation=activation)).eval()
    randomise_norms(ours)
    layer = nn.TransformerDecoderLayer(D, H, D_FF, 0.0, activation, batch_first=True, norm_first=norm_first)
    theirs = copy_stack(ours, nn.TransformerDecoder(layer, 3, norm=nn.LayerNorm(D))).eval()
    assert (theirs.norm is None) == (not norm_first)
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    tgt, src = masks()
    out = ours(x, memory, causal_mask(T) & padding_mask(tgt, 0), padding_mask(src, 0))
    expected = theirs(x, memory, tgt_mask=to_torch_mask(causal_mask(T)),                      # True = blocked
                      tgt_key_padding_mask=tgt == 0, memory_key_padding_mask=src == 0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
def test_gradients_equal_torch_in_training_mode(norm_first):
    ours = DecoderLayer(D, H, D_FF, norm_first=norm_first)
    theirs = torch_decoder_layer_like(ours)
    x, memory = torch.randn(B, T, D, requires_grad=True), torch.randn(B, S, D, requires_grad=True)
    tgt, src = masks()
    ours(x, memory, causal_mask(T) & padding_mask(tgt, 0), padding_mask(src, 0)).pow(2).sum().backward()
    grads, x.grad, memory.grad = (x.grad.clone(), memory.grad.clone()), None, None
    theirs(x, memory, tgt_mask=to_torch_mask(causal_mask(T)), tgt_key_padding_mask=tgt == 0,
           memory_key_padding_mask=src == 0).pow(2).sum().backward()
    torch.testing.assert_close(grads[0], x.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[1], memory.grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
def test_no_future_leak_with_the_causal_mask_and_a_leak_without(norm_first):
    layer = DecoderLayer(D, H, D_FF, norm_first=norm_first).eval()
    stack = Decoder(2, LayerConfig(D, H, D_FF, norm_first=norm_first)).eval()
    memory, x = torch.randn(B, S, D), torch.randn(B, T, D)
    for module in (layer, stack):
        assert not leaks_future(lambda h: module(h, memory, causal_mask(T)), x)
        assert leaks_future(lambda h: module(h, memory), x)
    # by hand: change the last target token; the earlier outputs stay exactly the same
    y = x.clone()
    y[:, -1] = torch.randn(B, D)
    a, b = layer(x, memory, causal_mask(T)), layer(y, memory, causal_mask(T))
    assert torch.equal(a[:, :-1], b[:, :-1]) and not torch.allclose(a[:, -1], b[:, -1])


def test_leaks_future_on_simple_functions():
    x = torch.randn(B, T, D)
    assert not leaks_future(torch.tanh, x)                                    # position-wise
    assert not leaks_future(lambda h: h.cumsum(dim=1), x)                     # only the past
    assert leaks_future(lambda h: h.flip(1).cumsum(dim=1).flip(1), x)         # only the future
    assert leaks_future(lambda h: h + 1e-4 * h[:, -1:], x)                    # a small leak
    assert not leaks_future(lambda h: h + 1e-4 * h[:, -1:], x, atol=1e-2)     # ... below a loose tolerance
    before = x.clone()
    leaks_future(lambda h: h.cumsum(dim=1), x)
    assert torch.equal(x, before)
    with pytest.raises(ValueError, match="3 dimensions"):
        leaks_future(torch.tanh, torch.randn(T, D))


def test_cross_attention_queries_come_from_the_decoder_and_weights_ignore_padded_memory():
    layer = DecoderLayer(D, H, D_FF).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    tgt, src = masks()
    layer(x, memory, causal_mask(T) & padding_mask(tgt, 0), padding_mask(src, 0))
    self_w, cross_w = layer.self_attn.last_weights, layer.cross_attn.last_weights
    assert self_w.shape == (B, H, T, T) and cross_w.shape == (B, H, T, S)   # one row per target position
    torch.testing.assert_close(cross_w.sum(-1), torch.ones(B, H, T))
    assert torch.all(cross_w[0, :, :, S - 3:] == 0)
    assert torch.all(self_w.triu(diagonal=1) == 0)                            # nothing above the diagonal
    # the memory changes every output; the queries' own source is x
    other = layer(x, memory + 1.0, causal_mask(T))
    assert not torch.allclose(other, layer(x, memory, causal_mask(T)))


def test_decoder_only_layer_is_a_causal_encoder_layer():
    """Without cross-attention (GPT's block) a decoder layer equals an encoder layer with a causal mask."""
    for norm_first in (False, True):
        ours = DecoderLayer(D, H, D_FF, norm_first=norm_first, cross_attention=False).eval()
        assert ours.cross_attn is None and ours.norm2 is None
        theirs = torch_encoder_layer_like(_as_encoder_layer(ours, norm_first)).eval()
        x = torch.randn(B, T, D)
        torch.testing.assert_close(ours(x, None, causal_mask(T)),
                                   theirs(x, src_mask=to_torch_mask(causal_mask(T))), atol=1e-5, rtol=1e-4)
        with pytest.raises(ValueError, match="memory .* must be None without it"):
            ours(x, torch.randn(B, S, D))
    with pytest.raises(ValueError, match="memory is required"):
        DecoderLayer(D, H, D_FF)(torch.randn(B, T, D), None)


def _as_encoder_layer(dec, norm_first):
    from transformer_lib.encoder import EncoderLayer
    enc = EncoderLayer(D, H, D_FF, norm_first=norm_first)
    enc.self_attn.load_state_dict(dec.self_attn.state_dict())
    enc.feed_forward.load_state_dict(dec.feed_forward.state_dict())
    enc.norm1.load_state_dict(dec.norm1.state_dict())
    enc.norm2.load_state_dict(dec.norm3.state_dict())
    return enc


def test_attention_weights_of_every_layer():
    dec = Decoder(3, LayerConfig(D, H, D_FF)).eval()
    dec(torch.randn(B, T, D), torch.randn(B, S, D), causal_mask(T))
    weights = dec.attention_weights()
    assert [w.shape for w in weights["self"]] == [(B, H, T, T)] * 3
    assert [w.shape for w in weights["cross"]] == [(B, H, T, S)] * 3
    with fused_attention(dec):                                    # the fused kernel keeps no weights
        dec(torch.randn(B, T, D), torch.randn(B, S, D), causal_mask(T))
    assert dec.attention_weights() == {"self": [None] * 3, "cross": [None] * 3}


def test_influence_map_of_a_masked_layer_is_lower_triangular_and_pictures_draw():
    import matplotlib.pyplot as plt
    from transformer_lib.plotting import influence_matrix, plot_decoder_visibility, plot_influence, plot_output_change
    layer = DecoderLayer(D, H, D_FF).eval()
    memory, x = torch.randn(1, S, D), torch.randn(1, T, D)
    masked = influence_matrix(lambda h: layer(h, memory, causal_mask(T)), x)
    assert torch.all(masked[~causal_mask(T)] == 0) and torch.all(masked[causal_mask(T)] > 0)
    assert torch.all(influence_matrix(lambda h: layer(h, memory), x) > 0)
    for fig in (plot_influence({"masked": masked}), plot_output_change({"a": torch.ones(T)}, changed_position=T - 1),
                plot_decoder_visibility(T=6, S=7, query=5, tgt_pad=0, src_pad=3, causal=False)):
        assert fig.axes and all(ax.get_title() for ax in fig.axes)
        plt.close(fig)
    with pytest.raises(ValueError, match="query must be a position in 0..5"):
        plot_decoder_visibility(T=6, query=6)


def test_input_errors_name_the_fix():
    layer = DecoderLayer(D, H, D_FF)
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    with pytest.raises(ValueError, match=r"x and memory must have the same batch size B, got x \(2, 5, 12\) and "
                                         r"memory \(1, 7, 12\)"):
        layer(x, memory[:1])
    with pytest.raises(TypeError, match=r"memory has dtype torch.float64 but the decoder layer's weights"):
        layer(x, memory.double())
    with pytest.raises(ValueError, match=r"memory must be \(B, S, d_model=12\), got shape \(2, 7, 4\)"):
        layer(x, memory[..., :4])
    with pytest.raises(TypeError, match="fn must be a function of x"):
        leaks_future("layer", x)
    with pytest.raises(TypeError, match="atol must be a number >= 0, got str '0'"):
        leaks_future(lambda h: h, x, atol="0")
