"""Checks for lesson 06's exercises: the decoder layer's forward pass and the no-peeking test."""
from __future__ import annotations

import torch
from torch import nn

from ..decoder import DecoderLayer, decoder_layer_forward, leaks_future
from ..masks import causal_mask, padding_mask
from ._core import call, exercise, fail
from .encoder import _random_norms, check_layer_output

__all__ = ["check_decoder_layer_forward", "check_leaks_future"]


# --------------------------------------------------------------------------- decoder layer
def _decoder_mistakes(layer: DecoderLayer, x, memory, tgt_mask, memory_mask):
    n1, n2, n3, ff = layer.norm1, layer.norm2, layer.norm3, layer.feed_forward
    sa = lambda h, m=tgt_mask: layer.self_attn(h, h, h, mask=m)[0]
    ca = lambda h, mem=memory, m=memory_mask: layer.cross_attn(h, mem, mem, mask=m)[0]

    def post(h, sa=sa, ca=ca):
        h = n1(h + sa(h))
        h = n2(h + ca(h))
        return n3(h + ff(h))

    def pre(h, sa=sa, ca=ca):
        h = h + sa(n1(h))
        h = h + ca(n2(h))
        return h + ff(n3(h))

    run = pre if layer.norm_first else post
    other = post if layer.norm_first else pre
    mistakes = {
        "self-attention does not get the causal mask (tgt_mask): without it every position sees the "
        "future; call layer.self_attn(h, h, h, mask=tgt_mask)": run(x, sa=lambda h: sa(h, None)),
        "cross-attention does not get memory_mask: padded source tokens must stay invisible, "
        "call layer.cross_attn(h, memory, memory, mask=memory_mask)": run(x, ca=lambda h: ca(h, m=None)),
        "cross-attention is missing: after self-attention the decoder reads the encoder's memory with "
        "layer.cross_attn(h, memory, memory, mask=memory_mask)": run(x, ca=lambda h: torch.zeros_like(h)),
        "self-attention is missing: the first sub-layer is masked self-attention over the target": run(x, sa=lambda h: torch.zeros_like(h)),
        "cross-attention takes its queries from the encoder memory: the queries come from the decoder "
        "(h), the keys and values from the memory, layer.cross_attn(h, memory, memory, ...)":
            run(x, ca=lambda h: layer.cross_attn(memory, h, h)[0]) if memory.shape[1] == x.shape[1] else None,
        "cross-attention attends over the decoder itself (keys/values from x): keys and values come "
        "from the encoder memory, layer.cross_attn(h, memory, memory, ...)": run(x, ca=lambda h: layer.cross_attn(h, h, h)[0]),
        f"it is a {'post' if layer.norm_first else 'pre'}-LN layer, but layer.norm_first is "
        f"{layer.norm_first}: " + ("normalise *before* each sub-layer, x = x + sublayer(norm(x))" if layer.norm_first
                                   else "normalise *after* each residual sum, x = norm(x + sublayer(x))"): other(x),
    }
    if memory.shape[1] == x.shape[1] and tgt_mask is not None and memory_mask is not None:
        try:
            mistakes["the two masks are swapped: tgt_mask (causal) goes to self-attention, memory_mask "
                     "(source padding) to cross-attention"] = run(x, sa=lambda h: sa(h, memory_mask),
                                                                   ca=lambda h: ca(h, m=tgt_mask))
        except (RuntimeError, ValueError):
            pass
    if layer.norm_first:
        def residual_after_norm(h):
            h = n1(h)
            h = h + sa(h)
            h = n2(h)
            h = h + ca(h)
            h = n3(h)
            return h + ff(h)
        mistakes["the residual is added to the *normalised* x: in pre-LN the residual path carries the "
                 "un-normalised x, x = x + sublayer(norm(x))"] = residual_after_norm(x)
        mistakes["the residual connections are missing: x = x + sublayer(norm(x)) for all three sub-layers"] = \
            ff(n3(ca(n2(sa(n1(x))))))
    else:
        mistakes["the residual connections are missing: each sub-layer's output is added to its input "
                 "before the norm, norm(x + sublayer(x))"] = n3(ff(n2(ca(n1(sa(x))))))
        mistakes["the sub-layer outputs are normalised before the residual is added: post-LN normalises "
                 "the sum, norm(x + sublayer(x))"] = (lambda h: h + n3(ff(h)))(
            (lambda h: h + n2(ca(h)))(x + n1(sa(x))))
    return {k: v for k, v in mistakes.items() if v is not None}


