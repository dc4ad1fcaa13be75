"""Copying our weights into PyTorch's modules (used by lessons 04-07 to prove equality)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import B, D, D_FF, H, S, T
from transformer_lib.config import LayerConfig
from transformer_lib.decoder import Decoder, DecoderLayer
from transformer_lib.encoder import Encoder, EncoderLayer
from transformer_lib.masks import causal_mask, padding_mask, to_torch_mask
from transformer_lib.multi_head_attention import MultiHeadAttention
from transformer_lib.torch_interop import (copy_decoder_layer, copy_encoder_layer, copy_mha, copy_stack,
                                           copy_transformer, torch_decoder_layer_like, torch_encoder_layer_like,
                                           torch_transformer_like)
from transformer_lib.transformer import Transformer, TransformerConfig



@pytest.mark.parametrize("bias", [True, False])
def test_copy_mha_packs_q_k_v_into_in_proj(bias):
    ours = MultiHeadAttention(D, H, bias=bias).eval()
    theirs = copy_mha(ours, nn.MultiheadAttention(D, H, bias=bias, batch_first=True)).eval()
    assert torch.equal(theirs.in_proj_weight[D:2 * D], ours.w_k.weight)
    q, kv = torch.randn(B, T, D), torch.randn(B, S, D)
    ids = torch.randint(1, 5, (B, S))
    ids[1, -2:] = 0
    out, weights = ours(q, kv, kv, mask=padding_mask(ids, 0))
    expected, expected_weights = theirs(q, kv, kv, key_padding_mask=ids == 0, average_attn_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-4)


def test_our_mask_passed_unconverted_blocks_the_wrong_keys():
    ours = MultiHeadAttention(D, H).eval()
    theirs = copy_mha(ours, nn.MultiheadAttention(D, H, batch_first=True)).eval()
    x = torch.randn(B, T, D)
    good, _ = theirs(x, x, x, attn_mask=to_torch_mask(causal_mask(T)))
    bad, _ = theirs(x, x, x, attn_mask=causal_mask(T).triu(1) | causal_mask(T))   # not converted: keeps the diagonal
    torch.testing.assert_close(ours(x, x, x, mask=causal_mask(T))[0], good, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(good, bad)


def test_copy_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="batch_first=True"):
        copy_mha(MultiHeadAttention(D, H), nn.MultiheadAttention(D, H))
    with pytest.raises(ValueError, match=r"in_proj_weight: shape \(36, 12\) does not fit PyTorch's \(48, 16\)"):
        copy_mha(MultiHeadAttention(D, H), nn.MultiheadAttention(16, 4, batch_first=True))
    with pytest.raises(ValueError, match="linear1.weight"):
        copy_encoder_layer(EncoderLayer(D, H, D_FF), nn.TransformerEncoderLayer(D, H, 24, batch_first=True))
    with pytest.raises(ValueError, match="3 layers do not fit PyTorch's 2"):
        layer = nn.TransformerEncoderLayer(D, H, D_FF, batch_first=True)
        copy_stack(Encoder(3, LayerConfig(D, H, D_FF)), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))


def test_layer_copies_hold_every_weight():
    ours = DecoderLayer(D, H, D_FF)
    theirs = copy_decoder_layer(ours, nn.TransformerDecoderLayer(D, H, D_FF, batch_first=True))
    assert torch.equal(theirs.multihead_attn.out_proj.weight, ours.cross_attn.w_o.weight)
    assert torch.equal(theirs.linear2.bias, ours.feed_forward.linear2.bias)
    assert torch.equal(theirs.norm3.weight, ours.norm3.weight)
    ours_params = sum(p.numel() for p in ours.parameters())
    assert ours_params == sum(p.numel() for p in theirs.parameters())


def test_stack_copy_handles_the_final_norm():
    layer = nn.TransformerEncoderLayer(D, H, D_FF, batch_first=True)
    theirs = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(D), enable_nested_tensor=False)
    copy_stack(Encoder(2, LayerConfig(D, H, D_FF)), theirs)                      # post-LN: ours has no final norm
    assert theirs.norm is None
    pre = Encoder(2, LayerConfig(D, H, D_FF, norm_first=True))
    with torch.no_grad():
        pre.norm.weight.fill_(2.0)
    copy_stack(pre, theirs)                                         # pre-LN: a final norm is added and copied
    assert torch.equal(theirs.norm.weight, pre.norm.weight)


def test_nn_transformer_final_norms_are_removed_for_post_ln():
    """nn.Transformer always ends both stacks with a LayerNorm; the paper's post-LN model has none."""
    model = Transformer(TransformerConfig(11, 11, d_model=D, num_heads=H, num_layers=2, d_ff=D_FF, dropout=0.0)).eval()
    with torch.no_grad():              # as after training: LayerNorms with gamma != 1, beta != 0
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
    theirs = torch_transformer_like(model).eval()
    assert theirs.encoder.norm is None and theirs.decoder.norm is None
    src = torch.randint(4, 11, (B, S))
    tgt = torch.randint(4, 11, (B, T))
    x_src, x_tgt = model.src_pos(model.src_embed(src)), model.tgt_pos(model.tgt_embed(tgt))
    mask = to_torch_mask(causal_mask(T))
    with torch.no_grad():
        ours = model.decode(tgt, model.encode(src))
        torch.testing.assert_close(theirs(x_src, x_tgt, tgt_mask=mask), ours, atol=1e-5, rtol=1e-4)
        theirs.encoder.norm, theirs.decoder.norm = nn.LayerNorm(D), nn.LayerNorm(D)    # put them back
        # (with the last layer's norm at gamma = 1, beta = 0 the extra norm would be almost the identity)
        assert not torch.allclose(theirs(x_src, x_tgt, tgt_mask=mask), ours, atol=1e-3)
    pre = Transformer(TransformerConfig(11, 11, d_model=D, num_heads=H, num_layers=1, d_ff=D_FF, norm_first=True))
    assert copy_transformer(pre, torch_transformer_like(pre)).decoder.norm is not None


