"""Checks for lesson 11's exercises: the causal LM loss, one KV-cache step, top-k sampling."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..attention import scaled_dot_product_attention
from ..gpt import causal_lm_loss
from ..kv_cache import kv_cache_step
from ..masks import causal_mask
from ..multi_head_attention import MultiHeadAttention, merge_heads, split_heads
from ..sampling import top_k_probs
from ._core import call, close, describe, exercise, expect_close, expect_tensor, fail

__all__ = ["check_causal_lm_loss", "check_kv_cache_step", "check_top_k_probs"]


# ---- the causal LM loss --------------------------------------------------------------------

def _ce(logits, targets):
    if logits.shape[1] == 0:
        return torch.tensor(float("nan"))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@exercise(reference=causal_lm_loss)
def check_causal_lm_loss(fn):
    g = torch.Generator().manual_seed(4)
    cases = []
    for B, T, V in ((2, 7, 11), (1, 5, 13), (3, 2, 6)):
        cases.append((torch.randn(B, T, V, generator=g) * 2, torch.randint(0, V, (B, T), generator=g)))
    for logits, ids in cases:
        case = f"logits {tuple(logits.shape)} and ids {tuple(ids.shape)}"
        got = call(fn, logits.requires_grad_(), ids, case=case)
        logits = logits.detach()
        expect_tensor(got, (), f"the loss on {case} (a scalar tensor)")
        if not got.requires_grad:
            fail("the loss does not carry gradients: compute it with torch operations on the logits (no .item())")
        V = logits.shape[-1]
        expect_close(got.detach(), causal_lm_loss(logits, ids), f"the loss on {case}", mistakes={
            "it scores every position against its own token (no shift): the model would learn to copy its "
            "input. Position i must predict token i + 1: logits[:, :-1] against ids[:, 1:]": _ce(logits, ids),
            "it drops the last position but still scores each position against its own token: compare "
            "logits[:, :-1] with ids[:, 1:] (the next tokens)": _ce(logits[:, :-1], ids[:, :-1]),
            "it drops the first position and scores each position against its own token: compare "
            "logits[:, :-1] with ids[:, 1:]": _ce(logits[:, 1:], ids[:, 1:]),
            "it is shifted the wrong way: logits[:, 1:] against ids[:, :-1] predicts the previous token; use "
            "logits[:, :-1] against ids[:, 1:]": _ce(logits[:, 1:], ids[:, :-1]),
            "it is shifted by two: position i must predict token i + 1, not i + 2": _ce(logits[:, :-2], ids[:, 2:]),
            "it sums the losses: take the mean over the B * (T - 1) predictions":
                F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1), reduction="sum"),
        }, hint="Expected F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1)).")
    return len(cases)


# ---- one KV-cache step ---------------------------------------------------------------------

class _RowCounter:
    """Forward hooks that record how many token rows each projection processed."""

    def __init__(self, attn):
        self.rows = {"w_q": 0, "w_k": 0, "w_v": 0}
        self.handles = [getattr(attn, name).register_forward_hook(self._hook(name)) for name in self.rows]

    def _hook(self, name):
        def hook(module, inputs, output):
            x = inputs[0]
            self.rows[name] += x.shape[-2] if x.dim() >= 2 else 1
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


_CAT_HINT = ("torch.cat joins tensors along one axis and every other axis must match: the cache is (B, H, t, d_k), "
             "so append the new key/value along the positions axis, dim=-2 (or dim=2)")


@exercise(reference=kv_cache_step)
def check_kv_cache_step(fn):
    B, D, H = 2, 12, 3
    d_k = D // H
    with torch.random.fork_rng():                     # leave the learner's random state alone
        torch.manual_seed(0)
        attn = MultiHeadAttention(D, H).eval()
    g = torch.Generator().manual_seed(5)
    cases = 0
    for B, t in ((2, 0), (1, 4), (2, 1), (2, 6)):
        x = torch.randn(B, t + 1, D, generator=g)
        case = f"x {tuple(x.shape)} with {t} cached positions"
        with torch.no_grad():
            past_k = split_heads(attn.w_k(x[:, :-1]), H)                         # (B, H, t, d_k)
            past_v = split_heads(attn.w_v(x[:, :-1]), H)
            full, _ = attn(x, x, x, mask=causal_mask(t + 1))                    # (B, t + 1, D)
            want_k, want_v = split_heads(attn.w_k(x), H), split_heads(attn.w_v(x), H)
            q_new = split_heads(attn.w_q(x[:, -1:]), H)
        counter = _RowCounter(attn)
        try:
            with torch.no_grad():
                out = call(fn, attn, x, past_k, past_v, case=case,
                           hints={"Sizes of tensors must match|torch.cat|must match the size": _CAT_HINT})
        finally:
            counter.remove()
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            fail(f"kv_cache_step should return (out, k, v), got {describe(out)}")
        out, k, v = out
        for name, got, want in (("k", k, want_k), ("v", v, want_v)):
            if not isinstance(got, torch.Tensor):
                fail(f"the returned {name} should be a tensor, got {describe(got)}")
            if t and tuple(got.shape) == tuple(past_k.shape) and torch.equal(got, past_k if name == "k" else past_v):
                fail(f"the returned {name} is the old cache: the newest token's {name} was not appended "
                     f"(torch.cat([past_{name}, {name}_new], dim=-2))")
            if t and tuple(got.shape) == (B, H, 1, d_k):
                fail(f"the returned {name} holds the newest token only: return the whole cache, the {t} cached "
                     f"positions followed by the new one, shape {(B, H, t + 1, d_k)}")
            if tuple(got.shape) != tuple(want.shape):
                fail(f"the returned {name} has shape {tuple(got.shape)} on {case}, expected {tuple(want.shape)} "
                     "(B, H, t + 1, d_k): concatenate along the positions axis, dim=-2")
            expect_close(got, want, f"the returned cache {name} on {case}", mistakes={
                "the new entry was put in front of the cache: append it at the end, torch.cat([past, new], dim=-2)":
                    torch.cat([want[:, :, -1:], want[:, :, :-1]], dim=-2),
            })
        if t and isinstance(out, torch.Tensor) and tuple(out.shape) == (B, t + 1, D):
            fail(f"out has shape {tuple(out.shape)}: one row per token. A generation step needs the newest "
                 f"token's output only, shape {(B, 1, D)}: take the query from x[:, -1:]")
        expect_close(out, full[:, -1:], f"out on {case}", mistakes={
            "the newest token attends to the cached positions only: include its own key and value, i.e. "
            "attend over the cache *after* appending": _attend(attn, q_new, past_k, past_v) if t
                else attn.w_o(torch.zeros(B, 1, D)),
            "the newest token attends to the first position only (the first row of a causal mask?): the "
            "newest token comes last and may see every key, so no mask is needed":
                _attend(attn, q_new, want_k[:, :, :1], want_v[:, :, :1]),
            "w_o is missing: the heads' outputs are merged and then projected with attn.w_o":
                merge_heads(scaled_dot_product_attention(q_new, want_k, want_v)[0]),
        })
        if t and max(counter.rows["w_k"], counter.rows["w_v"]) >= t + 1:
            fail(f"it recomputes: w_k/w_v projected {max(counter.rows['w_k'], counter.rows['w_v'])} token rows "
                 f"for {t} cached + 1 new token. The point of the cache is that earlier keys and values are "
                 "never computed again: project only x[:, -1:] and append")
        if t and counter.rows["w_q"] >= t + 1:
            fail(f"w_q projected {counter.rows['w_q']} token rows: only the newest token needs a query, x[:, -1:]")
        cases += 1
    return cases


def _attend(attn, q, k, v):
    out, _ = scaled_dot_product_attention(q, k, v)
    return attn.w_o(merge_heads(out))


# ---- top-k sampling ------------------------------------------------------------------------

def _distinct_logits(shape, g):
    V = shape[-1]
    rows = torch.stack([torch.randperm(V, generator=g) for _ in range(int(torch.tensor(shape[:-1]).prod()))])
    return (rows.float() * 0.7 - V / 3 + torch.rand(rows.shape, generator=g) * 0.1).reshape(shape)


@exercise(reference=top_k_probs)
def check_top_k_probs(fn):
    g = torch.Generator().manual_seed(6)
    cases = [((2, 11), 3), ((1, 7), 1), ((3, 5), 5), ((2, 3, 9), 4), ((4, 13), 12)]
    for shape, k in cases:
        logits = _distinct_logits(shape, g)
        case = f"logits {shape} and k={k}"
        got = call(fn, logits, k, case=case)
        if isinstance(got, torch.Tensor) and torch.isinf(got).any():
            fail(f"the result on {case} contains -inf: it looks like filtered logits. Return probabilities: "
                 "apply softmax after setting the other logits to -inf")
        want = top_k_probs(logits, k)
        V = shape[-1]
        mistakes = {
            "it keeps every token (sampling from the full distribution): zero out all but the k largest":
                torch.softmax(logits, dim=-1),
            "it is not renormalised: after keeping the k largest probabilities, divide by their sum so each "
            "row sums to 1 (or take softmax over the k kept logits)":
                torch.softmax(logits, dim=-1) * (want > 0),
            "it keeps the k smallest logits instead of the largest (torch.topk's largest=True, or sort descending)":
                torch.softmax(logits.masked_fill(logits > torch.topk(logits, k, dim=-1, largest=False).values[..., -1:],
                                                 float("-inf")), dim=-1),
        }
        if k < V:
            mistakes["it keeps k + 1 tokens: the threshold is the k-th largest value, values[..., k - 1] "
                     "(or values[..., -1:] of torch.topk(logits, k))"] = top_k_probs(logits, k + 1)
        if k > 1:
            mistakes["it keeps k - 1 tokens: keep exactly the k largest"] = top_k_probs(logits, k - 1)
        if len(shape) == 2 and shape[0] > 1:
            mistakes["the softmax runs over the batch (dim=0): normalise over the vocabulary, dim=-1"] = \
                torch.softmax(logits.masked_fill(want == 0, float("-inf")), dim=0).nan_to_num(0.0)
        expect_close(got, want, f"the probabilities on {case}", mistakes=mistakes,
                     hint="Each row should be the softmax over its k largest logits, exactly 0 elsewhere, summing to 1.")
        if not close(got.sum(-1), torch.ones(shape[:-1])):
            fail(f"rows do not sum to 1 on {case}")
    return len(cases)
