"""Lesson 06's checks accept correct code and name each typical mistake."""
from __future__ import annotations

import copy

import pytest
import torch

from transformer_lib.checks import CheckFailed, check_decoder_layer_forward, check_leaks_future
from transformer_lib.decoder import decoder_layer_forward, leaks_future


# --------------------------------------------------------------------------- decoder layer
def dec_compact(layer, x, memory, tgt_mask=None, memory_mask=None):
    """Another correct version: fused attention path, no dropout calls."""
    def attend(attn, q, kv, m):
        return attn(q, kv, kv, mask=m, need_weights=False)[0]
    if layer.norm_first:
        h = layer.norm1(x)
        x = x + attend(layer.self_attn, h, h, tgt_mask)
        x = x + attend(layer.cross_attn, layer.norm2(x), memory, memory_mask)
        return x + layer.feed_forward(layer.norm3(x))
    x = layer.norm1(x + attend(layer.self_attn, x, x, tgt_mask))
    x = layer.norm2(x + attend(layer.cross_attn, x, memory, memory_mask))
    return layer.norm3(x + layer.feed_forward(x))


def dec_float64(layer, x, memory, tgt_mask=None, memory_mask=None):
    """Another correct version: the whole layer in float64, the result back in float32."""
    layer64 = copy.deepcopy(layer).double()
    return decoder_layer_forward(layer64, x.double(), memory.double(), tgt_mask, memory_mask).float()


@pytest.mark.parametrize("fn", [decoder_layer_forward, dec_compact, dec_float64])
def test_decoder_layer_forward_accepts_correct_versions(fn, capsys):
    assert check_decoder_layer_forward(fn) is fn
    assert "✅ decoder_layer_forward is correct" in capsys.readouterr().out


def generic(self_attn=None, cross_attn=None, residual=True, post=None, pre_residual_after_norm=False):
    """A decoder layer forward with one thing changed; ``self_attn(layer, h, tgt_mask, memory_mask)``,
    ``cross_attn(layer, h, memory, tgt_mask, memory_mask)`` replace the right calls."""
    sa = self_attn or (lambda layer, h, tm, mm: layer.self_attn(h, h, h, mask=tm)[0])
    ca = cross_attn or (lambda layer, h, mem, tm, mm: layer.cross_attn(h, mem, mem, mask=mm)[0])

    def fn(layer, x, memory, tgt_mask=None, memory_mask=None):
        use_post = (not layer.norm_first) if post is None else post
        r = 1.0 if residual else 0.0
        if use_post:
            x = layer.norm1(r * x + sa(layer, x, tgt_mask, memory_mask))
            x = layer.norm2(r * x + ca(layer, x, memory, tgt_mask, memory_mask))
            return layer.norm3(r * x + layer.feed_forward(x))
        if pre_residual_after_norm:
            x = layer.norm1(x)
            x = x + sa(layer, x, tgt_mask, memory_mask)
            x = layer.norm2(x)
            x = x + ca(layer, x, memory, tgt_mask, memory_mask)
            x = layer.norm3(x)
            return x + layer.feed_forward(x)
        x = r * x + sa(layer, layer.norm1(x), tgt_mask, memory_mask)
        x = r * x + ca(layer, layer.norm2(x), memory, tgt_mask, memory_mask)
        return r * x + layer.feed_forward(layer.norm3(x))
    return fn


