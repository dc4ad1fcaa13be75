"""Checks for lesson 11's exercises: the causal LM loss, the GPT block and model, one KV-cache step,
temperature, top-k and top-p sampling."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import scaled_dot_product_attention
from ..decoder import DecoderLayer, leaks_future
from ..gpt import GPT, Block, GPTConfig, MiniGPT, block_state_dict, causal_lm_loss, mini_gpt_state_dict
from ..kv_cache import kv_cache_step
from ..masks import causal_mask
from ..multi_head_attention import MultiHeadAttention, merge_heads, split_heads
from ..sampling import temperature_probs, top_k_probs, top_p_probs
from ._core import CheckFailed, call, close, describe, exercise, expect_close, expect_tensor, fail

__all__ = ["check_causal_lm_loss", "check_Block", "check_MiniGPT", "check_kv_cache_step", "check_temperature_probs",
           "check_top_k_probs", "check_top_p_probs"]


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


# ---- the GPT block and the model, as nn.Modules ---------------------------------------------

_BLOCK_PARTS = ("ln1 = nn.LayerNorm(d_model), attn = MultiHeadAttention(d_model, num_heads), "
                "ln2 = nn.LayerNorm(d_model), mlp = FeedForward(d_model, d_ff, activation=\"gelu_tanh\")")
_GPT_PARTS = ("embed = nn.Embedding(vocab_size, d_model), pos = LearnedPositionalEmbedding(d_model, max_len), "
              "blocks = nn.ModuleList of Blocks, ln_f = nn.LayerNorm(d_model), head = nn.Linear(d_model, vocab_size, "
              "bias=False)")
_FORWARD_STUB = {"^$": "forward is still `raise NotImplementedError()`: write it"}


def _build(fn, args: tuple, what: str) -> nn.Module:
    """The learner's module, built with the random state the check fixes (their RNG left alone)."""
    __tracebackhide__ = True
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = call(fn, *args, case=what)
    if not isinstance(module, nn.Module):
        fail(f"{what} gave {describe(module)}, expected an nn.Module: the class must subclass nn.Module "
             "(class ...(nn.Module):) and call super().__init__() first")
    return module


def _random_norms(module: nn.Module, g: torch.Generator) -> None:
    """LayerNorm gains and biases away from 1 and 0, so a swapped or skipped norm shows."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))


def _parts(keys: list[str]) -> str:
    """Parameter names shortened to the submodules that hold them (``blocks.0.attn``, ``ln_f``)."""
    names = []
    for key in keys:
        path = key.split(".")
        name = ".".join(path[:3]) if path[0] == "blocks" and len(path) > 3 else path[0]
        if name not in names:
            names.append(name)
    return ", ".join(names[:8]) + (" ..." if len(names) > 8 else "") if names else "none"


def _load(module: nn.Module, state: dict, what: str, parts: str, missing_hints: dict[str, str]) -> None:
    """Copy the reference weights into the learner's module by name; fail naming the expected names."""
    __tracebackhide__ = True
    have = set(module.state_dict())
    missing, unexpected = sorted(set(state) - have), sorted(have - set(state))
    for prefix, hint in missing_hints.items():
        if any(k.startswith(prefix) for k in missing) and not any(k.startswith(prefix) for k in have):
            fail(hint)
    if missing or unexpected:
        fail(f"{what}'s parameters do not have the names this exercise prescribes, so the check cannot copy the "
             f"reference weights into it. Name the parts {parts}.\n   Missing: {_parts(missing)}"
             f"\n   Unexpected: {_parts(unexpected)}")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        sizes = "; ".join(line.strip() for line in str(e).splitlines() if "size mismatch" in line)
        fail(f"{what}'s parameters have the right names but the wrong sizes: {sizes[:400]}. Check the order of "
             "the arguments (FeedForward(d_model, d_ff), MultiHeadAttention(d_model, num_heads))")
    module.eval()


