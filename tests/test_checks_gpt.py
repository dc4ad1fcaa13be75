"""The lesson-11 checks: causal LM loss, one KV-cache step, top-k probabilities."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_lib import KVCache, causal_mask, merge_heads, scaled_dot_product_attention, split_heads
from transformer_lib.checks import CheckFailed, check_causal_lm_loss, check_kv_cache_step, check_top_k_probs
from transformer_lib.gpt import causal_lm_loss
from transformer_lib.kv_cache import kv_cache_step
from transformer_lib.sampling import top_k_probs


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
