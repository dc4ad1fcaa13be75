"""Lesson 11: a decoder-only (GPT-style) language model built from the lesson-06 decoder.

Legend: B batch, T sequence length, t tokens already in the cache, D = d_model, H heads,
d_k = D / H, V vocabulary size.

    ids (B, T) -> token embedding + learned positions -> N decoder blocks without cross-attention
               -> final LayerNorm -> logits (B, T, V)  (the output matrix is the token embedding)

It is the decoder of lesson 06 with the cross-attention sub-layer removed: there is no encoder
to attend to. The causal mask lets position ``i`` see positions ``0..i`` only, so one forward
pass over a text yields a next-token prediction at every position at once:

    loss = mean_i  -log p(x_{i+1} | x_0 .. x_i)        (the autoregressive objective)

Generation appends one token at a time. With a :mod:`~transformer_lib.kv_cache` each step feeds
only the newest token; the keys and values of earlier tokens come from the cache.

Masks are boolean, **True = may attend**.

:class:`Block` and :class:`MiniGPT` are lesson 11's exercise: the same model written out as plain
``nn.Module`` classes with nanoGPT's names; :func:`mini_gpt_state_dict` maps a :class:`GPT`'s
weights onto them, so both compute the same logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .decoder import Decoder, DecoderLayer
from .feed_forward import FeedForward
from ._deprecated import RenamedAttributes, moved
from .config import ModelConfig
from .kv_cache import DecoderCache, new_cache
from .masks import causal_mask
from .multi_head_attention import MultiHeadAttention
from .positional import LearnedPositionalEmbedding
from .sampling import sample_next
from .utils import count_parameters
from .validation import check_flag, check_int, check_tensor, out_of_range_targets

__all__ = ["GPTConfig", "GPT", "causal_lm_loss", "Block", "MiniGPT", "block_state_dict", "mini_gpt_state_dict"]


@dataclass(frozen=True)
class GPTConfig(ModelConfig):
    """Hyper-parameters of a :class:`GPT`, checked on construction.

    The defaults are GPT-2 small's (without its vocabulary): pre-LN blocks, tanh-GELU,
    learned positions, the output layer tied to the token embedding.
    """

    vocab_size: int
    d_model: int = 768
    num_heads: int = 12
    num_layers: int = 12
    d_ff: int = 3072
    max_len: int = 1024
    dropout: float = 0.1
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-5
    norm_first: bool = True
    tie_weights: bool = True

    POSITIVE: ClassVar[tuple[str, ...]] = ("vocab_size", "num_layers", "max_len")
    FLAGS: ClassVar[tuple[str, ...]] = ("norm_first", "tie_weights")

    @classmethod
    def gpt2_small(cls, vocab_size: int = 50257) -> "GPTConfig":
        """GPT-2 small: 12 layers, D = 768, 12 heads, 1024 positions (124 M parameters)."""
        return cls(vocab_size=vocab_size)

    base = gpt2_small

    @classmethod
    def tiny(cls, vocab_size: int, **changes) -> "GPTConfig":
        """A GPT small enough to train on a laptop CPU in a minute."""
        fields = dict(vocab_size=vocab_size, d_model=64, num_heads=4, num_layers=2, d_ff=256,
                      max_len=128, dropout=0.0)
        fields.update(changes)
        return cls(**fields)


class GPT(RenamedAttributes, nn.Module):
    """A decoder-only Transformer language model.

    Args:
        config: a :class:`GPTConfig`.

    Shape:
        ``forward(ids (B, T), cache=None)`` -> logits ``(B, T, V)``: row ``i`` scores the token
        that follows ``ids[:, i]``. With a ``cache`` (:meth:`new_cache`), ``ids`` holds only
        the new tokens; their positions continue after the cached ones.

    Its parts have the Transformer's names: ``embed`` (token embedding), ``pos`` (learned
    positions), ``decoder`` and ``generator`` (the output layer, tied to ``embed``).

    There is no padding mask: batches are equal-length windows of text, or right-padded
    sequences whose padding no real token can see (it comes after them).
    """

    RENAMED = {"token_embedding": "embed", "position": "pos", "lm_head": "generator"}

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = LearnedPositionalEmbedding(c.d_model, c.max_len, c.dropout)
        self.decoder = Decoder(c.num_layers, c.layer, cross_attention=False)
        self.generator = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self._init_weights()
        if c.tie_weights:
            self.generator.weight = self.embed.weight                  # one (V, D) matrix, two uses

    def _init_weights(self) -> None:
        """GPT-2's initialisation: N(0, 0.02) weights, zero biases, and the projections that
        write into the residual stream (w_o, linear2) scaled by 1/sqrt(2 N)."""
        for name, p in self.named_parameters():
            if p.dim() > 1:
                std = 0.02 / math.sqrt(2 * self.config.num_layers) if name.endswith(("w_o.weight", "linear2.weight")) else 0.02
                nn.init.normal_(p, mean=0.0, std=std)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)

    def new_cache(self) -> DecoderCache:
        """An empty key/value cache (self-attention only) for incremental decoding."""
        return new_cache(self)

    def forward(self, ids: torch.Tensor, cache: DecoderCache | None = None) -> torch.Tensor:
        check_tensor("ids", ids, ndim=2, floating=False)
        past = 0 if cache is None else len(cache)
        T = ids.shape[1]
        if past + T > self.config.max_len:
            raise ValueError(f"{past} cached + {T} new tokens is longer than max_len={self.config.max_len}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must be in [0, {self.config.vocab_size}), "
                             f"got values from {int(ids.min())} to {int(ids.max())}")
        mask = causal_mask(T, past, ids.device)                                     # (T, past + T)
        x = self.pos(self.embed(ids), offset=past)                                  # (B, T) -> (B, T, D)
        return self.generator(self.decoder(x, None, tgt_mask=mask, cache=cache))    # (B, T, D) -> (B, T, V)

    @torch.no_grad()
    def generate(self, ids: torch.Tensor, max_new_tokens: int, *, use_cache: bool = True,
                 temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, return_logits: bool = False):
        """Continue every prompt in ``ids`` by ``max_new_tokens`` tokens.

        Args:
            ids: prompts ``(B, T0)``, ``T0 >= 1``.
            max_new_tokens: how many tokens to append; ``T0 + max_new_tokens <= max_len``.
            use_cache: feed only the newest token each step and keep earlier keys/values in a
                cache (``True``), or re-run the whole sequence every step (``False``). Both give
                the same tokens and logits.
            temperature, top_k, top_p, generator: how to pick each token (see
                :func:`~transformer_lib.sampling.sample_next`); ``temperature=0`` is greedy.
            return_logits: also return the logits each new token was drawn from.

        Returns:
            ids ``(B, T0 + max_new_tokens)``, and with ``return_logits`` the logits
            ``(B, max_new_tokens, V)``.
        """
        check_tensor("ids", ids, ndim=2, floating=False)
        if ids.shape[1] < 1:
            raise ValueError("generate needs a prompt of at least one token per row")
        check_int("max_new_tokens", max_new_tokens, minimum=0)
        check_flag("use_cache", use_cache)
        check_flag("return_logits", return_logits)
        if ids.shape[1] + max_new_tokens > self.config.max_len:
            raise ValueError(f"prompt length {ids.shape[1]} + max_new_tokens {max_new_tokens} "
                             f"exceeds max_len={self.config.max_len}")
        was_training = self.training
        self.eval()
        cache = self.new_cache() if use_cache else None
        out, all_logits = ids, []
        step_input = ids                                    # with a cache: first the prompt, then one token
        for _ in range(max_new_tokens):
            logits = self(step_input if use_cache else out, cache=cache)[:, -1]      # (B, V)
            next_id = sample_next(logits, temperature, top_k, top_p, generator)      # (B,)
            out = torch.cat([out, next_id[:, None]], dim=1)                          # (B, T) -> (B, T + 1)
            step_input = next_id[:, None]                                            # (B, 1)
            all_logits.append(logits)
        self.train(was_training)
        if return_logits:
            V = self.config.vocab_size
            stacked = torch.stack(all_logits, dim=1) if all_logits else ids.new_zeros((ids.shape[0], 0, V), dtype=torch.float)
            return out, stacked                                                      # (B, n, V)
        return out

    def attention_weights(self) -> list[torch.Tensor | None]:
        """The last self-attention weights ``(B, H, T, S)`` of every block (``None`` where fused)."""
        return self.decoder.attention_weights()["self"]

    def num_parameters(self) -> int:
        """Number of parameters, the tied embedding counted once."""
        return count_parameters(self)

    def extra_repr(self) -> str:
        c = self.config
        return (f"d_model={c.d_model}, num_heads={c.num_heads}, num_layers={c.num_layers}, d_ff={c.d_ff}, "
                f"max_len={c.max_len}, parameters={self.num_parameters():,}")


def causal_lm_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The autoregressive loss: position ``i`` predicts token ``i + 1``.

    Args:
        logits: ``(B, T, V)``, the model's output for ``ids``.
        ids: ``(B, T)`` the input tokens.

    Returns:
        the mean cross-entropy over the ``B * (T - 1)`` predictions that have a next token.
    """
    check_tensor("logits", logits, ndim=3, floating=True)
    check_tensor("ids", ids, ndim=2, floating=False)
    if logits.shape[:2] != ids.shape:
        raise ValueError(f"logits (B, T, V) and ids (B, T) must agree, got logits {tuple(logits.shape)} and "
                         f"ids {tuple(ids.shape)}: pass the logits the model gave for these ids")
    V = logits.shape[-1]
    pred = logits[:, :-1].reshape(-1, V)          # (B, T-1, V) -> (B*(T-1), V): positions 0..T-2
    target = ids[:, 1:].reshape(-1).long()               # (B, T-1) -> (B*(T-1),): the tokens 1..T-1
    try:
        return F.cross_entropy(pred, target)
    except IndexError as e:
        raise out_of_range_targets(e, "ids", V) from None