_DECODER_PARTS = ["norm1", "self_attn", "norm2", "cross_attn", "norm3", "feed_forward"]
_DECODER_EXPECT = {
    False: ({"self_attn": "the layer's input x as query, key and value, and mask=tgt_mask (causal)",
             "norm1": "the residual sum x + self_attn(x, x, x, mask=tgt_mask)[0]",
             "cross_attn": "h = norm1(...) as query, the encoder's memory as key and value, and mask=memory_mask",
             "norm2": "the residual sum h + cross_attn(h, memory, memory, mask=memory_mask)[0]",
             "feed_forward": "h = norm2(...)",
             "norm3": "the residual sum h + feed_forward(h)"},
            "the output of a post-LN layer is norm3(h + feed_forward(h))"),
    True: ({"norm1": "the layer's input x",
            "self_attn": "h = norm1(x) as query, key and value, and mask=tgt_mask (causal)",
            "norm2": "the un-normalised residual sum x + self_attn(h, h, h, mask=tgt_mask)[0]",
            "cross_attn": "norm2(x) as query, the encoder's memory as key and value, and mask=memory_mask",
            "norm3": "the un-normalised residual sum x + cross_attn(...)[0]",
            "feed_forward": "norm3 of that residual sum"},
           "the output of a pre-LN layer is the residual sum x + feed_forward(norm3(x)), with no norm after it"),
}


@exercise(reference=decoder_layer_forward)
def check_decoder_layer_forward(fn):
    g = torch.Generator().manual_seed(3)
    cases = []
    with torch.random.fork_rng():
        torch.manual_seed(3)
        # the first case has T == S, so that attending the wrong way round gives a wrong value, not an error
        for norm_first in (False, True):
            for B, T, S, D, H, d_ff in ((2, 5, 5, 12, 3, 20), (2, 5, 7, 12, 3, 20), (1, 4, 3, 10, 2, 9)):
                layer = DecoderLayer(D, H, d_ff, norm_first=norm_first).eval()
                _random_norms(layer, g)
                x, memory = torch.randn(B, T, D, generator=g), torch.randn(B, S, D, generator=g)
                tgt_ids, src_ids = torch.randint(1, 5, (B, T), generator=g), torch.randint(1, 5, (B, S), generator=g)
                if B > 1:
                    tgt_ids[1, T - 1] = 0
                    src_ids[0, S - 2:] = 0
                tgt_mask = causal_mask(T) & padding_mask(tgt_ids, 0)        # (T, T) & (B, 1, 1, T) -> (B, 1, T, T)
                cases.append((layer, x, memory, tgt_mask, padding_mask(src_ids, 0), norm_first))
    for layer, x, memory, tgt_mask, memory_mask, norm_first in cases:
        case = (f"a {'pre' if norm_first else 'post'}-LN layer, x {tuple(x.shape)}, memory {tuple(memory.shape)}, "
                f"tgt_mask {tuple(tgt_mask.shape)} (causal and padding), memory_mask {tuple(memory_mask.shape)}")
        expect, last_step = _DECODER_EXPECT[norm_first]
        check_layer_output(fn, layer, (x, memory, tgt_mask, memory_mask), reference=decoder_layer_forward,
                           parts=_DECODER_PARTS, expect=expect, last_step=last_step,
                           masks={"memory_mask (the source padding mask)": memory_mask,
                                  "tgt_mask (the causal mask)": tgt_mask},
                           mistakes=lambda: _decoder_mistakes(layer, x, memory, tgt_mask, memory_mask), case=case,
                           calling="layer(x, memory, ...)")
    return len(cases)


# --------------------------------------------------------------------------- the no-peeking test
class _Masked(nn.Module):
    """A decoder layer (no cross-attention) run with a fixed self-attention mask."""

    def __init__(self, layer: DecoderLayer, mask: torch.Tensor | None):
        super().__init__()
        self.layer, self.mask = layer, mask

    def forward(self, x):
        return self.layer(x, None, self.mask)