def _block_mistakes(layer, x):
    """What a block with each typical mistake returns (the reference layer's weights)."""
    T = x.shape[1]
    mask = causal_mask(T)
    ln1, ln2, mlp = layer.norm1, layer.norm3, layer.feed_forward

    def attn(h):
        return layer.self_attn(h, h, h, mask=mask)[0]

    def ffn(h, act=lambda z: F.gelu(z, approximate="tanh")):
        return mlp.linear2(act(mlp.linear1(h)))

    with torch.no_grad():
        a = x + attn(ln1(x))
        post = ln1(x + attn(x))
        return {
            "it is post-LN (LayerNorm after the residual sum, as in the 2017 paper): GPT-2's block is pre-LN, "
            "x = x + attn(ln1(x)), then x = x + mlp(ln2(x))": ln2(post + ffn(post)),
            "both residual connections are missing: add each sub-layer's output to its input, x = x + ...":
                ffn(ln2(attn(ln1(x)))),
            "the residual connection around attention is missing: x = x + attn(ln1(x))[...]":
                (lambda h: h + ffn(ln2(h)))(attn(ln1(x))),
            "the residual connection around the MLP is missing: return x + self.mlp(self.ln2(x))": ffn(ln2(a)),
            "the residual adds the normalised input: keep x itself on the residual path and normalise only the "
            "sub-layer's input, x = x + attn(ln1(x)) (not x = ln1(x); x = x + attn(x))":
                (lambda h: h + ffn(ln2(h)))((lambda n: n + attn(n))(ln1(x))),
            "ln1 and ln2 are swapped: ln1 goes before attention, ln2 before the MLP":
                (lambda h: h + ffn(ln1(h)))(x + attn(ln2(x))),
            "there is no LayerNorm: normalise each sub-layer's input, x + attn(ln1(x)) and x + mlp(ln2(x))":
                (lambda h: h + ffn(h))(x + attn(x)),
            "the MLP uses ReLU: GPT-2 uses the tanh-GELU, FeedForward(d_model, d_ff, activation=\"gelu_tanh\")":
                a + ffn(ln2(a), F.relu),
            "the MLP uses the exact GELU: GPT-2 uses its tanh approximation, activation=\"gelu_tanh\"":
                a + ffn(ln2(a), F.gelu),
        }


@exercise(reference=Block)
def check_Block(fn):
    g = torch.Generator().manual_seed(9)
    cases = 0
    for (D, H, d_ff), shapes in (((12, 3, 20), ((2, 5), (1, 1), (3, 7))), ((8, 2, 16), ((2, 6),))):
        what = f"Block({D}, {H}, {d_ff})"
        block = _build(fn, (D, H, d_ff), what)
        with torch.random.fork_rng():
            torch.manual_seed(1)
            layer = DecoderLayer(D, H, d_ff, norm_first=True, activation="gelu_tanh", cross_attention=False).eval()
        _random_norms(layer, g)
        _load(block, block_state_dict(layer), what, _BLOCK_PARTS, {})
        for B, T in shapes:
            x = torch.randn(B, T, D, generator=g)
            case = f"{what} on x {(B, T, D)}"
            with torch.no_grad():
                got = call(block.forward, x, case=case, hints=_FORWARD_STUB)
                want = layer(x, None, causal_mask(T))
                expect_tensor(got, want.shape, f"the output on {case}")
                if T > 1 and leaks_future(lambda h: block(h), x, atol=1e-5):
                    fail(f"the future leaks on {case}: changing a later token changes the output at earlier "
                         "positions. Attention needs the causal mask, mask=causal_mask(T) with T = x.shape[1] "
                         "(True = may attend)")
                expect_close(got, want, f"the output on {case}", mistakes=_block_mistakes(layer, x),
                             hint="Expected x = x + attn(ln1(x)) with the causal mask, then x + mlp(ln2(x)).")
            cases += 1
    return cases


def _gpt_mistakes(gpt, ids):
    T = ids.shape[1]

    def blocks(x):
        for layer in gpt.decoder.layers:
            x = layer(x, None, causal_mask(T))
        return x

    with torch.no_grad():
        h = blocks(gpt.pos(gpt.embed(ids)))
        return {
            "the final LayerNorm is missing: apply self.ln_f after the last block, logits = head(ln_f(x))":
                gpt.generator(h),
            "there are no positions: add them with self.pos(self.embed(ids)) (the model cannot tell the order "
            "of the tokens otherwise)": gpt.generator(gpt.decoder.norm(blocks(gpt.embed(ids)))),
            "it returns probabilities: return the logits, head(ln_f(x)) without a softmax":
                torch.softmax(gpt.generator(gpt.decoder.norm(h)), dim=-1),
        }


def _future_leaks(model, ids, V: int, g: torch.Generator) -> bool:
    """Does changing later tokens change the logits at earlier positions?"""
    reference = model(ids)
    for t in range(ids.shape[1] - 1):
        changed = ids.clone()
        changed[:, t + 1:] = torch.randint(0, V, changed[:, t + 1:].shape, generator=g)
        if not torch.allclose(model(changed)[:, :t + 1], reference[:, :t + 1], atol=1e-5, rtol=0):
            return True
    return False


