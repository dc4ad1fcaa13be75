"""Checks for lesson 07's exercises: assemble encode/decode, count the parameters by formula."""
from __future__ import annotations

import contextlib

import torch

from ..masks import causal_mask, padding_mask
from ..transformer import Transformer, TransformerConfig, count_transformer_parameters, decode_target, encode_source
from ._core import as_whole_number, call, close, diagnose, exercise, expect_close, expect_tensor, fail
from ._watch import compare_calls, forbid_calling, watch_modules

__all__ = ["check_encode_source", "check_decode_target", "check_count_transformer_parameters"]


# --------------------------------------------------------------------------- encode / decode
@contextlib.contextmanager
def _assembled_from_parts(model: Transformer, method: str, parts: str):
    """Fail if the learner calls ``model.<method>`` (or ``model(...)``) instead of assembling it."""
    message = f"it calls model.{{}}(...) itself, which is the library's answer: assemble it from {parts}"
    with forbid_calling(model, method, message.format(method)), forbid_calling(model, "forward", message.format("forward")):
        yield


def _models():
    """Small models in eval mode: shared and separate embeddings, sinusoidal and learned positions."""
    with torch.random.fork_rng():
        torch.manual_seed(7)
        a = Transformer(TransformerConfig(src_vocab_size=11, tgt_vocab_size=11, d_model=12, num_heads=3, num_layers=2,
                                          d_ff=20, dropout=0.0, max_len=16)).eval()
        b = Transformer(TransformerConfig(src_vocab_size=11, tgt_vocab_size=11, d_model=10, num_heads=2, num_layers=1,
                                          num_decoder_layers=2, d_ff=9, dropout=0.0, max_len=16, norm_first=True,
                                          positional="learned")).eval()
    return [("a post-LN model with sinusoidal positions", a), ("a pre-LN model with learned positions", b)]


def _ids(g, B, L, pad_from=None, vocab=11):
    ids = torch.randint(4, vocab, (B, L), generator=g)
    if pad_from is not None:
        ids[0, pad_from:] = 0
    return ids


def _compare_model_output(fn, model, args, *, reference, parts, expect, masks, case, guard):
    """Run ``fn(model, *args)``, compare with ``reference``; explain a difference by the first part of the
    model (``model.src_embed``...) that got a different input than in the reference."""
    __tracebackhide__ = True
    with watch_modules(model, parts) as expected_calls:
        expected = reference(model, *args)

    def explain(error):
        where = compare_calls(calls, expected_calls, "model", expect, masks, partial=True)
        return f"before the error, the first difference from the reference: {where}" if where else None

    with watch_modules(model, parts) as calls, guard:
        got = call(fn, model, *args, case=case, explain=explain)
    return got, expected, lambda: compare_calls(calls, expected_calls, "model", expect, masks)


def _expect_model_output(got, expected, what, mistakes, where) -> None:
    __tracebackhide__ = True
    expect_tensor(got, expected.shape, what)
    if close(got, expected, atol=1e-5):
        return
    found = diagnose(got, mistakes, atol=1e-5)
    if found:
        fail(f"{what} is wrong: {found}")
    why = where() or "every part gets the right input, so the last step (the stack's output) is wrong"
    expect_close(got, expected, what, hint=f"Where it goes wrong: {why}")


_ENCODE_EXPECT = {"src_embed": "the source ids src (B, S)", "src_pos": "model.src_embed(src), the scaled embeddings",
                  "encoder": "model.src_pos(model.src_embed(src)) and the source padding mask (or src_mask when given)"}


@exercise(reference=encode_source)
def check_encode_source(fn):
    g = torch.Generator().manual_seed(8)
    n = 0
    parts = ["src_embed", "src_pos", "encoder"]
    with torch.no_grad():
        for name, model in _models():
            src = _ids(g, 2, 7, pad_from=5)
            mask = padding_mask(src, 0)
            emb = model.src_embed(src)
            raw = model.src_embed.embedding(src)
            pos = model.src_pos
            enc = model.encoder
            mistakes = {
                "the positional encoding is missing: add it with model.src_pos(...) after the embedding":
                    enc(emb, mask),
                "the embeddings are not scaled by sqrt(d_model): use model.src_embed (it multiplies by sqrt(D)), "
                "not the raw nn.Embedding": enc(pos(raw), mask),
                "the embeddings are scaled by sqrt(d_model) twice: model.src_embed already multiplies by sqrt(D)":
                    enc(pos(emb * model.config.d_model ** 0.5), mask),
                "the padding mask is missing: without it every token attends to <pad>; build it with "
                "padding_mask(src, model.config.pad_id) when src_mask is None": enc(pos(emb), None),
            }
            if model.tgt_embed is not model.src_embed or model.tgt_pos is not model.src_pos:
                mistakes["it uses the target's embedding or positions: the source goes through model.src_embed "
                         "and model.src_pos"] = enc(model.tgt_pos(model.tgt_embed(src)), mask)
            case = f"{name}, src {tuple(src.shape)} with padding in row 0"
            got, expected, where = _compare_model_output(
                fn, model, (src,), reference=encode_source, parts=parts, expect=_ENCODE_EXPECT,
                masks={"the source padding mask": mask}, case=case,
                guard=_assembled_from_parts(model, "encode", "model.src_embed, model.src_pos and model.encoder"))
            _expect_model_output(got, expected, f"the memory for {case}", mistakes, where)
            # an explicit mask must be used as given
            custom = mask.clone()
            custom[..., 1] = False
            case = f"{name} with src_mask given (key 1 blocked as well)"
            got, expected, where = _compare_model_output(
                fn, model, (src, custom), reference=encode_source, parts=parts, expect=_ENCODE_EXPECT,
                masks={"the padding mask built from src, not the given src_mask": mask}, case=case,
                guard=_assembled_from_parts(model, "encode", "model.src_embed, model.src_pos and model.encoder"))
            _expect_model_output(got, expected, f"the memory for {case}", {
                "the src_mask argument is ignored: when it is given, pass it to the encoder as it is":
                    encode_source(model, src)}, where)
            n += 2
    return n


