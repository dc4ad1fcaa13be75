"""Lesson 09: the model Transformers replaced, a GRU encoder-decoder with additive attention.

Legend: B batch, S source length, T target length, E embedding size, D decoder state size,
A attention size, V vocabulary size.

Bahdanau, Cho and Bengio (2015), "Neural machine translation by jointly learning to align and
translate", with GRUs (Cho et al., 2014):

* the **encoder** is a bidirectional GRU: ``memory[s]`` is the forward and backward state at
  source position ``s``, ``(B, S, D)`` (``D / 2`` per direction);
* the **decoder** is one GRU cell, run one target position at a time. At step ``t`` it
  attends from its previous state to the memory with **additive attention**,

      e[t, s] = v_a · tanh(W_q state[t-1] + W_k memory[s]),    alpha = softmax_s(e),
      context[t] = sum_s alpha[t, s] memory[s],

  then updates ``state[t] = GRU([embed(y[t-1]); context[t]], state[t-1])`` and predicts
  ``y[t]`` from ``tanh(W_o [state[t]; context[t]; embed(y[t-1])])`` with the generator.

The model has the interface of :class:`~transformer_lib.transformer.Transformer` that training
and decoding use (``forward``, ``encode``, ``decode`` with a cache, ``generator``,
``new_cache``, ``config.pad_id``), so :func:`~transformer_lib.training.train`,
:func:`~transformer_lib.decoding.greedy_decode` and :func:`~transformer_lib.decoding.beam_search`
work unchanged. Its "cache" is the decoder state: an RNN carries its whole past in one vector.
Masks are boolean, **True = may attend**.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from .attention import check_attention_inputs
from .utils import count_parameters
from .validation import check_tensor

__all__ = ["additive_attention", "GRUConfig", "GRUState", "GRUTranslator"]


def additive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, v_a: torch.Tensor,
                       mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive (Bahdanau) attention: ``softmax_s(v_a · tanh(q_t + k_s))`` and the weighted values.

    Args:
        q: projected queries ``(..., T, A)`` (``W_q`` times the decoder states).
        k: projected keys ``(..., S, A)`` (``W_k`` times the encoder memory).
        v: values ``(..., S, d_v)`` (the memory itself).
        v_a: the score vector ``(A,)``.
        mask: optional bool tensor broadcastable to ``(..., T, S)``; **True = may attend**.
            A query whose keys are all masked gets zero weights and a zero context, never NaN.

    Returns:
        ``(context (..., T, d_v), weights (..., T, S))``; each row of ``weights`` sums to 1 over
        the keys (0 for a fully masked row). Unlike dot-product attention there is no scaling:
        the score is a small neural network of ``q`` and ``k``, not a dot product.
    """
    check_attention_inputs(q, k, v, mask)
    check_tensor("v_a", v_a, ndim=1, floating=True)
    if v_a.shape[0] != q.shape[-1]:
        raise ValueError(f"v_a must have the attention size A={q.shape[-1]} of q and k, got shape {tuple(v_a.shape)}")
    hidden = torch.tanh(q[..., :, None, :] + k[..., None, :, :])       # (..., T, 1, A) + (..., 1, S, A) -> (..., T, S, A)
    scores = hidden @ v_a                                               # (..., T, S, A) @ (A,) -> (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)                             # (..., T, S), sums to 1 over the keys
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)                       # fully masked rows: uniform -> zero
    return weights @ v, weights                                         # (..., T, S) @ (..., S, d_v) -> (..., T, d_v)


@dataclass(frozen=True)
class GRUConfig:
    """Hyper-parameters of a :class:`GRUTranslator`, checked on construction.

    ``d_model`` is the decoder state size D (the encoder has ``D / 2`` per direction),
    ``d_embed`` the embedding size E, ``d_attention`` the attention size A.
    ``share_embeddings`` uses one embedding for both languages (one shared vocabulary);
    ``tie_weights`` makes the generator reuse the target embedding matrix.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 256
    d_embed: int = 128
    d_attention: int = 256
    dropout: float = 0.1
    share_embeddings: bool = False
    tie_weights: bool = True
    pad_id: int = 0

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "d_embed", "d_attention"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_model % 2:
            raise ValueError(f"d_model={self.d_model} must be even: the encoder has d_model / 2 per direction")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        for name in ("share_embeddings", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"share_embeddings needs one vocabulary, got src_vocab_size={self.src_vocab_size} "
                             f"and tgt_vocab_size={self.tgt_vocab_size}")
        if isinstance(self.pad_id, bool) or not isinstance(self.pad_id, int) or \
                not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"pad_id must be an id in both vocabularies, got {self.pad_id!r}")

    def replace(self, **changes) -> "GRUConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class GRUState:
    """The decoder's "cache" for incremental decoding: its state ``(B, D)`` and the projected
    keys ``(B, S, A)`` (computed from the memory once)."""

    def __init__(self):
        self.state: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (beam search reorders its hypotheses every step)."""
        if self.state is not None:
            self.state, self.keys = self.state.index_select(0, index), self.keys.index_select(0, index)