@exercise(reference=MiniGPT)
def check_MiniGPT(fn):
    g = torch.Generator().manual_seed(10)
    configs = ((GPTConfig.tiny(11, d_model=12, num_heads=3, num_layers=2, d_ff=20, max_len=9), ((2, 7), (1, 1), (3, 9))),
               (GPTConfig.tiny(7, d_model=8, num_heads=2, num_layers=1, d_ff=12, max_len=5), ((2, 5),)))
    cases = 0
    for config, shapes in configs:
        what = (f"MiniGPT(config) with vocab_size={config.vocab_size}, d_model={config.d_model}, "
                f"num_heads={config.num_heads}, num_layers={config.num_layers}")
        model = _build(fn, (config,), what)
        with torch.random.fork_rng():
            torch.manual_seed(1)
            gpt = GPT(config).eval()
        _random_norms(gpt, g)
        _load(model, mini_gpt_state_dict(gpt), what, _GPT_PARTS, {
            "ln_f.": "there is no final LayerNorm: add self.ln_f = nn.LayerNorm(d_model) and apply it after the "
                     "last block, logits = self.head(self.ln_f(x)) (pre-LN blocks leave the residual stream "
                     "unnormalised)",
            "blocks.": "there is no self.blocks: keep the blocks in an nn.ModuleList named blocks, "
                       "nn.ModuleList(Block(d_model, num_heads, d_ff) for _ in range(num_layers)) (a plain list "
                       "hides their parameters from PyTorch)"})
        V = config.vocab_size
        for B, T in shapes:
            ids = torch.randint(0, V, (B, T), generator=g)
            case = f"{what} on ids {(B, T)}"
            with torch.no_grad():
                got = call(model.forward, ids, case=case, hints=_FORWARD_STUB)
                want = gpt(ids)
                if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, T, config.d_model):
                    fail(f"the output on {case} has shape {tuple(got.shape)}: these are the hidden states. Return the "
                         f"logits {(B, T, V)}: self.head(self.ln_f(x))")
                expect_tensor(got, want.shape, f"the logits on {case}")
                if T > 1 and _future_leaks(model, ids, V, g):
                    fail(f"the future leaks on {case}: changing a later token changes the logits at earlier "
                         "positions. Every block must use the causal mask")
                expect_close(got, want, f"the logits on {case}", mistakes=_gpt_mistakes(gpt, ids),
                             hint="Expected head(ln_f(blocks(pos(embed(ids))))).")
            cases += 1
    return cases


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


def _not_probabilities(got, case: str) -> None:
    """Fail when a sampling exercise returned logits (with -inf, or rows not summing to 1)."""
    __tracebackhide__ = True
    if isinstance(got, torch.Tensor) and got.is_floating_point() and torch.isinf(got).any():
        fail(f"the result on {case} contains -inf: it looks like filtered logits. Return probabilities: "
             "apply softmax after setting the other logits to -inf")


# ---- temperature ---------------------------------------------------------------------------

def _expect_value_error(fn, logits, temperature, why: str) -> None:
    """The learner's function must refuse ``temperature`` with a ValueError."""
    __tracebackhide__ = True
    case = f"temperature={temperature}"
    try:
        got = call(fn, logits, temperature, case=case)
    except CheckFailed as e:
        error = e.learner_error
        if error is None:
            raise
        if not isinstance(error, ValueError):
            fail(f"{case} should raise ValueError ({why}), got {type(error).__name__}: {error}. Write "
                 "`if temperature <= 0: raise ValueError(...)` (an assert is not it: `python -O` removes asserts)",
                 error)
        return
    fail(f"{case} returned {describe(got)}: it should raise ValueError, because {why}. Start with "
         "`if temperature <= 0: raise ValueError(...)`")


@exercise(reference=temperature_probs)
def check_temperature_probs(fn):
    g = torch.Generator().manual_seed(7)
    ties = torch.tensor([[2.0, 2.0, -1.0, 0.5, 2.0, 0.5, -3.0]])
    cases = [(torch.randn(2, 11, generator=g) * 2, 0.5), (torch.randn(3, 7, generator=g), 2.0),
             (torch.randn(1, 5, generator=g) * 3, 1.0), (torch.randn(2, 3, 9, generator=g), 0.7),
             (ties, 0.25), (torch.randn(4, 13, generator=g) * 4 + 30, 3.0)]
    for logits, tau in cases:
        case = f"logits {tuple(logits.shape)} and temperature={tau}"
        got = call(fn, logits, tau, case=case)
        _not_probabilities(got, case)
        want = temperature_probs(logits, tau)
        mistakes = {
            "it multiplies the logits by the temperature: divide them, softmax(logits / temperature), so that "
            "a temperature below 1 sharpens the distribution": torch.softmax(logits * tau, dim=-1),
            "it divides after the softmax: the probabilities no longer sum to 1, and dividing all of them by the "
            "same number does not change their ratios. Divide the logits first, then softmax":
                torch.softmax(logits, dim=-1) / tau,
            "it applies the temperature to probabilities (softmax, divide, softmax again): divide the logits "
            "themselves, then softmax once": torch.softmax(torch.softmax(logits, dim=-1) / tau, dim=-1),
            "it returns the scaled logits: the exercise asks for probabilities, softmax(logits / temperature, "
            "dim=-1)": logits / tau,
            "it ignores the temperature: divide the logits by it before the softmax": torch.softmax(logits, dim=-1),
        }
        if logits.dim() == 2 and logits.shape[0] > 1:
            mistakes["the softmax runs over the batch (dim=0): normalise over the vocabulary, dim=-1"] = \
                torch.softmax(logits / tau, dim=0)
        if tau == 1.0:
            del mistakes["it ignores the temperature: divide the logits by it before the softmax"]
        expect_close(got, want, f"the probabilities on {case}", mistakes=mistakes,
                     hint="Expected softmax(logits / temperature, dim=-1).")
    logits = cases[0][0]
    _expect_value_error(fn, logits, 0.0, "temperature 0 divides by zero; its limit is greedy decoding (argmax), "
                        "which the lesson does separately")
    _expect_value_error(fn, logits, -1.0, "a negative temperature turns the ranking upside down: the least likely "
                        "token would become the most likely")
    return len(cases) + 2


