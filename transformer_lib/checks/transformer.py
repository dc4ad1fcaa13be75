"""Checks for lesson 07's exercises: assemble encode/decode, count the parameters by formula."""
from __future__ import annotations

import contextlib

import torch

from ..masks import causal_mask, padding_mask
from ..transformer import Transformer, TransformerConfig, count_transformer_parameters
from ._core import call, exercise, expect_close, expect_tensor, fail

__all__ = ["check_encode_source", "check_decode_target", "check_count_transformer_parameters"]


# --------------------------------------------------------------------------- encode / decode
def encode_source(model: Transformer, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Source ids ``(B, S)`` -> memory ``(B, S, D)``: embed (x sqrt(D)), add positions, run the encoder.
    ``src_mask`` defaults to the source padding mask (True = may attend)."""
    if src_mask is None:
        src_mask = padding_mask(src, model.config.pad_id)              # (B, S) -> (B, 1, 1, S)
    x = model.src_pos(model.src_embed(src))                             # (B, S) -> (B, S, D)
    return model.encoder(x, src_mask)                                   # (B, S, D)


def decode_target(model: Transformer, tgt: torch.Tensor, memory: torch.Tensor,
                  memory_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder input ids ``(B, T)`` and memory ``(B, S, D)`` -> decoder states ``(B, T, D)``, with the
    causal & target-padding mask built here and ``memory_mask`` (the source padding) passed on."""
    T = tgt.shape[1]
    tgt_mask = causal_mask(T, device=tgt.device) & padding_mask(tgt, model.config.pad_id)  # (T, T) & (B, 1, 1, T) -> (B, 1, T, T)
    x = model.tgt_pos(model.tgt_embed(tgt))                                               # (B, T) -> (B, T, D)
    return model.decoder(x, memory, tgt_mask, memory_mask)                                # (B, T, D)


@contextlib.contextmanager
def _forbid_method(model: Transformer, method: str, parts: str):
    """Fail if the learner calls ``model.<method>`` instead of assembling it from its parts."""
    called = []
    original = getattr(model, method)

    def spy(*args, **kwargs):
        called.append(True)
        return original(*args, **kwargs)

    setattr(model, method, spy)                      # an instance attribute hides the method
    try:
        yield
    finally:
        delattr(model, method)
    if called:
        fail(f"it calls model.{method}(...) itself: assemble it from {parts}")


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


@exercise(reference=encode_source)
def check_encode_source(fn):
    g = torch.Generator().manual_seed(8)
    n = 0
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
                "the padding mask is missing: without it every token attends to <pad>; build it with "
                "padding_mask(src, model.config.pad_id) when src_mask is None": enc(pos(emb), None),
            }
            if model.tgt_embed is not model.src_embed or model.tgt_pos is not model.src_pos:
                mistakes["it uses the target's embedding or positions: the source goes through model.src_embed "
                         "and model.src_pos"] = enc(model.tgt_pos(model.tgt_embed(src)), mask)
            case = f"{name}, src {tuple(src.shape)} with padding"
            with _forbid_method(model, "encode", "model.src_embed, model.src_pos and model.encoder"):
                got = call(fn, model, src.clone(), case=case)
            expect_close(got, encode_source(model, src), f"the memory for {case}", mistakes=mistakes, atol=1e-5)
            # an explicit mask must be used as given
            custom = mask.clone()
            custom[..., 1] = False
            case = f"{name} with src_mask given"
            got = call(fn, model, src.clone(), custom, case=case)
            expect_close(got, encode_source(model, src, custom), f"the memory for {case}", mistakes={
                "the src_mask argument is ignored: when it is given, pass it to the encoder as it is":
                    encode_source(model, src)}, atol=1e-5)
            n += 2
    return n


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
            }
            if model.tgt_pos is not model.src_pos:
                mistakes["it uses the source's positions: the target goes through model.tgt_pos"] = \
                    dec(model.src_pos(model.tgt_embed(tgt)))
            case = f"{name}, tgt {tuple(tgt.shape)} and memory {tuple(memory.shape)} with padding"
            with _forbid_method(model, "decode", "the masks, model.tgt_embed, model.tgt_pos and model.decoder"):
                got = call(fn, model, tgt.clone(), memory.clone(), memory_mask, case=case)
            V = model.config.tgt_vocab_size
            if isinstance(got, torch.Tensor) and tuple(got.shape) == (tgt.shape[0], T, V) and V != model.config.d_model:
                fail("it returns logits (B, T, V): decode_target returns the decoder states (B, T, D); "
                     "the generator is applied afterwards, in forward")
            expect_tensor(got, (tgt.shape[0], T, model.config.d_model), f"the decoder states for {case}")
            expect_close(got, decode_target(model, tgt, memory, memory_mask), f"the decoder states for {case}",
                         mistakes=mistakes, atol=1e-5)
            n += 1
    return n


