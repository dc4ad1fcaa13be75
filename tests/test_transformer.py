"""The full Transformer (lesson 07): config, masks, weight tying, parameter count, caching."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from conftest import B, D, H, S, T
from transformer_lib.masks import padding_mask
from transformer_lib.multi_head_attention import fused_attention
from transformer_lib.torch_interop import torch_transformer_like
from transformer_lib.transformer import Transformer, TransformerConfig, count_transformer_parameters

V_SRC, V_TGT = 13, 17


def config(**changes):
    fields = dict(src_vocab_size=V_SRC, tgt_vocab_size=V_TGT, d_model=D, num_heads=H, num_layers=2, d_ff=20,
                  dropout=0.0, max_len=32)
    fields.update(changes)
    return TransformerConfig(**fields)


def batch(pad=True):
    src = torch.randint(4, V_SRC, (B, S))
    tgt = torch.randint(4, V_TGT, (B, T))
    tgt[:, 0] = 2                                       # <bos>
    if pad:
        src[0, S - 3:] = 0
        tgt[1, T - 2:] = 0
    return src, tgt


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("changes, error, words", [
    (dict(d_model=10, num_heads=3), ValueError, "d_model=10 is not divisible by num_heads=3"),
    (dict(activation="swish"), ValueError, r"activation must be one of \['gelu', 'gelu_tanh', 'relu'\], got 'swish'"),
    (dict(positional="rotary"), ValueError, r"positional must be one of \('sinusoidal', 'learned'\), got 'rotary'"),
    (dict(share_embeddings=True), ValueError, "share_embeddings needs one vocabulary, got src_vocab_size=13 and tgt_vocab_size=17"),
    (dict(d_model=0), ValueError, "d_model must be a positive int, got 0"),
    (dict(num_layers=2.0), ValueError, "num_layers must be a positive int"),
    (dict(num_decoder_layers=0), ValueError, "num_decoder_layers must be a positive int"),
    (dict(dropout=1.0), ValueError, r"dropout must be a number in \[0, 1\)"),
    (dict(dropout=True), ValueError, "dropout"),
    (dict(layer_norm_eps=0), ValueError, "layer_norm_eps must be a positive number"),
    (dict(pad_id=13), ValueError, "pad_id must be an id in both vocabularies"),
    (dict(pad_id=-1), ValueError, "pad_id"),
    (dict(norm_first="yes"), TypeError, "norm_first must be True or False, got 'yes'"),
    (dict(tie_weights=1), TypeError, "tie_weights must be True or False"),
])
def test_config_rejects_bad_values(changes, error, words):
    with pytest.raises(error, match=words):
        config(**changes)


def test_config_is_frozen_and_round_trips():
    c = config(num_decoder_layers=3, norm_first=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.d_model = 16
    assert TransformerConfig.from_dict(c.to_dict()) == c
    assert c.replace(d_model=15).d_model == 15 and c.d_model == D
    assert (c.encoder_layers, c.decoder_layers) == (2, 3)
    with pytest.raises(ValueError, match="not divisible"):
        c.replace(num_heads=5)
    with pytest.raises(TypeError, match="must be a TransformerConfig"):
        Transformer(c.to_dict())


def test_named_configs():
    base = TransformerConfig.base()
    assert (base.d_model, base.num_heads, base.num_layers, base.d_ff, base.dropout) == (512, 8, 6, 2048, 0.1)
    assert base.share_embeddings and base.tie_weights and not base.norm_first and base.src_vocab_size == 37000
    tiny = TransformerConfig.tiny(40, 50, num_layers=1)
    assert (tiny.src_vocab_size, tiny.tgt_vocab_size, tiny.d_model, tiny.num_layers) == (40, 50, 64, 1)
    assert TransformerConfig.tiny(40).tgt_vocab_size == 40


# --------------------------------------------------------------------------- parameters
def test_base_model_has_63_million_parameters():
    assert count_transformer_parameters(TransformerConfig.base()) == 63_119_496
    with torch.device("meta"):                                   # shapes only: no memory, no time
        model = Transformer(TransformerConfig.base())
    assert model.num_parameters() == 63_119_496
    assert "parameters=63,119,496" in repr(model)


@pytest.mark.parametrize("tie, share, norm_first, positional", list(itertools.product(
    [True, False], [True, False], [True, False], ["sinusoidal", "learned"])))
def test_formula_equals_the_module(tie, share, norm_first, positional):
    c = config(tgt_vocab_size=V_SRC if share else V_TGT, tie_weights=tie, share_embeddings=share,
               norm_first=norm_first, positional=positional, num_decoder_layers=3)
    assert count_transformer_parameters(c) == Transformer(c).num_parameters()


def test_weight_tying_shares_one_tensor():
    model = Transformer(config())
    assert model.generator.weight is model.tgt_embed.embedding.weight
    assert model.src_embed is not model.tgt_embed
    names = [n for n, _ in model.named_parameters()]
    assert "generator.weight" not in names and "generator.bias" in names   # listed once, under the embedding
    src, tgt = batch()
    model(src, tgt).sum().backward()
    assert model.tgt_embed.embedding.weight.grad is model.generator.weight.grad
    shared = Transformer(config(tgt_vocab_size=V_SRC, share_embeddings=True))
    assert shared.src_embed is shared.tgt_embed and shared.generator.weight is shared.src_embed.weight
    untied = Transformer(config(tie_weights=False))
    assert untied.generator.weight is not untied.tgt_embed.embedding.weight
    assert untied.num_parameters() == model.num_parameters() + V_TGT * D


# --------------------------------------------------------------------------- forward
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("positional", ["sinusoidal", "learned"])
def test_forward_shapes_and_no_future_leak(norm_first, positional):
    model = Transformer(config(norm_first=norm_first, positional=positional)).eval()
    src, tgt = batch()
    logits = model(src, tgt)
    assert logits.shape == (B, T, V_TGT)
    for t in range(1, T):                                  # change target tokens t.. : logits before t stay
        changed = tgt.clone()
        changed[:, t:] = (changed[:, t:] + 1) % (V_TGT - 4) + 4
        other = model(src, changed)
        torch.testing.assert_close(other[:, :t], logits[:, :t], atol=1e-6, rtol=0)
        assert not torch.allclose(other[:, t:], logits[:, t:])
    other_src = src.clone()
    other_src[1, 0] = (src[1, 0] + 1) % (V_SRC - 4) + 4        # the source is seen by every position
    assert not torch.allclose(model(other_src, tgt)[1, 0], logits[1, 0])


def test_padded_source_tokens_change_nothing():
    model = Transformer(config()).eval()
    src, tgt = batch()
    logits = model(src, tgt)
    other = src.clone()
    other[0, S - 3:] = 5                                   # same ids, no longer padding: now they count
    assert not torch.allclose(model(other, tgt)[0], logits[0])
    model_out = model.decode(tgt, model.encode(src), memory_mask=padding_mask(src, 0))
    torch.testing.assert_close(model.generator(model_out), logits)


def test_attention_weights_of_all_layers_in_eval_mode():
    model = Transformer(config(num_decoder_layers=3)).eval()
    src, tgt = batch()
    model(src, tgt)
    weights = model.attention_weights()
    assert set(weights) == {"encoder", "decoder", "cross"}
    assert [w.shape for w in weights["encoder"]] == [(B, H, S, S)] * 2
    assert [w.shape for w in weights["decoder"]] == [(B, H, T, T)] * 3
    assert [w.shape for w in weights["cross"]] == [(B, H, T, S)] * 3
    for w in weights["cross"]:
        assert torch.all(w[0, :, :, S - 3:] == 0)            # padded source tokens get no attention
    for w in weights["decoder"]:
        assert torch.all(w.triu(diagonal=1) == 0)            # no query looks ahead
    with fused_attention(model):                                  # the fused kernel keeps no weights
        model(src, tgt)
    assert all(w is None for ws in model.attention_weights().values() for w in ws)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_equals_torch_transformer_with_copied_weights(norm_first, activation):
    model = Transformer(config(norm_first=norm_first, activation=activation, num_decoder_layers=3)).eval()
    theirs = torch_transformer_like(model).eval()
    src, tgt = batch()
    with torch.no_grad():
        ours = model.decode(tgt, model.encode(src), memory_mask=padding_mask(src, 0))
        expected = theirs(model.src_pos(model.src_embed(src)), model.tgt_pos(model.tgt_embed(tgt)),
                          tgt_mask=torch.ones(T, T, dtype=torch.bool).triu(1),          # True = blocked
                          src_key_padding_mask=src == 0, tgt_key_padding_mask=tgt == 0,
                          memory_key_padding_mask=src == 0)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)


def test_bad_input_is_rejected():
    model = Transformer(config())
    with pytest.raises(TypeError, match="src must be an integer tensor"):
        model(torch.randn(B, S), torch.zeros(B, T, dtype=torch.long))
    with pytest.raises(ValueError, match="tgt must have 2 dimensions"):
        model(torch.zeros(B, S, dtype=torch.long), torch.zeros(T, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 13\)"):
        model.encode(torch.full((B, S), 13))
    with pytest.raises(ValueError, match="longer than max_len"):
        model.encode(torch.ones(1, 40, dtype=torch.long))


def test_pictures_of_the_model_draw_for_both_norm_placements():
    import matplotlib.pyplot as plt
    from transformer_lib.plotting import plot_next_token_probs, plot_parameter_breakdown, plot_transformer_diagram
    for c in (TransformerConfig.base(), config(norm_first=True, tie_weights=False)):
        fig = plot_transformer_diagram(c)
        texts = " ".join(t.get_text() for t in fig.axes[0].texts)
        assert "cross_attn" in texts and "generator" in texts and ("norm3" in texts)
        assert ("tie_weights" in texts) == c.tie_weights and ("decoder.norm" in texts) == c.norm_first
        plt.close(fig)
    fig = plot_parameter_breakdown({"a": 3_000_000, "b": 1_000_000})
    assert len(fig.axes[0].patches) == 2 and "4.00 M in all" in fig.axes[0].get_title()
    assert "(75 %)" in " ".join(t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)
    fig = plot_next_token_probs(torch.full((V_TGT,), 1 / V_TGT), [str(i) for i in range(V_TGT)], k=5)
    assert len(fig.axes[0].patches) == 5
    plt.close(fig)
    with pytest.raises(ValueError, match="one token name each"):
        plot_next_token_probs(torch.ones(3), ["a"])


def test_source_and_target_batches_must_match():
    model = Transformer(config()).eval()
    src, tgt = batch()
    with pytest.raises(ValueError, match=r"the batch number of src and tgt must be equal, got src \(2, 7\) and tgt \(1, 5\)"):
        model(src, tgt[:1])                                   # nn.Transformer raises too; it used to give (2, 5, V)
    memory = model.encode(src)
    with pytest.raises(ValueError, match=r"the batch number of tgt and memory must be equal, got tgt \(1, 5\) and "
                                         r"memory \(2, 7, 12\)"):
        model.decode(tgt[:1], memory)


def test_ids_of_a_small_integer_dtype_are_named():
    model = Transformer(config()).eval()
    src, tgt = batch()
    with pytest.raises(TypeError, match=r"src must be an integer tensor of token ids in int64 .*src.long\(\)"):
        model(src.to(torch.uint8), tgt)
    torch.testing.assert_close(model(src.int(), tgt.int()), model(src, tgt))