@pytest.mark.parametrize("wrong, words", [
    (generic(self_attn=lambda layer, h, tm, mm: layer.self_attn(h, h, h)[0]), "does not get the causal mask"),
    (generic(cross_attn=lambda layer, h, mem, tm, mm: layer.cross_attn(h, mem, mem)[0]), "does not get memory_mask"),
    (generic(cross_attn=lambda layer, h, mem, tm, mm: layer.cross_attn(mem, h, h)[0]),
     "takes its queries from the encoder memory"),
    (generic(cross_attn=lambda layer, h, mem, tm, mm: layer.cross_attn(h, h, h)[0]), "attends over the decoder itself"),
    (generic(cross_attn=lambda layer, h, mem, tm, mm: 0 * h), "cross-attention is missing"),
    (generic(self_attn=lambda layer, h, tm, mm: layer.self_attn(h, h, h, mask=mm)[0],
             cross_attn=lambda layer, h, mem, tm, mm: layer.cross_attn(h, mem, mem, mask=tm)[0]), "masks are swapped"),
    (generic(residual=False), "residual connections are missing"),
    (generic(post=True), "it is a post-LN layer, but layer.norm_first is True"),
    (generic(post=False), "it is a pre-LN layer, but layer.norm_first is False"),
    (generic(pre_residual_after_norm=True), r"residual is added to the \*normalised\* x"),
    (lambda layer, x, memory, tgt_mask=None, memory_mask=None: layer(x, memory, tgt_mask, memory_mask),
     r"calls layer\(x, memory, ...\) \(or layer.forward\) itself"),
    (lambda layer, x, memory, tgt_mask=None, memory_mask=None: layer.forward(x, memory, tgt_mask, memory_mask),
     r"calls layer\(x, memory, ...\) \(or layer.forward\) itself"),
    (generic(self_attn=lambda layer, h, tm, mm: layer.self_attn(h, h, h, mask=mm)[0]),
     r"layer.self_attn gets the wrong mask: it gets memory_mask \(the source padding mask\), of shape \(2, 1, 1, 5\)"),
    (generic(self_attn=lambda layer, h, tm, mm: layer.self_attn(h, h, h, mask=tm)),
     r"'Tensor' and 'tuple'\n   Hint: .*take the output with \[0\]"),
])
def test_decoder_layer_forward_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_decoder_layer_forward(wrong)


def test_the_source_mask_given_to_self_attention_is_named_where_it_raises():
    """With T != S, a (B, 1, 1, S) source mask cannot broadcast in self-attention: the library raises, and
    the check says which mask went where."""
    def source_mask_to_self_attention(layer, x, memory, tgt_mask=None, memory_mask=None):
        mask = memory_mask if memory.shape[1] != x.shape[1] else tgt_mask
        return generic(self_attn=lambda layer, h, tm, mm: layer.self_attn(h, h, h, mask=mask)[0])(
            layer, x, memory, tgt_mask, memory_mask)
    with pytest.raises(CheckFailed, match=r"raised ValueError on a post-LN layer, x \(2, 5, 12\), memory \(2, 7, 12\).*"
                                          r"\n   Hint: .*layer.self_attn gets the wrong mask: it gets memory_mask "
                                          r"\(the source padding mask\), of shape \(2, 1, 1, 7\)") as info:
        check_decoder_layer_forward(source_mask_to_self_attention)
    assert str(info.value).count("Hint") == 1


def test_an_unknown_mistake_names_the_part_and_the_position():
    def cross_attention_scaled(layer, x, memory, tgt_mask=None, memory_mask=None):
        return generic(cross_attn=lambda layer, h, mem, tm, mm: layer.cross_attn(h, 2 * mem, mem, mask=mm)[0])(
            layer, x, memory, tgt_mask, memory_mask)
    with pytest.raises(CheckFailed, match=r"Where it goes wrong: layer.cross_attn gets the wrong key: the first wrong "
                                          r"entry is \[0, 0, 0\] = .*, expected .* It should get h = norm1"):
        check_decoder_layer_forward(cross_attention_scaled)


def test_queries_from_memory_is_named_even_when_lengths_differ():
    """With T != S the wrong version cannot even add its output to x; the T == S case comes first."""
    wrong = generic(cross_attn=lambda layer, h, mem, tm, mm: layer.cross_attn(mem, h, h)[0])
    with pytest.raises(CheckFailed, match="queries come from the decoder"):
        check_decoder_layer_forward(wrong)


