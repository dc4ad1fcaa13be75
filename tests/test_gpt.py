"""Lesson 11: the decoder-only GPT, its loss, generation and the KV-cache step."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import B, D, H, T
from transformer_lib import MultiHeadAttention, causal_mask, split_heads
from transformer_lib.gpt import GPT, GPTConfig, causal_lm_loss
from transformer_lib.kv_cache import kv_cache_step

V = 11


def tiny(**changes):
    torch.manual_seed(0)
    return GPT(GPTConfig.tiny(V, d_model=D, num_heads=H, num_layers=2, d_ff=20, max_len=24, **changes)).eval()


def test_shapes_and_tied_output_layer():
    model = tiny()
    ids = torch.randint(0, V, (B, T))
    assert model(ids).shape == (B, T, V)
    assert model.generator.weight is model.embed.weight
    assert all(layer.cross_attn is None for layer in model.decoder.layers)
    untied = tiny(tie_weights=False)
    assert untied.num_parameters() == model.num_parameters() + V * D


def test_no_future_leak():
    """Changing tokens after position t never changes the logits at positions <= t."""
    model = tiny()
    ids = torch.randint(0, V, (B, 9))
    base = model(ids)
    for t in range(8):
        changed = ids.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % V
        out = model(changed)
        assert torch.allclose(out[:, :t + 1], base[:, :t + 1], atol=1e-5)
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:], atol=1e-5)


def test_no_future_leak_in_the_gradients_while_training():
    model = tiny(dropout=0.0).train()
    emb = model.embed(torch.randint(0, V, (1, 7))).detach().requires_grad_()
    x = model.pos(emb)
    out = model.generator(model.decoder(x, None, tgt_mask=causal_mask(7)))
    out[0, 3].sum().backward()
    grad = emb.grad[0].abs().sum(-1)
    assert (grad[4:] == 0).all() and (grad[:4] > 0).all()


def test_attention_weights_are_causal():
    model = tiny()
    model(torch.randint(0, V, (B, 6)))
    for w in model.attention_weights():
        assert w.shape == (B, H, 6, 6)
        assert torch.all(w.triu(diagonal=1) == 0)
        assert torch.allclose(w.sum(-1), torch.ones(B, H, 6))


def test_gpt2_small_parameter_count():
    with torch.device("meta"):
        model = GPT(GPTConfig.gpt2_small())
    assert model.num_parameters() == 124_439_808          # GPT-2 small, as published
    assert GPTConfig.base() == GPTConfig.gpt2_small()


@pytest.mark.parametrize("changes, error", [
    (dict(d_model=10, num_heads=3), ValueError), (dict(vocab_size=0), ValueError),
    (dict(num_layers=1.5), ValueError), (dict(dropout=1.0), ValueError), (dict(activation="tanh"), ValueError),
    (dict(layer_norm_eps=0), ValueError), (dict(norm_first=1), TypeError),
])
def test_config_errors(changes, error):
    fields = dict(vocab_size=V, d_model=D, num_heads=H, num_layers=2, d_ff=20, max_len=24)
    fields.update(changes)
    with pytest.raises(error):
        GPTConfig(**fields)


def test_config_is_frozen_and_model_checks_inputs():
    cfg = GPTConfig.tiny(V)
    with pytest.raises(Exception):
        cfg.d_model = 3
    assert cfg.replace(d_model=32).d_model == 32 and cfg.to_dict()["vocab_size"] == V
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT({"vocab_size": V})
    model = tiny()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        model(torch.full((1, 3), V))
    with pytest.raises(TypeError):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="exceeds max_len"):
        model.generate(torch.zeros(1, 20, dtype=torch.long), 5)


@pytest.mark.parametrize("sampling", [dict(), dict(temperature=0.8, top_k=5), dict(temperature=1.3, top_p=0.9)],
                         ids=["greedy", "top-k", "top-p"])
def test_generation_with_cache_equals_without(sampling):
    model = tiny()
    prompt = torch.randint(0, V, (3, 4))
    kw = dict(return_logits=True, **sampling)
    if sampling:
        a, la = model.generate(prompt, 15, use_cache=True, generator=torch.Generator().manual_seed(1), **kw)
        b, lb = model.generate(prompt, 15, use_cache=False, generator=torch.Generator().manual_seed(1), **kw)
    else:
        a, la = model.generate(prompt, 15, use_cache=True, **kw)
        b, lb = model.generate(prompt, 15, use_cache=False, **kw)
    assert a.shape == (3, 19) and torch.equal(a[:, :4], prompt)
    assert torch.equal(a, b)
    assert la.shape == (3, 15, V) and torch.allclose(la, lb, atol=1e-5)
    # the logits are the model's own next-token scores for the generated text
    assert torch.allclose(model(a[:, :-1])[:, 3:], la, atol=1e-5)


def test_greedy_generation_picks_the_argmax_and_cache_fills_up():
    model = tiny()
    out, logits = model.generate(torch.tensor([[1, 2]]), 5, return_logits=True)
    assert torch.equal(out[0, 2:], logits[0].argmax(-1))
    cache = model.new_cache()
    model(torch.tensor([[1, 2, 3]]), cache=cache)
    model(torch.tensor([[4]]), cache=cache)
    assert len(cache) == 4 and len(cache.layers) == 2 and cache[0].cross_attn is None
    assert cache[0].self_attn.k.shape == (1, H, 4, D // H)
    assert model.generate(torch.tensor([[1]]), 0).shape == (1, 1)


def test_causal_lm_loss_shifts_by_one():
    logits = torch.randn(B, T, V)
    ids = torch.randint(0, V, (B, T))
    want = sum(F.cross_entropy(logits[b, t], ids[b, t + 1]) for b in range(B) for t in range(T - 1)) / (B * (T - 1))
    assert torch.allclose(causal_lm_loss(logits, ids), want)
    perfect = F.one_hot(ids[:, 1:], V).float() * 50
    assert causal_lm_loss(torch.cat([perfect, torch.zeros(B, 1, V)], 1), ids) < 1e-6


def test_training_a_few_steps_lowers_the_loss():
    model = tiny().train()
    ids = torch.arange(12).remainder(V).repeat(4, 1)                 # a repeating pattern
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = causal_lm_loss(model(ids), ids).item()
    for _ in range(30):
        loss = causal_lm_loss(model(ids), ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 3


@pytest.mark.parametrize("t", [0, 1, 4])
def test_kv_cache_step_equals_full_causal_attention(t):
    attn = MultiHeadAttention(D, H).eval()
    x = torch.randn(B, t + 1, D)
    past_k, past_v = split_heads(attn.w_k(x[:, :-1]), H), split_heads(attn.w_v(x[:, :-1]), H)
    out, k, v = kv_cache_step(attn, x, past_k, past_v)
    full, _ = attn(x, x, x, mask=causal_mask(t + 1))
    assert out.shape == (B, 1, D) and torch.allclose(out, full[:, -1:], atol=1e-6)
    assert torch.allclose(k, split_heads(attn.w_k(x), H), atol=1e-6)
    assert torch.allclose(v, split_heads(attn.w_v(x), H), atol=1e-6)


def test_ids_and_cache_steps_speak():
    model = tiny()
    ids = torch.randint(0, V, (B, T))
    with pytest.raises(TypeError, match=r"ids must be an integer tensor of token ids in int64 .*ids.long\(\)"):
        model(ids.to(torch.uint8))
    with pytest.raises(TypeError, match=r"cache must be a DecoderCache \(transformer_lib.kv_cache.new_cache\(model\)\), got dict"):
        model(ids, cache={})
    with pytest.raises(ValueError, match=r"logits \(B, T, V\) and ids \(B, T\) must agree"):
        causal_lm_loss(model(ids), ids[:, :-1])
    attn = MultiHeadAttention(D, H)
    x = torch.randn(B, T, D)
    past = split_heads(attn.w_k(x[:, :-2]), H)                          # one token short
    with pytest.raises(ValueError, match=r"past_k must be \(B, H, t, d_k\) = \(2, 3, 4, 4\) .*got \(2, 3, 3, 4\)"):
        kv_cache_step(attn, x, past, past)
    with pytest.raises(TypeError, match="use_cache must be True or False"):
        model.generate(ids, 2, use_cache="yes")


def test_old_names_still_work_with_a_deprecation_warning():
    model = tiny()
    for old, new in (("lm_head", "generator"), ("token_embedding", "embed"), ("position", "pos")):
        with pytest.warns(DeprecationWarning, match=f"GPT.{old} is deprecated: use GPT.{new}"):
            assert getattr(model, old) is getattr(model, new)
    import transformer_lib.gpt as gpt_module
    with pytest.warns(DeprecationWarning, match="transformer_lib.gpt.causal_self_mask is deprecated: use "
                                                "transformer_lib.masks.causal_mask"):
        assert gpt_module.causal_self_mask is causal_mask
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        gpt_module.no_such_name
    with pytest.raises(AttributeError):
        model.no_such_module


def test_plot_ablation_has_a_title_labels_and_one_curve_per_variant():
    import matplotlib.pyplot as plt

    from transformer_lib.plotting import plot_ablation
    from transformer_lib.training import History

    histories = {}
    for name, last in (("full", 2.0), ("no residuals", 3.0)):
        h = History()
        h.evals.extend([{"step": 0, "val_loss": 4.0}, {"step": 10, "val_loss": last}])
        histories[name] = h
    fig = plot_ablation(histories, title="What each ingredient buys", baselines={"uniform guess": 4.5})
    ax = fig.axes[0]
    assert ax.get_title() == "What each ingredient buys" and ax.get_xlabel() == "step" and "loss" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["full (≈2.00)", "no residuals (≈3.00)", "uniform guess (4.50)"]
    with pytest.raises(ValueError, match="has no 'accuracy'"):
        plot_ablation(histories, metric="accuracy")
    with pytest.raises(ValueError, match="at least one"):
        plot_ablation({})
    plt.close("all")