# ---- the same model written out (lesson 11's exercise) ------------------------------------------

class Block(nn.Module):
    """One GPT block as its own module, pre-LN, with nanoGPT's names:

        x = x + attn(ln1(x))      (causal self-attention)
        x = x + mlp(ln2(x))       (feed-forward, tanh-GELU)

    The computation of ``DecoderLayer(d_model, num_heads, d_ff, norm_first=True,
    activation="gelu_tanh", cross_attention=False)`` without dropout, whose ``norm1``,
    ``self_attn``, ``norm3`` and ``feed_forward`` are called ``ln1``, ``attn``, ``ln2`` and ``mlp``
    here (:func:`block_state_dict`).

    Args:
        d_model, num_heads, d_ff: as for :class:`DecoderLayer`.

    Shape:
        x ``(B, T, D)`` -> ``(B, T, D)``; position ``i`` sees positions ``0..i`` only.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = FeedForward(d_model, d_ff, activation="gelu_tanh")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)                                                            # (B, T, D)
        x = x + self.attn(h, h, h, mask=causal_mask(x.shape[1], 0, x.device))[0]   # (B, T, D)
        return x + self.mlp(self.ln2(x))                                           # (B, T, D)


class MiniGPT(nn.Module):
    """A GPT assembled from :class:`Block` s: token embedding + learned positions, the blocks,
    a final LayerNorm, and an output layer tied to the embedding.

    Args:
        config: a :class:`GPTConfig` (its ``dropout``, ``activation`` and ``norm_first`` are not
            used: no dropout, tanh-GELU, pre-LN).
        block: the block class, called as ``block(d_model, num_heads, d_ff)``.

    Shape:
        ids ``(B, T)`` -> logits ``(B, T, V)``.
    """

    def __init__(self, config: GPTConfig, block: type = Block):
        super().__init__()
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = LearnedPositionalEmbedding(c.d_model, c.max_len)
        self.blocks = nn.ModuleList(block(c.d_model, c.num_heads, c.d_ff) for _ in range(c.num_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.head.weight = self.embed.weight                                      # tied, as in GPT-2

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.pos(self.embed(ids))                                              # (B, T) -> (B, T, D)
        for block in self.blocks:
            x = block(x)                                                           # (B, T, D)
        return self.head(self.ln_f(x))                                             # (B, T, D) -> (B, T, V)


#: DecoderLayer's names -> Block's
BLOCK_NAMES = {"norm1": "ln1", "self_attn": "attn", "norm3": "ln2", "feed_forward": "mlp"}


def block_state_dict(layer: DecoderLayer) -> dict[str, torch.Tensor]:
    """A pre-LN ``DecoderLayer`` without cross-attention's weights under :class:`Block`'s names."""
    if not isinstance(layer, DecoderLayer) or layer.cross_attn is not None or not layer.norm_first:
        raise TypeError(f"layer must be a pre-LN DecoderLayer without cross-attention (a GPT block), got {layer!r}")
    out = {}
    for key, value in layer.state_dict().items():
        first, rest = key.split(".", 1)
        out[f"{BLOCK_NAMES[first]}.{rest}"] = value
    return out


def mini_gpt_state_dict(gpt: GPT) -> dict[str, torch.Tensor]:
    """A :class:`GPT`'s weights under :class:`MiniGPT`'s names (``model.load_state_dict(...)``)."""
    if not isinstance(gpt, GPT):
        raise TypeError(f"gpt must be a GPT, got {type(gpt).__name__}")
    out = {"embed.weight": gpt.embed.weight, "pos.embedding.weight": gpt.pos.embedding.weight,
           "ln_f.weight": gpt.decoder.norm.weight, "ln_f.bias": gpt.decoder.norm.bias,
           "head.weight": gpt.generator.weight}
    for i, layer in enumerate(gpt.decoder.layers):
        out.update({f"blocks.{i}.{k}": v for k, v in block_state_dict(layer).items()})
    return {k: v.detach() for k, v in out.items()}


__getattr__ = moved(__name__, {"causal_self_mask": "transformer_lib.masks:causal_mask",
                               "kv_cache_step": "transformer_lib.kv_cache:kv_cache_step"})