class GRUTranslator(nn.Module):
    """A bidirectional-GRU encoder and a GRU decoder with additive attention (Bahdanau et al., 2015).

    Args:
        config: a :class:`GRUConfig`.

    Shape:
        ``forward(src (B, S), tgt (B, T))`` -> logits ``(B, T, tgt_vocab_size)``; ``tgt`` is the
        decoder input (``<bos>`` + the target, teacher forcing).

    In eval mode the attention weights of the last ``decode`` call are kept in
    ``last_weights`` ``(B, T, S)`` for plotting.
    """

    def __init__(self, config: GRUConfig):
        super().__init__()
        if not isinstance(config, GRUConfig):
            raise TypeError(f"config must be a GRUConfig, got {type(config).__name__}")
        self.config = c = config
        D, E, A = c.d_model, c.d_embed, c.d_attention
        self.src_embed = nn.Embedding(c.src_vocab_size, E)
        self.tgt_embed = self.src_embed if c.share_embeddings else nn.Embedding(c.tgt_vocab_size, E)
        self.encoder = nn.GRU(E, D // 2, batch_first=True, bidirectional=True)
        self.init_state = nn.Linear(D, D)
        self.w_q = nn.Linear(D, A, bias=False)
        self.w_k = nn.Linear(D, A)
        self.v_a = nn.Parameter(torch.empty(A).uniform_(-A ** -0.5, A ** -0.5))
        self.cell = nn.GRUCell(E + D, D)
        self.w_o = nn.Linear(D + D + E, E)
        self.dropout = nn.Dropout(c.dropout)
        self.generator = nn.Linear(E, c.tgt_vocab_size)
        nn.init.normal_(self.src_embed.weight, std=E ** -0.5)
        if not c.share_embeddings:
            nn.init.normal_(self.tgt_embed.weight, std=E ** -0.5)
        if c.tie_weights:
            self.generator.weight = self.tgt_embed.weight                # one (V, E) matrix, two uses
        self.last_weights: torch.Tensor | None = None

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids ``(B, S)`` -> memory ``(B, S, D)``; padding positions are zero."""
        check_tensor("src", src, ndim=2, floating=False)
        lengths = (src != self.config.pad_id).sum(dim=1).clamp(min=1)
        x = self.dropout(self.src_embed(src))                                          # (B, S) -> (B, S, E)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        memory, _ = self.encoder(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(memory, batch_first=True, total_length=src.shape[1])
        return memory                                                                 # (B, S, D)

    def _start(self, memory: torch.Tensor, mask: torch.Tensor, cache: GRUState) -> None:
        """Fill ``cache`` with the first decoder state (from the mean of the memory over the real
        source tokens) and the projected keys."""
        keep = mask.transpose(1, 2).to(memory.dtype)                                   # (B, 1, S) -> (B, S, 1)
        mean = (memory * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)               # (B, D)
        cache.state = torch.tanh(self.init_state(mean))                                # (B, D)
        cache.keys = self.w_k(memory)                                                  # (B, S, D) -> (B, S, A)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
               memory_mask: torch.Tensor | None = None, cache: list[GRUState] | None = None) -> torch.Tensor:
        """Decoder inputs ``(B, T)`` -> output features ``(B, T, E)`` for the generator.

        ``memory_mask`` is the source padding mask (``(B, 1, 1, S)`` as made by
        :func:`~transformer_lib.masks.padding_mask`, or ``(B, 1, S)``). ``tgt_mask`` is not
        needed (an RNN cannot look ahead) and ignored. With a ``cache`` (see :meth:`new_cache`)
        the decoder goes on from the state the cache holds.
        """
        check_tensor("tgt", tgt, ndim=2, floating=False)
        B, S = memory.shape[0], memory.shape[1]
        if memory_mask is None:
            memory_mask = torch.ones(B, 1, S, dtype=torch.bool, device=memory.device)
        mask = memory_mask.reshape(B, 1, S)                                            # (B, 1, 1, S) -> (B, 1, S)
        state = cache[0] if cache else GRUState()
        if state.state is None:
            self._start(memory, mask, state)
        h, keys = state.state, state.keys
        embedded = self.dropout(self.tgt_embed(tgt))                                   # (B, T) -> (B, T, E)
        outputs, weights = [], []
        for t in range(tgt.shape[1]):                                                  # one position after the other
            context, alpha = additive_attention(self.w_q(h)[:, None], keys, memory, self.v_a, mask)  # (B, 1, D), (B, 1, S)
            context = context[:, 0]                                                    # (B, 1, D) -> (B, D)
            h = self.cell(torch.cat([embedded[:, t], context], dim=-1), h)             # (B, E + D) -> (B, D)
            features = torch.tanh(self.w_o(torch.cat([h, context, embedded[:, t]], dim=-1)))  # (B, E)
            outputs.append(self.dropout(features))
            weights.append(alpha[:, 0])
        state.state = h
        if not self.training:
            self.last_weights = torch.stack(weights, dim=1).detach()                   # T x (B, S) -> (B, T, S)
        return torch.stack(outputs, dim=1)                                             # T x (B, E) -> (B, T, E)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, V)`` for every position of the decoder input ``tgt``."""
        src_mask = (src != self.config.pad_id)[:, None, :]                             # (B, 1, S)
        memory = self.encode(src, src_mask)
        return self.generator(self.decode(tgt, memory, memory_mask=src_mask))           # (B, T, E) -> (B, T, V)

    def new_cache(self) -> list[GRUState]:
        """An empty decoder state for incremental decoding with :meth:`decode`."""
        return [GRUState()]

    def num_parameters(self) -> int:
        """Number of parameters, tied matrices counted once."""
        return count_parameters(self)
