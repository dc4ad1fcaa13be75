"""The lesson-11 checks: causal LM loss, the GPT block and model, one KV-cache step, temperature, top-k and
top-p probabilities."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_lib import KVCache, causal_mask, merge_heads, scaled_dot_product_attention, split_heads
from transformer_lib.checks import (CheckFailed, check_causal_lm_loss, check_kv_cache_step, check_temperature_probs,
                                    check_top_k_probs, check_top_p_probs)
from transformer_lib.gpt import causal_lm_loss
from transformer_lib.kv_cache import kv_cache_step
from transformer_lib.sampling import temperature_probs, top_k_probs, top_p_filter, top_p_probs


def ce(logits, targets, **kw):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), **kw)


# ---- causal LM loss ------------------------------------------------------------------------

def test_causal_lm_loss_accepts_correct_versions(capsys):
    other = lambda logits, ids: F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:])  # noqa: E731
    float64 = lambda logits, ids: -torch.log_softmax(logits[:, :-1].double(), -1).gather(  # noqa: E731
        -1, ids[:, 1:, None]).mean()
    for fn in (causal_lm_loss, other, float64):
        assert check_causal_lm_loss(fn) is fn
    assert capsys.readouterr().out.count("✅") == 3


@pytest.mark.parametrize("wrong, words", [
    (lambda lo, ids: ce(lo, ids), "no shift"),
    (lambda lo, ids: ce(lo[:, :-1], ids[:, :-1]), "drops the last position but still scores each position against its own"),
    (lambda lo, ids: ce(lo[:, 1:], ids[:, 1:]), "drops the first position"),
    (lambda lo, ids: ce(lo[:, 1:], ids[:, :-1]), "shifted the wrong way"),
    (lambda lo, ids: ce(lo[:, :-2], ids[:, 2:]) if lo.shape[1] > 2 else ce(lo[:, :-1], ids[:, 1:]) * 2, "shifted by two"),
    (lambda lo, ids: ce(lo[:, :-1], ids[:, 1:], reduction="sum"), "sums the losses"),
    (lambda lo, ids: ce(lo[:, :-1], ids[:, 1:]).item(), "should be a torch.Tensor"),
    (lambda lo, ids: ce(lo[:, :-1].detach(), ids[:, 1:]), "does not carry gradients"),
    (lambda lo, ids: ce(lo[:, :-1], ids[:, 1:]) * 0.5, "largest difference"),
])
def test_causal_lm_loss_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_causal_lm_loss(wrong)


# ---- one KV-cache step ----------------------------------------------------------------------

def step_with_library_cache(attn, x, past_k, past_v):
    """Another correct way: the layer's own forward with a KVCache holding the past."""
    cache = KVCache(k=past_k, v=past_v) if past_k.shape[-2] else KVCache()
    new = x[:, -1:]
    out, _ = attn(new, new, new, keys_values=cache)
    return out, cache.k, cache.v


def make_step(not_appending=False, recompute=False, axis=-2, query_all=False, new_first=False,
              exclude_self=False, mask_one=False, no_w_o=False, only_new=False):
    def fn(attn, x, past_k, past_v):
        H = attn.num_heads
        source = x if recompute else x[:, -1:]
        k_all = split_heads(attn.w_k(source), H)
        v_all = split_heads(attn.w_v(source), H)
        k_new, v_new = k_all[:, :, -1:], v_all[:, :, -1:]
        if recompute:
            k, v = k_all, v_all
        elif new_first:
            k, v = torch.cat([k_new, past_k], dim=-2), torch.cat([v_new, past_v], dim=-2)
        else:
            k, v = torch.cat([past_k, k_new], dim=axis), torch.cat([past_v, v_new], dim=axis)
        q = split_heads(attn.w_q(x if query_all else x[:, -1:]), H)
        if exclude_self:
            out, _ = scaled_dot_product_attention(q, past_k, past_v) if past_k.shape[-2] else (q * 0, None)
        elif mask_one:
            out, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(k.shape[-2])[:1])  # the first row
        elif query_all:
            out, _ = scaled_dot_product_attention(q, k, v, mask=causal_mask(q.shape[-2]))
        else:
            out, _ = scaled_dot_product_attention(q, k, v)
        out = merge_heads(out) if no_w_o else attn.w_o(merge_heads(out))
        if not_appending:
            return out, past_k, past_v
        if only_new:
            return out, k_new, v_new
        return out, k, v
    return fn