def test_like_helpers_copy_gelu_tanh_and_eps():
    enc = EncoderLayer(D, H, D_FF, activation="gelu_tanh", layer_norm_eps=1e-6, norm_first=True).eval()
    theirs = torch_encoder_layer_like(enc).eval()
    assert theirs.norm_first and theirs.norm1.eps == 1e-6
    x = torch.randn(B, S, D) * 3
    torch.testing.assert_close(enc(x), theirs(x), atol=1e-5, rtol=1e-4)
    dec = DecoderLayer(D, H, D_FF, activation="gelu_tanh").eval()
    memory, y = torch.randn(B, S, D), torch.randn(B, T, D)
    torch.testing.assert_close(dec(y, memory), torch_decoder_layer_like(dec).eval()(y, memory), atol=1e-5, rtol=1e-4)


def test_the_wrong_modules_are_named():
    with pytest.raises(TypeError, match="ours must be transformer_lib's MultiHeadAttention, got MultiheadAttention"):
        copy_mha(nn.MultiheadAttention(D, H, batch_first=True), nn.MultiheadAttention(D, H, batch_first=True))
    with pytest.raises(TypeError, match="theirs must be a torch.nn.TransformerEncoderLayer, got TransformerDecoderLayer"):
        copy_encoder_layer(EncoderLayer(D, H, 20), nn.TransformerDecoderLayer(D, H, 20, batch_first=True))
    with pytest.raises(ValueError, match="this DecoderLayer has no cross-attention"):
        torch_decoder_layer_like(DecoderLayer(D, H, 20, cross_attention=False))
    with pytest.raises(TypeError, match="ours must be transformer_lib's EncoderLayer or DecoderLayer, got Linear"):
        torch_encoder_layer_like(nn.Linear(2, 2))
