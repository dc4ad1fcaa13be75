"""Lessons 10 and 13: an encoder-only (BERT-style) model built from the lesson-05 encoder.

Legend: B batch, T sequence length, D = d_model, V vocabulary size.

    ids (B, T) -> token + position (+ segment) embeddings -> LayerNorm -> Encoder -> (B, T, D)

Differences from the encoder-decoder of lesson 07, all of which are configuration:
learned positions instead of sinusoids, no sqrt(D) scaling of token vectors, a LayerNorm over
the summed embeddings, exact (erf) GELU and LayerNorm eps 1e-12, post-LN layers. Every token
attends to every other (no causal mask): the model sees both sides of each word.

Masks are boolean, **True = may attend**.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .encoder import Encoder
from ._deprecated import RenamedAttributes
from .config import ModelConfig
from .feed_forward import get_activation
from .masks import attention_mask_from
from .positional import LearnedPositionalEmbedding
from .utils import count_parameters
from .validation import check_hidden, check_int, check_positive_int, check_tensor


@dataclass(frozen=True)
class BertConfig(ModelConfig):
    """Hyper-parameters of a :class:`BertModel`, checked on construction.

    ``type_vocab_size`` is the number of segments ("sentence A / sentence B"); 0 drops the
    segment embedding.
    """

    vocab_size: int
    d_model: int = 768
    num_heads: int = 12
    num_layers: int = 12
    d_ff: int = 3072
    max_len: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    activation: str = "gelu"
    layer_norm_eps: float = 1e-12
    norm_first: bool = False
    pad_id: int = 0

    POSITIVE: ClassVar[tuple[str, ...]] = ("vocab_size", "num_layers", "max_len")
    FLAGS: ClassVar[tuple[str, ...]] = ("norm_first",)

    def __post_init__(self):
        super().__post_init__()
        self.check_field(check_int, "type_vocab_size", minimum=0, hint="0 drops the segment embedding")
        self.check_field(check_int, "pad_id", 0, self.vocab_size - 1, hint="an id of the vocabulary")

    @classmethod
    def base(cls, vocab_size: int = 30522) -> "BertConfig":
        """BERT-base: 12 layers, D = 768, 12 heads (about 110 M parameters)."""
        return cls(vocab_size=vocab_size)

    @classmethod
    def tiny(cls, vocab_size: int, **changes) -> "BertConfig":
        """A BERT small enough to pre-train on a laptop CPU in a minute."""
        fields = dict(vocab_size=vocab_size, d_model=64, num_heads=4, num_layers=2, d_ff=256, max_len=64)
        fields.update(changes)
        return cls(**fields)


class BertEmbeddings(RenamedAttributes, nn.Module):
    """Token + learned position (+ segment) embeddings, summed, then LayerNorm and dropout.

    Its parts are named as in the other models: ``embed`` (the token embedding), ``pos`` (a
    :class:`~transformer_lib.positional.LearnedPositionalEmbedding`), and ``token_type``.

    Shape:
        ids ``(B, T)``, token_type_ids ``(B, T)`` or None -> ``(B, T, D)``.
    """

    RENAMED = {"token": "embed", "position": "pos"}

    def __init__(self, config: BertConfig):
        super().__init__()
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model, padding_idx=c.pad_id)
        self.pos = LearnedPositionalEmbedding(c.d_model, c.max_len)
        self.token_type = nn.Embedding(c.type_vocab_size, c.d_model) if c.type_vocab_size else None
        self.norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor("ids", ids, ndim=2, floating=False)
        x = self.pos(self.embed(ids))                                                   # (B, T) -> (B, T, D)
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(ids)
            check_tensor("token_type_ids", token_type_ids, floating=False)
            if token_type_ids.shape != ids.shape:
                raise ValueError(f"token_type_ids must have the shape of ids {tuple(ids.shape)} (one segment "
                                 f"number per token), got {tuple(token_type_ids.shape)}")
            x = x + self.token_type(token_type_ids)                                    # (B, T, D)
        return self.dropout(self.norm(x))


class BertModel(nn.Module):
    """The encoder-only backbone: embeddings, an :class:`~transformer_lib.encoder.Encoder`, and a pooler.

    Args:
        config: a :class:`BertConfig`.

    Shape:
        ``forward(ids (B, T), token_type_ids=None, attention_mask=None)`` -> ``(B, T, D)``.
        ``attention_mask`` is ``(B, T)`` with 1/True at real tokens; by default padding
        (``pad_id``) is masked.

    ``pooled(hidden)`` is BERT's sentence vector: tanh(W h_[CLS] + b) of the first token.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        self.config = c = config
        self.embeddings = BertEmbeddings(c)
        self.encoder = Encoder(c.num_layers, c.layer)
        self.pooler = nn.Linear(c.d_model, c.d_model)

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor("ids", ids, ndim=2, floating=False)
        mask = attention_mask_from(ids, attention_mask, self.config.pad_id)
        return self.encoder(self.embeddings(ids, token_type_ids), mask)               # (B, T) -> (B, T, D)

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(B, T, D) -> (B, D)``: the pooler applied to the first ([CLS]) token."""
        check_hidden("hidden", hidden, self.config.d_model, self.pooler.weight, "the pooler", length="T")
        return torch.tanh(self.pooler(hidden[:, 0]))

    def attention_weights(self) -> list[torch.Tensor | None]:
        """The last self-attention weights ``(B, H, T, T)`` of every layer (``None`` where fused)."""
        return self.encoder.attention_weights()

    def num_parameters(self) -> int:
        return count_parameters(self)


class MaskedLMHead(RenamedAttributes, nn.Module):
    """BERT's masked-LM head: dense + activation + LayerNorm, then scores over the vocabulary
    with the (tied) token embedding matrix: the ``generator``, as in the other models. ``(B, T, D) -> (B, T, V)``."""

    RENAMED = {"decoder": "generator"}

    def __init__(self, config: BertConfig, embedding: nn.Embedding):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        shape = (config.vocab_size, config.d_model)
        if not isinstance(embedding, nn.Embedding) or tuple(embedding.weight.shape) != shape:
            got = embedding if isinstance(embedding, nn.Embedding) else type(embedding).__name__
            raise TypeError(f"embedding must be the model's token nn.Embedding({config.vocab_size}, {config.d_model}) "
                            f"(its matrix is tied to the head), got {got}")
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.activation = get_activation(config.activation)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.generator = nn.Linear(config.d_model, config.vocab_size)
        self.generator.weight = embedding.weight                                        # tied: (V, D)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        check_hidden("hidden", hidden, self.dense.in_features, self.dense.weight, "the masked-LM head", length="T")
        return self.generator(self.norm(self.activation(self.dense(hidden))))          # (B, T, D) -> (B, T, V)


class BertForMaskedLM(nn.Module):
    """A :class:`BertModel` with the masked-LM head: logits ``(B, T, V)`` for every position."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bert = BertModel(config)
        self.head = MaskedLMHead(config, self.bert.embeddings.embed)

    def forward(self, ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        return self.head(self.bert(ids, token_type_ids, attention_mask))


class BertClassifier(nn.Module):
    """A :class:`BertModel` with a linear classifier on the pooled [CLS] vector: ``(B, num_labels)``.

    Args:
        bert: the (possibly pre-trained) backbone.
        num_labels: number of classes.
    """

    def __init__(self, bert: BertModel, num_labels: int):
        super().__init__()
        if not isinstance(bert, BertModel):
            raise TypeError(f"bert must be a BertModel (the backbone), got {type(bert).__name__}")
        check_positive_int("num_labels", num_labels)
        self.bert = bert
        self.dropout = nn.Dropout(bert.config.dropout)
        self.classifier = nn.Linear(bert.config.d_model, num_labels)

    def forward(self, ids, token_type_ids=None, attention_mask=None) -> torch.Tensor:
        hidden = self.bert(ids, token_type_ids, attention_mask)
        return self.classifier(self.dropout(self.bert.pooled(hidden)))                 # (B, D) -> (B, num_labels)