def test_kv_cache_step_accepts_correct_versions(capsys):
    for fn in (kv_cache_step, step_with_library_cache):
        assert check_kv_cache_step(fn) is fn
    assert capsys.readouterr().out.count("✅") == 2


@pytest.mark.parametrize("wrong, words", [
    (make_step(not_appending=True), "not appended|has shape"),
    (make_step(recompute=True), "recomputes"),
    (make_step(axis=-1), "torch.cat joins tensors along one axis|concatenate along the positions axis"),
    (make_step(axis=1), "torch.cat joins tensors along one axis|concatenate along the positions axis"),
    (make_step(query_all=True, recompute=True), "one row per token"),
    (make_step(new_first=True), "put in front of the cache"),
    (make_step(exclude_self=True), "cached positions only"),
    (make_step(mask_one=True), "first position only"),
    (make_step(no_w_o=True), "w_o is missing"),
    (make_step(only_new=True), "holds the newest token only"),
    (lambda attn, x, k, v: (x[:, -1:], k), "should return \\(out, k, v\\)"),
    (lambda attn, x, k, v: kv_cache_step(attn, x, k.mul_(1.0).add_(1.0), v), r"changed its argument `past_k` in place"),
])
def test_kv_cache_step_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_kv_cache_step(wrong)


def test_kv_cache_step_that_is_right_but_projects_everything_is_recomputing():
    def slice_after(attn, x, past_k, past_v):
        H = attn.num_heads
        k_new = split_heads(attn.w_k(x), H)[:, :, -1:]                  # projects every token, keeps the last
        v_new = split_heads(attn.w_v(x), H)[:, :, -1:]
        k, v = torch.cat([past_k, k_new], -2), torch.cat([past_v, v_new], -2)
        out, _ = scaled_dot_product_attention(split_heads(attn.w_q(x[:, -1:]), H), k, v)
        return attn.w_o(merge_heads(out)), k, v
    with pytest.raises(CheckFailed, match="recomputes"):
        check_kv_cache_step(slice_after)


# ---- top-k probabilities -------------------------------------------------------------------

def sorted_top_k(logits, k):
    """Another correct way: sort, threshold at the k-th value, softmax."""
    kth = logits.sort(dim=-1, descending=True).values[..., k - 1:k]
    return torch.softmax(logits.masked_fill(logits < kth, float("-inf")), dim=-1)


def scatter_top_k(logits, k):
    values, index = torch.topk(logits, k)
    return torch.zeros_like(logits).scatter(-1, index, torch.softmax(values, dim=-1))


def test_top_k_probs_accepts_correct_versions(capsys):
    for fn in (top_k_probs, sorted_top_k, scatter_top_k):
        assert check_top_k_probs(fn) is fn
    assert capsys.readouterr().out.count("✅") == 3


def keep(logits, k, dim=-1):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


