"""Lesson 07: the full encoder-decoder Transformer.

Legend: B batch, S source length, T target length, D = d_model, V vocabulary size.

    src ids (B, S) -> embed * sqrt(D) + positions -> Encoder -> memory (B, S, D)
    tgt ids (B, T) -> embed * sqrt(D) + positions -> Decoder(memory) -> (B, T, D) -> generator -> logits (B, T, V)

Masks are boolean, **True = may attend**. ``forward`` builds them itself from ``pad_id``:
source padding for the encoder and for cross-attention, causal & target padding for the
decoder's self-attention.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .decoder import Decoder
from .embeddings import TokenEmbedding
from .encoder import Encoder
from .config import ModelConfig
from .masks import decoder_self_mask, padding_mask
from .positional import LearnedPositionalEmbedding, PositionalEncoding
from .utils import count_parameters
from .validation import check_hidden, check_tensor, is_int

POSITIONALS = ("sinusoidal", "learned")


@dataclass(frozen=True)
class TransformerConfig(ModelConfig):
    """Every hyper-parameter of a :class:`Transformer`, checked on construction.

    ``num_layers`` sets both stacks; ``num_encoder_layers`` / ``num_decoder_layers`` override
    one of them. ``tie_weights`` makes the generator reuse the target embedding matrix;
    ``share_embeddings`` makes source and target use one embedding (one shared vocabulary,
    as in the paper).
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    num_heads: int = 8
    num_layers: int = 6
    num_encoder_layers: int | None = None
    num_decoder_layers: int | None = None
    d_ff: int = 2048
    dropout: float = 0.1
    norm_first: bool = False
    activation: str = "relu"
    layer_norm_eps: float = 1e-5
    max_len: int = 512
    positional: str = "sinusoidal"
    tie_weights: bool = True
    share_embeddings: bool = False
    pad_id: int = 0

    POSITIVE: ClassVar[tuple[str, ...]] = ("src_vocab_size", "tgt_vocab_size", "num_layers", "num_encoder_layers",
                                         "num_decoder_layers", "max_len")
    FLAGS: ClassVar[tuple[str, ...]] = ("norm_first", "tie_weights", "share_embeddings")

    def __post_init__(self):
        super().__post_init__()
        if self.positional not in POSITIONALS:
            raise ValueError(f"positional must be one of {POSITIONALS}, got {self.positional!r}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(f"share_embeddings needs one vocabulary, got src_vocab_size={self.src_vocab_size} "
                             f"and tgt_vocab_size={self.tgt_vocab_size}")
        vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        if not is_int(self.pad_id) or not 0 <= self.pad_id < vocab:
            raise ValueError(f"pad_id must be an id in both vocabularies (0..{vocab - 1}), got {self.pad_id!r}")

    @property
    def encoder_layers(self) -> int:
        return self.num_layers if self.num_encoder_layers is None else self.num_encoder_layers

    @property
    def decoder_layers(self) -> int:
        return self.num_layers if self.num_decoder_layers is None else self.num_decoder_layers

    @classmethod
    def base(cls, vocab_size: int = 37000) -> "TransformerConfig":
        """The base model of "Attention Is All You Need" (one shared, tied vocabulary)."""
        return cls(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, d_model=512, num_heads=8,
                   num_layers=6, d_ff=2048, dropout=0.1, tie_weights=True, share_embeddings=True)

    @classmethod
    def tiny(cls, src_vocab_size: int, tgt_vocab_size: int | None = None, **changes) -> "TransformerConfig":
        """A model small enough to train on a laptop CPU in a minute or two."""
        fields = dict(src_vocab_size=src_vocab_size,
                      tgt_vocab_size=src_vocab_size if tgt_vocab_size is None else tgt_vocab_size,
                      d_model=64, num_heads=4, num_layers=2, d_ff=256, dropout=0.1, max_len=128)
        fields.update(changes)
        return cls(**fields)