_DECODE_EXPECT = {"tgt_embed": "the target ids tgt (B, T)", "tgt_pos": "model.tgt_embed(tgt), the scaled embeddings",
                  "decoder": "model.tgt_pos(model.tgt_embed(tgt)), the memory, tgt_mask = causal_mask(T) & "
                             "padding_mask(tgt, pad_id) and memory_mask"}


@exercise(reference=decode_target)
def check_decode_target(fn):
    g = torch.Generator().manual_seed(9)
    n = 0
    with torch.no_grad():
        for name, model in _models():
            src, tgt = _ids(g, 2, 7, pad_from=5), _ids(g, 2, 5)
            tgt[0, 0] = 2                                              # <bos>
            tgt[1, 3:] = 0                                             # target padding
            memory_mask = padding_mask(src, 0)
            memory = model.encode(src, memory_mask)
            T = tgt.shape[1]
            causal, pad = causal_mask(T), padding_mask(tgt, 0)
            x = model.tgt_pos(model.tgt_embed(tgt))
            dec = lambda x, m=causal & pad, mm=memory_mask: model.decoder(x, memory, m, mm)
            mistakes = {
                "the causal mask is missing: position t must not see later target tokens, "
                "tgt_mask = causal_mask(T) & padding_mask(tgt, pad_id)": dec(x, pad),
                "the target padding mask is missing: tgt_mask = causal_mask(T) & padding_mask(tgt, pad_id)": dec(x, causal),
                "memory_mask is not passed to the decoder: cross-attention must not look at padded source tokens":
                    dec(x, mm=None),
                "the positional encoding is missing: add it with model.tgt_pos(...)": dec(model.tgt_embed(tgt)),
                "the embeddings are not scaled by sqrt(d_model): use model.tgt_embed, not the raw nn.Embedding":
                    dec(model.tgt_pos(model.tgt_embed.embedding(tgt))),
                "the embeddings are scaled by sqrt(d_model) twice: model.tgt_embed already multiplies by sqrt(D)":
                    dec(model.tgt_pos(model.tgt_embed(tgt) * model.config.d_model ** 0.5)),
            }
            if model.tgt_pos is not model.src_pos:
                mistakes["it uses the source's positions: the target goes through model.tgt_pos"] = \
                    dec(model.src_pos(model.tgt_embed(tgt)))
            case = f"{name}, tgt {tuple(tgt.shape)} (padding in row 1) and memory {tuple(memory.shape)}"
            got, expected, where = _compare_model_output(
                fn, model, (tgt, memory, memory_mask), reference=decode_target, parts=["tgt_embed", "tgt_pos", "decoder"],
                expect=_DECODE_EXPECT, masks={"memory_mask": memory_mask, "the causal mask alone": causal,
                                              "the padding mask alone": pad},
                case=case, guard=_assembled_from_parts(model, "decode", "the masks, model.tgt_embed, model.tgt_pos and model.decoder"))
            V = model.config.tgt_vocab_size
            if isinstance(got, torch.Tensor) and tuple(got.shape) == (tgt.shape[0], T, V) and V != model.config.d_model:
                fail("it returns logits (B, T, V): decode_target returns the decoder states (B, T, D); "
                     "the generator is applied afterwards, in forward")
            _expect_model_output(got, expected, f"the decoder states for {case}", mistakes, where)
            n += 1
    return n