@pytest.mark.parametrize("wrong, words", [
    (lambda lo, k: top_k_probs(lo, min(k + 1, lo.shape[-1])), "keeps k \\+ 1"),
    (lambda lo, k: top_k_probs(lo, max(k - 1, 1)), "keeps k - 1"),
    (lambda lo, k: torch.softmax(lo, -1), "full distribution"),
    (lambda lo, k: torch.softmax(lo, -1) * (keep(lo, k) > float("-inf")), "not renormalised"),
    (lambda lo, k: keep(lo, k), "contains -inf"),
    (lambda lo, k: torch.softmax(lo.masked_fill(lo > torch.topk(lo, k, largest=False).values[..., -1:],
                                                float("-inf")), -1), "k smallest"),
    (lambda lo, k: torch.softmax(keep(lo, k), dim=0).nan_to_num(0.0), "over the batch"),
    (lambda lo, k: torch.softmax(keep(lo, k) / 2, -1), "largest difference"),
    (lambda lo, k: torch.softmax(lo.masked_fill_(lo < torch.topk(lo, k).values[..., -1:], float("-inf")), -1),
     r"changed its argument `logits` in place"),
])
def test_top_k_probs_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_top_k_probs(wrong)


# ---- temperature ---------------------------------------------------------------------------

def temperature_by_hand(logits, temperature):
    """Another correct way: a numerically stable softmax written out, any error type checked first."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = logits * (1.0 / temperature)
    z = z - z.max(dim=-1, keepdim=True).values
    return z.exp() / z.exp().sum(dim=-1, keepdim=True)


def refusing(body):
    def fn(logits, temperature):
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        return body(logits, temperature)
    return fn


def test_temperature_probs_accepts_correct_versions(capsys):
    for fn in (temperature_probs, temperature_by_hand, refusing(lambda lo, t: F.softmax(lo / t, dim=-1))):
        assert check_temperature_probs(fn) is fn
    assert capsys.readouterr().out.count("✅") == 3


@pytest.mark.parametrize("wrong, words", [
    (refusing(lambda lo, t: torch.softmax(lo * t, -1)), "multiplies the logits by the temperature"),
    (refusing(lambda lo, t: torch.softmax(lo, -1) / t), "divides after the softmax"),
    (refusing(lambda lo, t: torch.softmax(torch.softmax(lo, -1) / t, -1)), "applies the temperature to probabilities"),
    (refusing(lambda lo, t: lo / t), "returns the scaled logits"),
    (refusing(lambda lo, t: torch.softmax(lo, -1)), "ignores the temperature"),
    (refusing(lambda lo, t: torch.softmax(lo / t, 0)), "over the batch"),
    (lambda lo, t: torch.softmax(lo / t, -1), "temperature=0.0 returned a tensor .* should raise ValueError"),
    (lambda lo, t: torch.softmax(lo / abs(t), -1) if t else torch.softmax(lo, -1),
     "temperature=0.0 returned"),
    (lambda lo, t: torch.softmax(lo / t, -1) if t != 0 else 1 / 0, "temperature=0.0 should raise ValueError.*ZeroDivisionError"),
    (lambda lo, t: torch.softmax(lo / t, -1) if t != 0 else (_ for _ in ()).throw(ValueError("0")),
     "temperature=-1.0 returned .* negative temperature"),
    (refusing(lambda lo, t: torch.softmax(lo.div_(t), -1)), r"changed its argument `logits` in place"),
])
def test_temperature_probs_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_temperature_probs(wrong)


def test_temperature_probs_reference_refuses_zero_and_negative():
    for t in (0, 0.0, -0.5):
        with pytest.raises(ValueError, match="temperature must be a positive number"):
            temperature_probs(torch.zeros(2, 3), t)


# ---- top-p probabilities -------------------------------------------------------------------

def top_p_shift_right(logits, p):
    """Another correct way (as in Hugging Face): drop where the cumulative sum passed p, shifted by one."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    remove = cum > p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = False
    return torch.softmax(logits.masked_fill(remove.scatter(-1, order, remove), float("-inf")), dim=-1)


def top_p_threshold(logits, p):
    """Another correct way: find the smallest kept probability, keep every token at least as likely,
    renormalise by dividing by the kept mass (no second softmax)."""
    probs = torch.softmax(logits, dim=-1)
    sorted_probs = probs.sort(dim=-1, descending=True).values
    n = ((sorted_probs.cumsum(-1) - sorted_probs) < p).sum(-1, keepdim=True)         # (..., 1)
    smallest = sorted_probs.gather(-1, n - 1)
    kept = probs * (probs >= smallest)
    return kept / kept.sum(-1, keepdim=True)