# ---- top-p (nucleus) sampling ----------------------------------------------------------------

def _nucleus(logits, keep_sorted):
    """softmax over the tokens that ``keep_sorted(sorted_probs) -> bool (..., V)`` keeps, in sorted order."""
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, keep_sorted(sorted_probs))
    return torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1), keep


def _keep_count(sorted_probs, p, extra):
    """The correct nucleus (kept: the mass ranked higher is < p) with ``extra`` more or fewer tokens."""
    n = ((sorted_probs.cumsum(-1) - sorted_probs) < p).sum(-1, keepdim=True) + extra     # (..., 1)
    rank = torch.arange(sorted_probs.shape[-1]).expand_as(sorted_probs)
    return rank < n


def _top_p_mistakes(logits, p):
    V = logits.shape[-1]
    probs = torch.softmax(logits, dim=-1)
    correct, keep = _nucleus(logits, lambda sp: _keep_count(sp, p, 0))
    mistakes = {
        "it keeps every token (sampling from the full distribution): keep only the nucleus": probs,
        "it is not renormalised: divide the kept probabilities by their sum so each row sums to 1 (or take "
        "softmax over the kept logits)": probs * keep,
        "it leaves out the token whose probability makes the sum reach p: keep a token when the mass ranked "
        "*above* it is still below p (cumsum - probs < p), so the nucleus reaches p":
            _nucleus(logits, lambda sp: (sp.cumsum(-1) < p) | (torch.arange(V) == 0))[0],
        "it keeps one token too many: the nucleus ends with the token whose probability makes the sum reach p":
            _nucleus(logits, lambda sp: _keep_count(sp, p, 1))[0],
        "it sorts in ascending order, so it keeps the *least* likely tokens: sort with descending=True":
            _nucleus(logits, lambda sp: (sp.flip(-1).cumsum(-1) - sp.flip(-1) < p).flip(-1))[0],
    }
    empty = (probs.sort(dim=-1, descending=True).values.cumsum(-1) < p).sum(-1) == 0
    if bool(empty.any()):
        mistakes = {"a row where the most likely token alone has probability >= p kept no token at all: always keep "
                    "the most likely token (the mass ranked above it is 0 < p)":
                    _nucleus(logits, lambda sp: sp.cumsum(-1) < p)[0], **mistakes}
    if logits.dim() == 2 and logits.shape[0] > 1:
        mistakes["the softmax runs over the batch (dim=0): normalise over the vocabulary, dim=-1"] = \
            torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=0).nan_to_num(0.0)
    return correct, mistakes


def _top_p_cases(g):
    """Logits whose cumulative sorted probabilities stay at least 1e-3 away from p, ties included."""
    ties = torch.tensor([[3.0, 3.0, 1.0, 1.0, 1.0, -2.0, 0.0], [0.5, 2.5, 0.5, 2.5, -1.0, 0.5, -4.0]])
    first, second = _distinct_logits((2, 11), g) * 0.5, _distinct_logits((3, 7), g) * 0.4
    return [(second, 0.55), (first, 0.9),
            (_distinct_logits((2, 3, 9), g) * 0.3, 0.75), (ties, 0.6), (ties, 0.95),
            (_distinct_logits((2, 13), g), 0.05), (_distinct_logits((1, 6), g) * 0.2, 1.0)]


@exercise(reference=top_p_probs)
def check_top_p_probs(fn):
    g = torch.Generator().manual_seed(8)
    cases = _top_p_cases(g)
    for logits, p in cases:
        case = f"logits {tuple(logits.shape)} and p={p}"
        got = call(fn, logits, p, case=case)
        _not_probabilities(got, case)
        want, mistakes = _top_p_mistakes(logits, p)
        expect_close(got, want, f"the probabilities on {case}", mistakes=mistakes,
                     hint="Sort the probabilities in descending order, keep a token while the mass ranked above it "
                          "is below p, and renormalise the kept ones.")
    return len(cases)