# --------------------------------------------------------------------------- parameter count
def _count_variants(c: TransformerConfig) -> dict[str, int]:
    """What typical wrong formulas give for ``c``."""
    D, F, V_t = c.d_model, c.d_ff, c.tgt_vocab_size
    N_e, N_d = c.encoder_layers, c.decoder_layers
    right = count_transformer_parameters(c)
    final_norms = 2 * 2 * D if c.norm_first else 0
    linear_biases = N_e * (4 * D + F + D) + N_d * (2 * 4 * D + F + D)
    norms = N_e * 2 * 2 * D + N_d * 3 * 2 * D + final_norms
    variants = {
        "it forgets the biases of the linear layers (each nn.Linear(n_in, n_out) has n_in * n_out + n_out parameters)":
            right - linear_biases - V_t,
        "it forgets the generator's bias: tying shares its (V, D) matrix, but its V biases are its own":
            right - V_t,
        "it forgets the LayerNorms: each has gamma and beta, 2 * d_model parameters": right - norms,
        "it counts one vector per LayerNorm: each has both gamma and beta, 2 * d_model": right - norms // 2,
        "it forgets the decoder's cross-attention: a decoder layer has two attention blocks":
            right - N_d * 4 * (D * D + D),
        "it counts the sinusoidal positional table: it is a fixed buffer, not a parameter":
            right + (c.max_len * D if c.positional == "sinusoidal" else 0),
    }
    matrix = V_t * D
    if c.share_embeddings and c.tie_weights:
        variants["it counts the one (V, D) matrix more than once: with share_embeddings and tie_weights the "
                 "source embedding, the target embedding and the generator all use the same matrix"] = right + matrix
        variants["it counts the one (V, D) matrix three times: source embedding, target embedding and generator "
                 "share it, count it once"] = right + 2 * matrix
    elif c.tie_weights:
        variants["it counts the tied generator matrix as well: with tie_weights the generator reuses the target "
                 "embedding, count that (V, D) matrix once"] = right + matrix
    elif c.share_embeddings:
        variants["it counts the shared embedding twice: with share_embeddings source and target use one table"] = \
            right + matrix
    if c.norm_first:
        variants["it forgets the final LayerNorm of each pre-LN stack (2 * 2 * d_model)"] = right - final_norms
    if c.positional == "learned":
        variants["it forgets the learned positions: one (max_len, d_model) table per side"] = right - 2 * c.max_len * D
    if c.num_encoder_layers is not None or c.num_decoder_layers is not None:
        variants["it uses num_layers for both stacks: count config.encoder_layers encoder layers and "
                 "config.decoder_layers decoder layers"] = count_transformer_parameters(
            c.replace(num_encoder_layers=None, num_decoder_layers=None))
    return {k: v for k, v in variants.items() if v != right}


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
    configs = _count_configs()
    for name, c in configs:
        got = call(fn, c, case=name)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if isinstance(got, bool) or not isinstance(got, int):
            fail(f"it should return an int, got {got!r} for {name}")
        right = count_transformer_parameters(c)
        if got == right:
            continue
        for words, wrong in _count_variants(c).items():
            if got == wrong:
                fail(f"the count for {name} is {got:,}, expected {right:,}: {words}")
        fail(f"the count for {name} is {got:,}, expected {right:,} (off by {got - right:+,}). Add up: embeddings, "
             f"encoder layers (attention + FFN + 2 LayerNorms), decoder layers (2 attentions + FFN + 3 LayerNorms), "
             f"final norms (pre-LN only) and the generator.")
    return len(configs)