def test_top_p_probs_accepts_correct_versions(capsys):
    for fn in (top_p_probs, top_p_shift_right, top_p_threshold):
        assert check_top_p_probs(fn) is fn
    assert capsys.readouterr().out.count("✅") == 3


def nucleus(logits, p, keep_sorted, renormalise=True, descending=True):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=descending)
    keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, keep_sorted(sorted_probs, p))
    if not renormalise:
        return probs * keep
    return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1)


def above_below(sp, p):
    return sp.cumsum(-1) - sp < p


@pytest.mark.parametrize("wrong, words", [
    (lambda lo, p: nucleus(lo, p, lambda sp, p: (sp.cumsum(-1) < p) | (torch.arange(sp.shape[-1]) == 0)),
     "leaves out the token whose probability makes the sum reach p"),
    (lambda lo, p: nucleus(lo, p, lambda sp, p: sp.cumsum(-1) < p), "leaves out the token|kept no token at all"),
    (lambda lo, p: nucleus(lo, p, lambda sp, p: sp.cumsum(-1) - sp <= p + sp.roll(1, -1) * (sp.cumsum(-1) - sp > 0)),
     "one token too many|largest difference"),
    (lambda lo, p: nucleus(lo, p, lambda sp, p: torch.cat([above_below(sp, p)[..., :1], above_below(sp, p)[..., :-1]], -1)),
     "one token too many"),
    (lambda lo, p: nucleus(lo, p, above_below, renormalise=False), "not renormalised"),
    (lambda lo, p: nucleus(lo, p, above_below, descending=False), "ascending order"),
    (lambda lo, p: top_p_filter(lo, p), "contains -inf"),
    (lambda lo, p: torch.softmax(lo, -1), "keeps every token"),
    (lambda lo, p: torch.softmax(top_p_filter(lo, p), 0).nan_to_num(0.0), "over the batch"),
    (lambda lo, p: top_p_probs(lo.view(-1, lo.shape[-1]), p) if lo.dim() == 2 else top_p_probs(lo[0], p),
     "should have shape"),
    (lambda lo, p: top_p_probs(lo, min(1.0, p + 0.2)), "one token too many|largest difference|keeps every token"),
    (lambda lo, p: torch.softmax(lo.masked_fill_(top_p_filter(lo, p) == float("-inf"), float("-inf")), -1),
     r"changed its argument `logits` in place"),
])
def test_top_p_probs_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_top_p_probs(wrong)


def test_top_p_cases_stay_away_from_the_boundary_and_straddle_no_tie():
    from transformer_lib.checks.gpt import _top_p_cases
    for logits, p in _top_p_cases(torch.Generator().manual_seed(8)):
        sorted_probs = torch.softmax(logits, -1).sort(-1, descending=True).values
        if p < 1.0:
            assert (sorted_probs.cumsum(-1) - p).abs().min() > 1e-3
        n = ((sorted_probs.cumsum(-1) - sorted_probs) < p).sum(-1)
        for row, k in zip(sorted_probs.reshape(-1, logits.shape[-1]), n.reshape(-1)):
            if k < logits.shape[-1]:
                assert row[k - 1] - row[k] > 1e-4            # the last kept token is not tied with the first dropped


def test_top_p_names_a_nucleus_left_empty():
    from transformer_lib.checks._core import diagnose
    from transformer_lib.checks.gpt import _top_p_mistakes
    logits = torch.tensor([[4.0, 0.0, -1.0], [0.0, 0.1, 0.2]])
    _, mistakes = _top_p_mistakes(logits, 0.05)
    wrong = nucleus(logits, 0.05, lambda sp, p: sp.cumsum(-1) < p)               # NaN rows: nothing kept
    assert "kept no token at all" in diagnose(wrong, mistakes, equal_nan=True)