def _positions(config: TransformerConfig) -> nn.Module:
    kind = PositionalEncoding if config.positional == "sinusoidal" else LearnedPositionalEmbedding
    return kind(config.d_model, config.max_len, config.dropout)


def count_transformer_parameters(config: TransformerConfig) -> int:
    """The number of parameters of ``Transformer(config)``, by formula (each tensor counted once).

    Per part, with D = d_model and bias vectors included:

    * multi-head attention: four D x D matrices and four biases, ``4 (D^2 + D)``;
    * feed-forward: ``D d_ff + d_ff + d_ff D + D``;
    * LayerNorm: gamma and beta, ``2 D``;
    * encoder layer: attention + FFN + 2 LayerNorms; decoder layer: 2 attentions + FFN + 3
      LayerNorms; pre-LN stacks add one final LayerNorm each;
    * embeddings ``V D`` (one table when shared), learned positions ``max_len D`` per side
      (the sinusoidal table is a buffer, not a parameter), the generator ``D V + V`` (only the
      bias ``V`` when its matrix is tied to the target embedding).
    """
    if not isinstance(config, TransformerConfig):
        raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
    c, D = config, config.d_model
    attention = 4 * (D * D + D)
    ffn = D * c.d_ff + c.d_ff + c.d_ff * D + D
    norm = 2 * D
    encoder = c.encoder_layers * (attention + ffn + 2 * norm) + (norm if c.norm_first else 0)
    decoder = c.decoder_layers * (2 * attention + ffn + 3 * norm) + (norm if c.norm_first else 0)
    embeddings = c.src_vocab_size * D + (0 if c.share_embeddings else c.tgt_vocab_size * D)
    positions = 2 * c.max_len * D if c.positional == "learned" else 0
    generator = (0 if c.tie_weights else D * c.tgt_vocab_size) + c.tgt_vocab_size
    return embeddings + positions + encoder + decoder + generator


