"""Lesson 11: the key/value cache gives exactly what full recomputation gives, for the
decoder-only GPT and for the encoder-decoder Transformer."""
from __future__ import annotations

import pytest
import torch

from conftest import B, D, H
from transformer_lib import KVCache, LayerCache, Transformer, TransformerConfig
from transformer_lib.gpt import GPT, GPTConfig
from transformer_lib.kv_cache import cache_length, cache_nbytes, new_cache, reorder_cache
from transformer_lib.text_to_text import generate_seq2seq

V, BOS, EOS = 13, 2, 3


def transformer(norm_first=False):
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny(V, d_model=D, num_heads=H, num_layers=2, d_ff=20, dropout=0.0, max_len=40,
                                 norm_first=norm_first)
    return Transformer(cfg).eval()


def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig.tiny(V, d_model=D, num_heads=H, num_layers=3, d_ff=20, max_len=40)).eval()


def test_kv_cache_appends_and_static_cache_keeps():
    c = KVCache()
    k1, v1 = torch.randn(B, H, 2, 4), torch.randn(B, H, 2, 4)
    c.update(k1, v1)
    k, v = c.update(torch.randn(B, H, 1, 4), torch.randn(B, H, 1, 4))
    assert len(c) == 3 and k.shape == (B, H, 3, 4) and torch.equal(k[:, :, :2], k1)
    s = KVCache(static=True)
    s.update(k1, v1)
    assert len(s) == 2
    assert c.nbytes == 2 * B * H * 3 * 4 * 4 and KVCache().nbytes == 0
    cache = new_cache(2, cross=True)
    assert cache_length(cache) == 0 and cache_nbytes(cache) == 0 and cache_length(None) == 0
    cache[0].self_attn.update(k1, v1)
    assert cache_length(cache) == 2 and cache_nbytes(cache) == k1.nbytes + v1.nbytes
    reorder_cache(cache, torch.tensor([1, 1]))
    assert torch.equal(cache[0].self_attn.k[0], k1[1])
    assert isinstance(cache[1], LayerCache) and cache[1].cross_attn.static


@pytest.mark.parametrize("sampling", [dict(), dict(temperature=0.9, top_k=6), dict(temperature=1.2, top_p=0.8)],
                         ids=["greedy", "top-k", "top-p"])
def test_gpt_generation_cache_equals_no_cache(sampling):
    model = gpt()
    prompt = torch.randint(0, V, (B, 3))
    outs = [model.generate(prompt, 20, use_cache=use, return_logits=True,
                           generator=torch.Generator().manual_seed(11), **sampling) for use in (True, False)]
    (a, la), (b, lb) = outs
    assert torch.equal(a, b)
    assert torch.allclose(la, lb, atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("sampling", [dict(), dict(temperature=0.9, top_k=6), dict(temperature=1.5, top_p=0.95)],
                         ids=["greedy", "top-k", "top-p"])
def test_encoder_decoder_generation_cache_equals_no_cache(sampling, norm_first):
    model = transformer(norm_first)
    src = torch.randint(4, V, (3, 7))
    src[1, 5:] = 0                                                   # padding in one source
    runs = [generate_seq2seq(model, src, 12, BOS, EOS, use_cache=use, return_logits=True,
                             generator=torch.Generator().manual_seed(5), **sampling) for use in (True, False)]
    (a, la), (b, lb) = runs
    assert torch.equal(a, b)
    # compare the logits of the steps where a row was still generating
    alive = torch.ones(a.shape[0], a.shape[1] - 1, dtype=torch.bool)
    for row in range(a.shape[0]):
        ended = (a[row, 1:] == EOS).nonzero()
        if len(ended):
            alive[row, ended[0, 0] + 1:] = False
    assert torch.allclose(la[alive], lb[alive], atol=1e-5)


def test_encoder_decoder_cache_matches_full_decoding_step_by_step():
    model = transformer()
    src = torch.randint(4, V, (B, 6))
    tgt = torch.cat([torch.full((B, 1), BOS), torch.randint(4, V, (B, 7))], dim=1)
    memory = model.encode(src)
    full = model.generator(model.decode(tgt, memory))
    cache = model.new_cache()
    steps = [model.generator(model.decode(tgt[:, i:i + 1], memory, cache=cache)) for i in range(tgt.shape[1])]
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)
    assert cache_length(cache) == tgt.shape[1]
    assert len(cache[0].cross_attn) == 6                             # the memory's keys, computed once


def test_seq2seq_generation_stops_and_pads_after_eos():
    model = transformer()
    src = torch.randint(4, V, (4, 5))
    out = generate_seq2seq(model, src, 30, BOS, EOS)
    assert (out[:, 0] == BOS).all() and out.shape[1] <= 31
    for row in out:
        ends = (row == EOS).nonzero()
        if len(ends):
            assert (row[ends[0, 0] + 1:] == 0).all()


def test_gpt_cache_positions_continue():
    model = gpt()
    ids = torch.randint(0, V, (1, 9))
    full = model(ids)
    cache = model.new_cache()
    first = model(ids[:, :4], cache=cache)
    rest = torch.cat([model(ids[:, i:i + 1], cache=cache) for i in range(4, 9)], dim=1)
    assert torch.allclose(torch.cat([first, rest], 1), full, atol=1e-5)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 32, dtype=torch.long), cache=cache)


def test_a_cache_is_for_one_batch():
    model = transformer()
    src = torch.randint(4, V, (B, 6))
    memory = model.encode(src)
    cache = model.new_cache()
    model.decode(torch.full((B, 1), BOS), memory, cache=cache)
    other = model.encode(src[:1])
    with pytest.raises(ValueError, match=r"the cache holds keys of shape \(2, 3, 1, 4\) .*the new keys have shape "
                                         r"\(1, 3, 1, 4\).*A new batch needs a new cache \(model.new_cache\(\)\)"):
        model.decode(torch.full((1, 1), BOS), other, cache=cache)
    with pytest.raises(ValueError, match="num_layers must be a positive int, got 0"):
        new_cache(0)
