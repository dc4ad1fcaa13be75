"""Lesson 07's checks accept correct code and name each typical mistake."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transformer_lib.checks import (CheckFailed, check_count_transformer_parameters, check_decode_target,
                                    check_encode_source)
from transformer_lib.masks import causal_mask, padding_mask
from transformer_lib.transformer import (Transformer, TransformerConfig, count_transformer_parameters, decode_target,
                                         encode_source)


# --------------------------------------------------------------------------- encode_source
def encode_mask_first(model, src, src_mask=None):
    mask = src_mask if src_mask is not None else (src != model.config.pad_id)[:, None, None, :]
    h = model.src_embed.embedding(src) * model.config.d_model ** 0.5
    return model.encoder(model.src_pos(h), mask)


@pytest.mark.parametrize("fn", [encode_source, encode_mask_first])
def test_encode_source_accepts_correct_versions(fn, capsys):
    assert check_encode_source(fn) is fn
    assert "✅ encode_source is correct" in capsys.readouterr().out


def enc(embed=None, pos=True, mask=True, use_given=True, twice=False):
    def fn(model, src, src_mask=None):
        m = src_mask if (src_mask is not None and use_given) else padding_mask(src, model.config.pad_id)
        x = (embed or model.src_embed)(src)
        if twice:
            x = x * model.config.d_model ** 0.5
        if pos:
            x = model.src_pos(x)
        return model.encoder(x, m if mask else None)
    return fn


@pytest.mark.parametrize("wrong, words", [
    (enc(pos=False), "positional encoding is missing"),
    (enc(mask=False), "padding mask is missing"),
    (enc(use_given=False), "src_mask argument is ignored"),
    (lambda model, src, src_mask=None: model.encoder(model.src_pos(model.src_embed.embedding(src)),
                                                     padding_mask(src, 0) if src_mask is None else src_mask),
     r"not scaled by sqrt\(d_model\)"),
    (lambda model, src, src_mask=None: model.encode(src, src_mask), r"calls model.encode\(...\) itself"),
    (enc(twice=True), r"scaled by sqrt\(d_model\) twice"),
    (lambda model, src, src_mask=None: model.encoder(model.src_pos(model.src_embed(src) * 1.1),
                                                     padding_mask(src, 0) if src_mask is None else src_mask),
     r"Where it goes wrong: model.src_pos gets the wrong x: the first wrong entry is \[0, 0, 0\]"),
])
def test_encode_source_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_encode_source(wrong)


def test_encode_source_names_the_wrong_embedding_on_a_model_with_learned_positions():
    def target_side(model, src, src_mask=None):
        m = padding_mask(src, 0) if src_mask is None else src_mask
        return model.encoder(model.tgt_pos(model.tgt_embed(src)), m)
    # the first (sinusoidal, shared positions) model cannot tell; the learned-positions one can
    with pytest.raises(CheckFailed, match="target's embedding or positions"):
        check_encode_source(target_side)


# --------------------------------------------------------------------------- decode_target
def decode_inline(model, tgt, memory, memory_mask=None):
    T = tgt.shape[1]
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool)) & (tgt != 0)[:, None, None, :]
    return model.decoder(model.tgt_pos(model.tgt_embed(tgt)), memory, mask, memory_mask)


@pytest.mark.parametrize("fn", [decode_target, decode_inline])
def test_decode_target_accepts_correct_versions(fn, capsys):
    assert check_decode_target(fn) is fn
    assert "✅ decode_target is correct" in capsys.readouterr().out


def dec(causal=True, pad=True, pass_memory_mask=True, pos="tgt", scale=True, logits=False, mask_from="tgt"):
    def fn(model, tgt, memory, memory_mask=None):
        T = tgt.shape[1]
        mask = torch.ones(1, 1, T, T, dtype=torch.bool)
        if causal:
            mask = mask & causal_mask(T)
        if pad:
            mask = mask & padding_mask(tgt, 0)
        if mask_from == "memory":
            mask = memory_mask
        x = model.tgt_embed(tgt) if scale else model.tgt_embed.embedding(tgt)
        if scale == "twice":
            x = x * model.config.d_model ** 0.5
        if pos:
            x = (model.tgt_pos if pos == "tgt" else model.src_pos)(x)
        out = model.decoder(x, memory, mask, memory_mask if pass_memory_mask else None)
        return model.generator(out) if logits else out
    return fn


@pytest.mark.parametrize("wrong, words", [
    (dec(causal=False), "causal mask is missing"),
    (dec(pad=False), "target padding mask is missing"),
    (dec(pass_memory_mask=False), "memory_mask is not passed"),
    (dec(pos=None), "positional encoding is missing"),
    (dec(scale=False), r"not scaled by sqrt\(d_model\)"),
    (dec(pos="src"), "source's positions"),
    (dec(logits=True), r"returns logits \(B, T, V\)"),
    (lambda model, tgt, memory, memory_mask=None: model.decode(tgt, memory, memory_mask=memory_mask),
     r"calls model.decode\(...\) itself"),
    (dec(scale="twice"), r"scaled by sqrt\(d_model\) twice"),
    (dec(mask_from="memory"), r"raised ValueError .*\n   Hint: before the error, the first difference from the "
                              r"reference: model.decoder gets the wrong tgt_mask: it gets memory_mask, of shape \(2, 1, 1, 7\)"),
])
def test_decode_target_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_decode_target(wrong)


# --------------------------------------------------------------------------- parameter count
def count_by_modules(config):
    """Another correct version: build the model and count (what the formula must equal)."""
    return Transformer(config).num_parameters() if config.d_model < 100 else count_transformer_parameters(config)


def count_compact(c):
    D = c.d_model
    lin = lambda n_in, n_out: n_in * n_out + n_out
    mha, ffn, ln = 4 * lin(D, D), lin(D, c.d_ff) + lin(c.d_ff, D), 2 * D
    total = c.encoder_layers * (mha + ffn + 2 * ln) + c.decoder_layers * (2 * mha + ffn + 3 * ln)
    total += 2 * ln * c.norm_first
    total += c.src_vocab_size * D + (not c.share_embeddings) * c.tgt_vocab_size * D
    total += (c.positional == "learned") * 2 * c.max_len * D
    total += lin(D, c.tgt_vocab_size) - c.tie_weights * D * c.tgt_vocab_size
    return int(total)


@pytest.mark.parametrize("fn", [count_transformer_parameters, count_compact, count_by_modules,
                                lambda c: np.int64(count_compact(c)),                 # NumPy's integer
                                lambda c: torch.tensor(count_compact(c)),             # a 0-d integer tensor
                                lambda c: float(count_compact(c))],                   # a whole float
                         ids=["reference", "compact", "by_modules", "np.int64", "tensor", "float"])
def test_count_accepts_correct_versions(fn, capsys):
    assert check_count_transformer_parameters(fn) is fn
    assert "✅ count_transformer_parameters is correct" in capsys.readouterr().out


def counting(**wrong):
    """count_compact with one typical mistake."""
    def fn(c):
        D = c.d_model
        bias = 0 if wrong.get("no_bias") else 1
        lin = lambda n_in, n_out: n_in * n_out + n_out * bias
        ffn_bias = 0 if wrong.get("no_ffn_bias") else bias
        mha = 4 * lin(D, D)
        ffn = D * c.d_ff + c.d_ff * ffn_bias + c.d_ff * D + D * ffn_bias
        ln = 0 if wrong.get("no_norms") else 2 * D
        cross = 0 if wrong.get("no_cross") else mha
        n_e, n_d = (c.num_layers, c.num_layers) if wrong.get("num_layers") else (c.encoder_layers, c.decoder_layers)
        total = n_e * (mha + ffn + 2 * ln) + n_d * (mha + cross + ffn + 3 * ln)
        total += 2 * ln * c.norm_first
        shared_once = bool(not c.share_embeddings or wrong.get("share_twice"))
        total += c.src_vocab_size * D + shared_once * c.tgt_vocab_size * D
        total += (c.positional == "learned") * 2 * c.max_len * D
        if wrong.get("sinusoid_params") and c.positional == "sinusoidal":
            total += c.max_len * D
        generator = lin(D, c.tgt_vocab_size)
        if c.tie_weights and not wrong.get("tied_twice"):
            generator -= D * c.tgt_vocab_size
        return total + generator
    return fn


@pytest.mark.parametrize("wrong, words", [
    (counting(no_bias=True), "forgets the biases"),
    (counting(tied_twice=True), "counts the tied generator matrix as well"),
    (counting(no_norms=True), "forgets the LayerNorms"),
    (counting(no_cross=True), "forgets the decoder's cross-attention"),
    (counting(share_twice=True), "counts the shared embedding twice"),
    (counting(share_twice=True, tied_twice=True), "three times"),
    (counting(sinusoid_params=True), "sinusoidal positional table"),
    (counting(num_layers=True), "uses num_layers for both stacks"),
    (lambda c: count_transformer_parameters(c) - c.tgt_vocab_size, "forgets the generator's bias"),
    (lambda c: count_transformer_parameters(c) - 4 * c.d_model * c.norm_first, "final LayerNorm of each pre-LN stack"),
    (lambda c: count_transformer_parameters(c) + 1, r"off by \+1"),
    (lambda c: float(count_transformer_parameters(c)) + 0.5, r"should be a whole number \(an int\), got 63119496.5"),
    (lambda c: str(count_transformer_parameters(c)), r"should be a whole number \(an int\), got a str"),
    (counting(no_ffn_bias=True), "forgets the feed-forward network's biases"),
    (lambda c: count_transformer_parameters(c) - 4 * c.d_model * (c.encoder_layers + 2 * c.decoder_layers),
     "forgets the attention projections' biases"),
])
def test_count_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_count_transformer_parameters(wrong)


def test_count_names_each_double_count_where_it_is_unambiguous():
    from transformer_lib.checks.transformer import _count_configs, _count_variants
    configs = dict(_count_configs())
    tied_only = configs["a small model with separate vocabularies, generator tied to the target embedding"]
    shared_only = configs["a small pre-LN model with one shared vocabulary and learned positions"].replace(tie_weights=False)
    assert any("tied generator matrix as well" in k for k in _count_variants(tied_only))
    assert any("shared embedding twice" in k for k in _count_variants(shared_only))


def test_ffn_biases_and_layer_norms_are_told_apart_although_equal_on_the_base_model():
    """Both are 30,720 on the base model; the small models tell them apart."""
    base = TransformerConfig.base()
    D, F = base.d_model, base.d_ff
    assert 12 * (F + D) == 6 * 2 * 2 * D + 6 * 3 * 2 * D == 30_720
    with pytest.raises(CheckFailed, match="forgets the feed-forward network's biases"):
        check_count_transformer_parameters(counting(no_ffn_bias=True))
    with pytest.raises(CheckFailed, match="forgets the LayerNorms"):
        check_count_transformer_parameters(counting(no_norms=True))


def test_count_failure_names_the_config_and_both_numbers():
    with pytest.raises(CheckFailed, match=r"base model .* is 63,156,496, expected 63,119,496"):
        check_count_transformer_parameters(lambda c: count_transformer_parameters(c) + c.tgt_vocab_size)