class Transformer(nn.Module):
    """The encoder-decoder Transformer of "Attention Is All You Need", batch first.

    Args:
        config: a :class:`TransformerConfig`.

    Shape:
        ``forward(src (B, S), tgt (B, T))`` -> logits ``(B, T, tgt_vocab_size)``, where
        ``tgt`` is the decoder input (the target shifted right, starting with ``<bos>``).
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        self.config = c = config
        self.src_embed = TokenEmbedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = self.src_embed if c.share_embeddings else TokenEmbedding(c.tgt_vocab_size, c.d_model)
        self.src_pos = _positions(c)
        self.tgt_pos = self.src_pos if c.positional == "sinusoidal" else _positions(c)
        self.encoder = Encoder(c.encoder_layers, c.layer)
        self.decoder = Decoder(c.decoder_layers, c.layer)
        self.generator = nn.Linear(c.d_model, c.tgt_vocab_size)
        self._init_weights()
        if c.tie_weights:
            self.generator.weight = self.tgt_embed.embedding.weight    # one (V, D) matrix, two uses

    def _init_weights(self) -> None:
        """Xavier-uniform for every matrix, as in the Annotated Transformer and nn.Transformer."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids ``(B, S)`` -> memory ``(B, S, D)``. ``src_mask`` defaults to source padding."""
        check_tensor("src", src, ndim=2, floating=False)
        if src_mask is None:
            src_mask = padding_mask(src, self.config.pad_id)                    # (B, 1, 1, S)
        return self.encoder(self.src_pos(self.src_embed(src)), src_mask)         # (B, S) -> (B, S, D)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
               memory_mask: torch.Tensor | None = None, cache=None) -> torch.Tensor:
        """Target ids ``(B, T)`` and memory ``(B, S, D)`` -> decoder states ``(B, T, D)``.

        ``tgt_mask`` defaults to causal & target padding; pass the source padding mask as
        ``memory_mask``. With lesson 11's key/value ``cache`` (``kv_cache.new_cache(model)``),
        ``tgt`` holds only the new tokens: their positions continue after the ``len(cache)`` cached ones.
        """
        check_tensor("tgt", tgt, ndim=2, floating=False)
        check_hidden("memory", memory, self.config.d_model, self.generator.weight, "the decoder", length="S")
        if memory.shape[0] != tgt.shape[0]:
            raise ValueError(f"the batch number of tgt and memory must be equal, got tgt {tuple(tgt.shape)} and "
                             f"memory {tuple(memory.shape)}: each target sequence is decoded from its own source")
        past = 0 if cache is None else len(cache)
        if tgt_mask is None:
            tgt_mask = decoder_self_mask(tgt, self.config.pad_id, past)
        x = self.tgt_pos(self.tgt_embed(tgt), offset=past)                       # (B, T) -> (B, T, D)
        return self.decoder(x, memory, tgt_mask, memory_mask, cache)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, V)`` for every position of the decoder input ``tgt``."""
        check_tensor("src", src, ndim=2, floating=False)
        check_tensor("tgt", tgt, ndim=2, floating=False)
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"the batch number of src and tgt must be equal, got src {tuple(src.shape)} and "
                             f"tgt {tuple(tgt.shape)}: row b of tgt is the target of row b of src")
        src_mask = padding_mask(src, self.config.pad_id)
        memory = self.encode(src, src_mask)
        return self.generator(self.decode(tgt, memory, memory_mask=src_mask))   # (B, T, D) -> (B, T, V)

    def attention_weights(self) -> dict[str, list[torch.Tensor | None]]:
        """Every head's weights from the last forward pass:
        ``{"encoder": [(B, H, S, S)] * N, "decoder": [(B, H, T, T)] * N, "cross": [(B, H, T, S)] * N}``."""
        dec = self.decoder.attention_weights()
        return {"encoder": self.encoder.attention_weights(), "decoder": dec["self"], "cross": dec["cross"]}

    def num_parameters(self) -> int:
        """Number of parameters, tied matrices counted once."""
        return count_parameters(self)

    def extra_repr(self) -> str:
        c = self.config
        return (f"d_model={c.d_model}, num_heads={c.num_heads}, layers={c.encoder_layers}+{c.decoder_layers}, "
                f"d_ff={c.d_ff}, norm_first={c.norm_first}, positional={c.positional!r}, "
                f"tie_weights={c.tie_weights}, share_embeddings={c.share_embeddings}, "
                f"parameters={self.num_parameters():,}")


def encode_source(model: Transformer, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Source ids ``(B, S)`` -> memory ``(B, S, D)``, assembled from the model's parts (lesson 07's
    exercise): embed (x sqrt(D)), add positions, run the encoder. ``src_mask`` defaults to the source
    padding mask (True = may attend). Equal to ``model.encode(src, src_mask)``."""
    if src_mask is None:
        src_mask = padding_mask(src, model.config.pad_id)              # (B, S) -> (B, 1, 1, S)
    x = model.src_pos(model.src_embed(src))                             # (B, S) -> (B, S, D)
    return model.encoder(x, src_mask)                                   # (B, S, D)


def decode_target(model: Transformer, tgt: torch.Tensor, memory: torch.Tensor,
                  memory_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder input ids ``(B, T)`` and memory ``(B, S, D)`` -> decoder states ``(B, T, D)``, assembled
    from the model's parts (lesson 07's exercise): the causal & target-padding mask built here,
    ``memory_mask`` (the source padding) passed on. Equal to ``model.decode(tgt, memory, memory_mask=...)``."""
    tgt_mask = decoder_self_mask(tgt, model.config.pad_id)      # causal & target padding: (B, T) -> (B, 1, T, T)
    x = model.tgt_pos(model.tgt_embed(tgt))                      # (B, T) -> (B, T, D)
    return model.decoder(x, memory, tgt_mask, memory_mask)       # (B, T, D)
