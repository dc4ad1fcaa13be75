"""Lesson 11: the key/value cache gives exactly what full recomputation gives, for one attention
layer, a decoder stack, the decoder-only GPT and the encoder-decoder Transformer. The cache is an
addition: the layers of lessons 04-07 only offer the ``keys_values`` / ``cache`` hooks it plugs into."""
from __future__ import annotations

import pytest
import torch

from conftest import B, D, D_FF, H, S, T
from transformer_lib import Decoder, LayerConfig, MultiHeadAttention, Transformer, TransformerConfig
from transformer_lib.decoding import beam_search, greedy_decode
from transformer_lib.gpt import GPT, GPTConfig
from transformer_lib.kv_cache import DecoderCache, KVCache, LayerCache, new_cache
from transformer_lib.masks import causal_mask, padding_mask

V, BOS, EOS = 13, 2, 3


def transformer(norm_first=False, positional="sinusoidal"):
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny(V, d_model=D, num_heads=H, num_layers=2, d_ff=20, dropout=0.0, max_len=40,
                                 norm_first=norm_first, positional=positional)
    return Transformer(cfg).eval()


def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig.tiny(V, d_model=D, num_heads=H, num_layers=3, d_ff=20, max_len=40)).eval()


def pad_mask():
    ids = torch.ones(B, S, dtype=torch.long)
    ids[1, 3:] = 0
    return padding_mask(ids, pad_id=0)                               # (B, 1, 1, S)


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
    cache = DecoderCache(2, cross=True)
    assert len(cache) == 0 and cache.nbytes == 0
    cache[0].self_attn.update(k1, v1)
    assert len(cache) == 2 and cache.nbytes == k1.nbytes + v1.nbytes
    cache.reorder(torch.tensor([1, 1]))
    assert torch.equal(cache[0].self_attn.k[0], k1[1])
    assert isinstance(cache[1], LayerCache) and cache[1].cross_attn.static
    assert "2 layers, 2 positions" in repr(cache)


@pytest.mark.parametrize("need_weights", [True, False])
def test_appending_cache_token_by_token_equals_full_causal_attention(need_weights):
    mha = MultiHeadAttention(D, H).eval()
    x = torch.randn(B, T, D)
    full, full_w = mha(x, x, x, mask=causal_mask(T))
    cache = KVCache()
    steps = []
    for t in range(T):
        token = x[:, t:t + 1]
        out, w = mha(token, token, token, keys_values=cache, need_weights=need_weights)   # sees tokens 0..t
        assert len(cache) == t + 1
        if need_weights:
            torch.testing.assert_close(w[..., 0, :], full_w[..., t, :t + 1], atol=1e-6, rtol=1e-5)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-6, rtol=1e-5)


def test_appending_cache_in_chunks_with_a_mask():
    mha = MultiHeadAttention(D, H).eval()
    x = torch.randn(B, T, D)
    full, _ = mha(x, x, x, mask=causal_mask(T))
    cache = KVCache()
    first, _ = mha(x[:, :2], x[:, :2], x[:, :2], mask=causal_mask(2), keys_values=cache)
    rest, _ = mha(x[:, 2:], x[:, 2:], x[:, 2:], mask=causal_mask(T - 2, past=2), keys_values=cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("need_weights", [True, False])
def test_static_cache_computes_memory_keys_once(need_weights):
    mha = MultiHeadAttention(D, H).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    mask = pad_mask()
    full, _ = mha(x, memory, memory, mask=mask)
    cache = KVCache(static=True)
    steps = []
    for t in range(T):
        out, _ = mha(x[:, t:t + 1], memory, memory, mask=mask, keys_values=cache, need_weights=need_weights)
        steps.append(out)
        if t == 0:
            k0 = cache.k
        assert cache.k is k0 and len(cache) == S                # computed at the first step, then reused
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_with_a_cache_equals_the_full_pass(norm_first):
    dec = Decoder(2, LayerConfig(D, H, D_FF, norm_first=norm_first)).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    full = dec(x, memory, causal_mask(T), pad_mask())
    cache = new_cache(dec)
    steps = [dec(x[:, t:t + 1], memory, causal_mask(1, past=t), pad_mask(), cache=cache) for t in range(T)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="cache has 1 layers, the decoder has 2"):
        dec(x, memory, cache=DecoderCache(1))
    with pytest.raises(TypeError, match=r"cache must be a DecoderCache \(transformer_lib.kv_cache.new_cache\(model\)\)"):
        dec(x, memory, cache=[LayerCache.new()])
    with pytest.raises(TypeError, match="cache must be this layer's LayerCache"):
        dec.layers[0](x, memory, cache=KVCache())


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_decode_with_a_cache_equals_full_decoding(norm_first):
    model = transformer(norm_first, positional="learned")
    src, tgt = torch.randint(4, V, (B, S)), torch.randint(4, V, (B, T))
    src[0, S - 2:] = 0
    src_mask = padding_mask(src, 0)
    memory = model.encode(src, src_mask)
    full = model.decode(tgt, memory, memory_mask=src_mask)
    cache = new_cache(model)
    steps = []
    for t in range(T):
        steps.append(model.decode(tgt[:, t:t + 1], memory, memory_mask=src_mask, cache=cache))
        assert len(cache) == t + 1
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    assert len(cache[0].cross_attn) == S                              # the memory's keys, computed once
    two_then_rest = new_cache(model)
    first = model.decode(tgt[:, :2], memory, memory_mask=src_mask, cache=two_then_rest)
    rest = model.decode(tgt[:, 2:], memory, memory_mask=src_mask, cache=two_then_rest)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=1e-4)


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
def test_greedy_decoding_and_beam_search_give_the_same_ids_with_a_cache(norm_first):
    model = transformer(norm_first)
    src = torch.randint(4, V, (3, 7))
    src[1, 5:] = 0                                                   # padding in one source
    assert torch.equal(greedy_decode(model, src, 12, BOS, EOS, cache=new_cache(model)),
                       greedy_decode(model, src, 12, BOS, EOS))
    (ids, scores), (ids_full, scores_full) = (beam_search(model, src, 12, beam_size=3, bos_id=BOS, eos_id=EOS,
                                                          cache=cache) for cache in (new_cache(model), None))
    assert torch.equal(ids, ids_full)
    torch.testing.assert_close(scores, scores_full, atol=1e-5, rtol=1e-5)


def test_a_decoder_takes_only_an_empty_cache():
    model = transformer()
    src = torch.randint(4, V, (B, 6))
    used = new_cache(model)
    greedy_decode(model, src, 3, BOS, EOS, cache=used)
    for cache in (used, {}):
        with pytest.raises(TypeError, match=r"cache must be an empty key/value cache for the model"):
            greedy_decode(model, src, 3, BOS, EOS, cache=cache)


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
    cache = new_cache(model)
    model.decode(torch.full((B, 1), BOS), memory, cache=cache)
    other = model.encode(src[:1])
    with pytest.raises(ValueError, match=r"the cache holds keys of shape \(2, 3, 1, 4\) .*the new keys have shape "
                                         r"\(1, 3, 1, 4\).*A new batch needs a new cache \(new_cache\(model\)\)"):
        model.decode(torch.full((1, 1), BOS), other, cache=cache)
    with pytest.raises(ValueError, match="num_layers must be a positive int, got 0"):
        DecoderCache(0)
    with pytest.raises(TypeError, match="new_cache needs a model with a decoder stack"):
        new_cache(MultiHeadAttention(D, H))
