"""The lesson-11 checks: causal LM loss, the GPT block and model, one KV-cache step, temperature, top-k and
top-p probabilities."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from transformer_lib import FeedForward, KVCache, LayerNorm, MultiHeadAttention, causal_mask, merge_heads, scaled_dot_product_attention, split_heads
from transformer_lib.checks import (CheckFailed, check_causal_lm_loss, check_Block, check_kv_cache_step,
                                    check_MiniGPT, check_temperature_probs,
                                    check_top_k_probs, check_top_p_probs)
from transformer_lib.gpt import GPT, Block, GPTConfig, MiniGPT, causal_lm_loss, mini_gpt_state_dict
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


# ---- the GPT block and the model as nn.Modules ---------------------------------------------

class LibraryLayerNormBlock(nn.Module):
    """Another correct way: lesson 05's LayerNorm, the mask built once per call from x's length."""

    def __init__(self, d_model, num_heads, d_ff):
        super().__init__()
        self.ln1, self.ln2 = LayerNorm(d_model), LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.mlp = FeedForward(d_model, d_ff, activation="gelu_tanh")

    def forward(self, x):
        T = x.shape[1]
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        a = self.ln1(x)
        x = x + self.attn(a, a, a, mask)[0]
        return x + self.mlp(self.ln2(x))


def block_with(forward):
    return type("WrongBlock", (Block,), {"forward": lambda self, x: forward(self, x, causal_mask(x.shape[1]))})


def attend(b, h, mask):
    return b.attn(h, h, h, mask=mask)[0]


def test_block_accepts_correct_versions(capsys):
    for cls in (Block, LibraryLayerNormBlock):
        assert check_Block(cls) is cls
    assert capsys.readouterr().out.count("✅") == 2


class RenamedBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_ff):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = FeedForward(d_model, d_ff, activation="gelu_tanh")

    def forward(self, x):
        return x


class SwappedSizesBlock(Block):
    def __init__(self, d_model, num_heads, d_ff):
        super().__init__(d_model, num_heads, d_ff)
        self.mlp = FeedForward(d_ff, d_model, activation="gelu_tanh")


class NotAModule:
    def __init__(self, d_model, num_heads, d_ff):
        pass


class ForwardStub(Block):
    def forward(self, x):
        raise NotImplementedError()


def tanh_gelu_mlp(b, h, act):
    return b.mlp.linear2(act(b.mlp.linear1(h)))


@pytest.mark.parametrize("wrong, words", [
    (block_with(lambda b, x, m: b.ln2((lambda h: h + b.mlp(h))(b.ln1(x + attend(b, x, m))))), "post-LN"),
    (block_with(lambda b, x, m: b.mlp(b.ln2(attend(b, b.ln1(x), m)))), "both residual connections are missing"),
    (block_with(lambda b, x, m: (lambda h: h + b.mlp(b.ln2(h)))(attend(b, b.ln1(x), m))), "around attention is missing"),
    (block_with(lambda b, x, m: b.mlp(b.ln2(x + attend(b, b.ln1(x), m)))), "around the MLP is missing"),
    (block_with(lambda b, x, m: (lambda h: h + b.mlp(b.ln2(h)))(x + attend(b, b.ln1(x), None))), "future leaks"),
    (block_with(lambda b, x, m: (lambda h: h + b.mlp(b.ln2(h)))(x + attend(b, b.ln1(x), m.T))), "future leaks"),
    (block_with(lambda b, x, m: (lambda h: h + b.mlp(b.ln2(h)))((lambda n: n + attend(b, n, m))(b.ln1(x)))),
     "adds the normalised input"),
    (block_with(lambda b, x, m: (lambda h: h + b.mlp(b.ln1(h)))(x + attend(b, b.ln2(x), m))), "swapped"),
    (block_with(lambda b, x, m: (lambda h: h + b.mlp(h))(x + attend(b, x, m))), "no LayerNorm"),
    (block_with(lambda b, x, m: (lambda h: h + tanh_gelu_mlp(b, b.ln2(h), F.relu))(x + attend(b, b.ln1(x), m))), "ReLU"),
    (block_with(lambda b, x, m: (lambda h: h + tanh_gelu_mlp(b, b.ln2(h), F.gelu))(x + attend(b, b.ln1(x), m))), "exact GELU"),
    (block_with(lambda b, x, m: x + b.attn(b.ln1(x), b.ln1(x), b.ln1(x), mask=m)), "a tuple reached a tensor operation"),
    (block_with(lambda b, x, m: (lambda h: h + b.mlp(b.ln2(h)))(x + attend(b, b.ln1(x), m))[:, -1:]), "should have shape"),
    (RenamedBlock, r"(?s)names this exercise prescribes.*ln1 = nn.LayerNorm.*Missing: attn, ln1, ln2, mlp\n.*Unexpected: ffn, norm1"),
    (SwappedSizesBlock, "wrong sizes"),
    (NotAModule, "expected an nn.Module"),
    (ForwardStub, "(?s)raised NotImplementedError.*forward is still"),
])
def test_block_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_Block(wrong)


class MiniGPTWithPlainPositions(nn.Module):
    """Another correct way: positions as a plain nn.Embedding under pos.embedding, an untied head."""

    def __init__(self, config, block=Block):
        super().__init__()
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = nn.Module()
        self.pos.embedding = nn.Embedding(c.max_len, c.d_model)
        self.blocks = nn.ModuleList([block(c.d_model, c.num_heads, c.d_ff) for _ in range(c.num_layers)])
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)

    def forward(self, ids):
        x = self.embed(ids) + self.pos.embedding(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def test_mini_gpt_accepts_correct_versions(capsys):
    for cls in (MiniGPT, MiniGPTWithPlainPositions):
        assert check_MiniGPT(cls) is cls
    assert capsys.readouterr().out.count("✅") == 2


def gpt_with(forward, **attributes):
    return type("WrongGPT", (MiniGPT,), {"forward": forward, **attributes})


def run_blocks(m, x):
    for block in m.blocks:
        x = block(x)
    return x


class LeakyBlock(Block):
    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h)[0]
        return x + self.mlp(self.ln2(x))


class NoFinalNorm(MiniGPT):
    def __init__(self, config, block=Block):
        super().__init__(config, block)
        del self.ln_f

    def forward(self, ids):
        return self.head(run_blocks(self, self.pos(self.embed(ids))))


class PlainListGPT(MiniGPT):
    def __init__(self, config, block=Block):
        super().__init__(config, block)
        layers = list(self.blocks)
        del self.blocks
        self.layers = layers


@pytest.mark.parametrize("wrong, words", [
    (gpt_with(lambda m, ids: m.head(run_blocks(m, m.pos(m.embed(ids))))), "final LayerNorm is missing"),
    (NoFinalNorm, "there is no final LayerNorm"),
    (gpt_with(lambda m, ids: m.head(m.ln_f(run_blocks(m, m.embed(ids))))), "no positions"),
    (gpt_with(lambda m, ids: m.ln_f(run_blocks(m, m.pos(m.embed(ids))))), "hidden states"),
    (gpt_with(lambda m, ids: torch.softmax(m.head(m.ln_f(run_blocks(m, m.pos(m.embed(ids))))), -1)), "probabilities"),
    (lambda config: MiniGPT(config, block=LeakyBlock), "future leaks"),
    (PlainListGPT, "no self.blocks"),
    (gpt_with(MiniGPT.forward, __init__=lambda m, config: (MiniGPT.__init__(m, config), setattr(m, "lm_head", m.head),
                                                            delattr(m, "head"))[0]), "Missing: head\n   Unexpected: lm_head"),
])
def test_mini_gpt_rejects_wrong_versions(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_MiniGPT(wrong)


def test_mini_gpt_with_library_weights_equals_the_library_gpt():
    config = GPTConfig.tiny(13, d_model=12, num_heads=3, num_layers=2, d_ff=20, max_len=9)
    torch.manual_seed(0)
    gpt, mini = GPT(config).eval(), MiniGPT(config)
    mini.load_state_dict(mini_gpt_state_dict(gpt))
    ids = torch.randint(0, 13, (2, 9))
    assert torch.allclose(mini(ids), gpt(ids), atol=1e-6)
    with pytest.raises(TypeError, match="must be a GPT"):
        mini_gpt_state_dict(mini)