# --------------------------------------------------------------------------- parameter count
def _count_variants(c: TransformerConfig) -> dict[str, int]:
    """What typical wrong formulas give for ``c`` (some equal the right count on some configs)."""
    D, F, V_t = c.d_model, c.d_ff, c.tgt_vocab_size
    N_e, N_d = c.encoder_layers, c.decoder_layers
    right = count_transformer_parameters(c)
    final_norms = 2 * 2 * D if c.norm_first else 0
    linear_biases = N_e * (4 * D + F + D) + N_d * (2 * 4 * D + F + D)
    ffn_biases = (N_e + N_d) * (F + D)
    norms = N_e * 2 * 2 * D + N_d * 3 * 2 * D + final_norms
    matrix = V_t * D
    variants = {
        "it forgets the biases of the linear layers (each nn.Linear(n_in, n_out) has n_in * n_out + n_out parameters)":
            right - linear_biases - V_t,
        "it forgets the feed-forward network's biases b_1 (d_ff) and b_2 (d_model) in every layer":
            right - ffn_biases,
        "it forgets the attention projections' biases (each of w_q, w_k, w_v, w_o has d_model of them)":
            right - N_e * 4 * D - N_d * 8 * D,
        "it forgets the generator's bias: tying shares its (V, D) matrix, but its V biases are its own":
            right - V_t,
        "it forgets the LayerNorms: each has gamma and beta, 2 * d_model parameters": right - norms,
        "it counts one vector per LayerNorm: each has both gamma and beta, 2 * d_model": right - norms // 2,
        "it forgets the decoder's cross-attention: a decoder layer has two attention blocks":
            right - N_d * 4 * (D * D + D),
        "it counts the sinusoidal positional table: it is a fixed buffer, not a parameter":
            right + (c.max_len * D if c.positional == "sinusoidal" else 0),
        "it counts the tied generator matrix as well: with tie_weights the generator reuses the target "
        "embedding, count that (V, D) matrix once": right + (matrix if c.tie_weights else 0),
        "it counts the shared embedding twice: with share_embeddings source and target use one table":
            right + (matrix if c.share_embeddings else 0),
        "it counts the one (V, D) matrix more than once: with share_embeddings and tie_weights the source "
        "embedding, the target embedding and the generator all use the same matrix":
            right + (matrix if c.share_embeddings and c.tie_weights else 0),
        "it counts the one (V, D) matrix three times: source embedding, target embedding and generator share "
        "it, count it once": right + (2 * matrix if c.share_embeddings and c.tie_weights else 0),
        "it forgets the final LayerNorm of each pre-LN stack (2 * 2 * d_model)": right - final_norms,
        "it forgets the learned positions: one (max_len, d_model) table per side":
            right - (2 * c.max_len * D if c.positional == "learned" else 0),
        "it uses num_layers for both stacks: count config.encoder_layers encoder layers and "
        "config.decoder_layers decoder layers": count_transformer_parameters(
            c.replace(num_encoder_layers=None, num_decoder_layers=None)),
    }
    return variants


def _count_configs() -> list[tuple[str, TransformerConfig]]:
    base = TransformerConfig.base()
    small = dict(src_vocab_size=23, tgt_vocab_size=23, d_model=12, num_heads=3, num_layers=2, d_ff=20, max_len=17)
    return [
        ("the paper's base model (37 000 shared, tied tokens)", base),
        ("a small model with separate, untied vocabularies of 23 and 29", TransformerConfig(
            **{**small, "tgt_vocab_size": 29}, tie_weights=False)),
        ("a small model with separate vocabularies, generator tied to the target embedding",
         TransformerConfig(**{**small, "tgt_vocab_size": 29})),
        ("a small pre-LN model with one shared vocabulary and learned positions",
         TransformerConfig(**small, share_embeddings=True, norm_first=True, positional="learned")),
        ("a small model with 1 encoder and 3 decoder layers",
         TransformerConfig(**small, num_encoder_layers=1, num_decoder_layers=3)),
    ]


@exercise(reference=count_transformer_parameters)
def check_count_transformer_parameters(fn):
    """Runs every config first, then names the one typical mistake that explains *every* count (so
    that two mistakes giving the same number on one config, e.g. the base model's FFN biases and
    LayerNorms, 30,720 each, are told apart by the others)."""
    configs = _count_configs()
    counts = [as_whole_number(call(fn, c, case=name), f"the count for {name}") for name, c in configs]
    wrong = [(name, c, got) for (name, c), got in zip(configs, counts) if got != count_transformer_parameters(c)]
    if not wrong:
        return len(configs)
    name, c, got = wrong[0]
    right = count_transformer_parameters(c)
    variants = [_count_variants(c) for _, c in configs]
    for words in variants[0]:
        if all(got_c == v[words] for got_c, v in zip(counts, variants)):
            fail(f"the count for {name} is {got:,}, expected {right:,}: {words}")
    here = [words for words, value in _count_variants(c).items() if value == got]
    if len(here) == 1:
        fail(f"the count for {name} is {got:,}, expected {right:,}: {here[0]}")
    if here:
        fail(f"the count for {name} is {got:,}, expected {right:,}, which is what each of these mistakes gives: "
             + "; or ".join(here))
    fail(f"the count for {name} is {got:,}, expected {right:,} (off by {got - right:+,}). Add up: embeddings, "
         f"encoder layers (attention + FFN + 2 LayerNorms), decoder layers (2 attentions + FFN + 3 LayerNorms), "
         f"final norms (pre-LN only) and the generator.")