# --------------------------------------------------------------------------- leaks_future
def leaks_loop_per_position(fn, x):
    """Another correct version: change one later position at a time, compare exactly."""
    out = fn(x)
    for t in range(x.shape[1]):
        for u in range(t + 1, x.shape[1]):
            changed = x.clone()
            changed[:, u] = torch.randn_like(changed[:, u])
            if not torch.equal(fn(changed)[:, :u], out[:, :u]):
                return True
    return False


def leaks_exact_comparison(fn, x):
    """Another correct version: one split point at a time, compared with torch.equal."""
    out = fn(x)
    for t in range(x.shape[1] - 1):
        changed = torch.cat([x[:, :t + 1], torch.randn_like(x[:, t + 1:])], dim=1)
        if not torch.equal(fn(changed)[:, :t + 1], out[:, :t + 1]):
            return True
    return False


@pytest.mark.parametrize("fn", [leaks_future, leaks_loop_per_position, leaks_exact_comparison])
def test_leaks_future_accepts_correct_versions(fn, capsys):
    assert check_leaks_future(fn) is fn
    assert "✅ leaks_future is correct" in capsys.readouterr().out


def leak_test(splits=lambda T: range(T - 1), changed_from=lambda t: t + 1, changed_to=lambda t, T: T,
              compared=lambda t: slice(0, t + 1), change="random", atol=1e-6):
    """A learner-style no-peeking test with one switchable mistake (the defaults are right):
    for each split point t, change positions changed_from(t) .. changed_to(t, T) - 1, compare the
    outputs at ``compared(t)``."""
    def fn(f, x):
        T = x.shape[1]
        out = f(x)
        for t in splits(T):
            changed = x.clone()
            part = changed[:, changed_from(t):changed_to(t, T)]
            part.copy_(part + 1.0 if change == "shift" else torch.randn_like(part))
            if not torch.allclose(f(changed)[:, compared(t)], out[:, compared(t)], atol=atol):
                return True
        return False
    return fn


compares_position_t_too = leak_test(changed_from=lambda t: t)
only_last_token = leak_test(splits=lambda T: [T - 2])
constant_shift = leak_test(change="shift")
loose_tolerance = leak_test(atol=1e-2)
compares_position_0_only = leak_test(compared=lambda t: slice(0, 1))
stops_one_step_early = leak_test(splits=lambda T: range(T - 2))       # misses the last split point, t = T - 2
changes_only_the_next_position = leak_test(changed_to=lambda t, T: t + 2, compared=lambda t: slice(t, t + 1))


def any_output_changes(fn, x):
    changed = x.clone()
    changed[:, -1] = torch.randn_like(changed[:, -1])
    return not torch.allclose(fn(changed), fn(x))


def in_place(fn, x):
    out = fn(x).clone()
    x[:, -1] = torch.randn_like(x[:, -1])
    return leaks_future(fn, x) or not torch.equal(fn(x)[:, :-1], out[:, :-1])


@pytest.mark.parametrize("wrong, words", [
    (compares_position_t_too, "reports a leak for a decoder layer that has its causal mask"),
    (only_last_token, "misses a leak from position 4 into position 2"),
    (compares_position_0_only, r"for a layer whose only leak is position 4 seeing position 5 .* it returned False: "
                               r"it misses a leak from position 5 into position 4, the last pair"),
    (stops_one_step_early, r"misses a leak from position 5 into position 4, the last pair: .*not one step fewer"),
    (changes_only_the_next_position, "misses a leak from position 4 into position 2"),
    (constant_shift, r"\*random\* values"),
    (loose_tolerance, "misses a small leak"),
    (any_output_changes, "reports a leak for a decoder layer that has its causal mask"),
    (lambda fn, x: True, "reports a leak"),
    (lambda fn, x: False, "misses the leak of a decoder layer without a causal mask"),
    (lambda fn, x: "no", "should return True"),
    (in_place, r"changed its argument `x` in place on a decoder layer with its causal mask"),
])
def test_leaks_future_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_leaks_future(wrong)


def test_leaks_future_accepts_a_bool_tensor(capsys):
    as_tensor = lambda fn, x: torch.tensor(leaks_future(fn, x))
    assert check_leaks_future(as_tensor) is as_tensor