def _leak_cases(T: int, D: int) -> list[tuple[str, object, bool]]:
    """(description, function, does it leak?) for the no-peeking check."""
    with torch.random.fork_rng():
        torch.manual_seed(4)
        post = DecoderLayer(D, 2, 16, cross_attention=False).eval()
        pre = DecoderLayer(D, 2, 16, norm_first=True, cross_attention=False).eval()

    def leaking(query: int, key: int) -> torch.Tensor:
        mask = causal_mask(T).clone()
        mask[query, key] = True                                        # position `query` may also see `key`
        return mask

    w = torch.linspace(-1, 1, D)
    return [
        ("a decoder layer with its causal mask", _Masked(post, causal_mask(T)), False),
        ("a decoder layer without a mask", _Masked(post, None), True),
        ("a position-wise function (every token on its own)", lambda x: torch.tanh(x * w), False),
        ("a pre-LN decoder layer with its causal mask", _Masked(pre, causal_mask(T)), False),
        ("a function that looks only at the past (out[t] = x[t] + x[t-1])",
         lambda x: x + torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1), False),
        ("a pre-LN decoder layer without a mask", _Masked(pre, None), True),
        (f"a layer whose only leak is position {T - 2} seeing position {T - 1} (the last two positions)",
         _Masked(post, leaking(T - 2, T - 1)), True),
        (f"a layer whose only leak is position 2 seeing position 4", _Masked(post, leaking(2, 4)), True),
        ("a layer whose only leak is position 0 seeing position 1", _Masked(post, leaking(0, 1)), True),
        ("a layer with a small leak (outputs change by about 1e-3)",
         lambda x: post(x, None, causal_mask(T)) + 1e-3 * x.roll(-1, dims=1), True),
    ]


def _leak_diagnosis(description: str, T: int) -> str:
    diagnoses = {
        "a decoder layer with its causal mask":
            "it reports a leak for a decoder layer that has its causal mask: when you change the inputs after "
            "position t, compare only the outputs at positions 0..t (the outputs at the changed positions may change)",
        "a position-wise function (every token on its own)":
            "it reports a leak for a position-wise function, where no token sees any other: compare only the "
            "outputs *before* the positions you changed",
        "a pre-LN decoder layer with its causal mask":
            "it reports a leak for a causal pre-LN layer: compare only the outputs at positions 0..t after "
            "changing the inputs after t",
        "a function that looks only at the past (out[t] = x[t] + x[t-1])":
            "it reports a leak for a function that only looks at the past: the *later* outputs may depend on "
            "earlier inputs; a leak is an *earlier* output depending on a *later* input",
        "a decoder layer without a mask":
            "it misses the leak of a decoder layer without a causal mask: change the inputs after position t and "
            "check whether the outputs at positions 0..t change",
        "a pre-LN decoder layer without a mask":
            "it misses the leak of a pre-LN layer without a mask: a LayerNorm removes a constant added to every "
            "feature, so change the later tokens to *random* values (torch.randn_like), not x + 1",
        f"a layer whose only leak is position {T - 2} seeing position {T - 1} (the last two positions)":
            f"it misses a leak from position {T - 1} into position {T - 2}, the last pair: test every split point "
            f"t = 0 .. T - 2 (for t in range(T - 1), not one step fewer), and compare *all* outputs 0..t, not "
            f"only position 0",
        "a layer whose only leak is position 2 seeing position 4":
            "it misses a leak from position 4 into position 2: for every t, change *all* inputs after t (not only "
            "position t + 1) and compare *all* outputs 0..t (not only position t or position 0)",
        "a layer whose only leak is position 0 seeing position 1":
            "it misses a leak from position 1 to position 0 only: changing the last token is not enough, test "
            "every position t (change everything after t, compare the outputs up to t)",
        "a layer with a small leak (outputs change by about 1e-3)":
            "it misses a small leak (outputs change by about 1e-3): compare with a tight tolerance, e.g. "
            "torch.allclose(a, b, atol=1e-6), or exactly with torch.equal",
    }
    return diagnoses[description]


@exercise(reference=leaks_future)
def check_leaks_future(fn):
    g = torch.Generator().manual_seed(5)
    B, T, D = 2, 6, 10
    x = torch.randn(B, T, D, generator=g)
    cases = _leak_cases(T, D)
    with torch.no_grad():
        for description, f, leaks in cases:
            got = call(fn, f, x, case=description)
            if (isinstance(got, torch.Tensor) and got.numel() == 1 and got.dtype == torch.bool) \
                    or type(got).__name__ == "bool_":                    # a 0-d bool tensor or numpy.bool_
                got = bool(got)
            if not isinstance(got, bool):
                fail(f"it should return True (the function leaks) or False (it does not), got {got!r} for "
                     f"{description}")
            if got != leaks:
                fail(f"for {description} it returned {got}: {_leak_diagnosis(description, T)}")
    return len(cases)
