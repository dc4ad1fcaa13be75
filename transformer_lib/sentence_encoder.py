"""Lesson 13: what the loaded all-MiniLM-L6-v2 is for: sentence embeddings, semantic search, its heads.

Legend: B batch, T sequence length, D = d_model (384), H heads (12), L layers (6), N sentences.

The model itself comes from :mod:`transformer_lib.pretrained` (checkpoint, name map, loading).

4. :func:`pool_sentence_embeddings`: the mean of the token vectors over the real (non-padding)
   tokens, then L2 normalisation, as the model was trained.
5. :class:`SentenceEncoder` puts tokenizer, model and pooling together: ``encode(sentences)`` ->
   ``(N, D)`` unit vectors, and :func:`semantic_search` ranks a corpus by cosine similarity.
6. :func:`attention_maps` and :func:`head_role_scores` look inside the heads.
"""
from __future__ import annotations

import functools
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .bert import BertModel
from .pretrained import data_file, load_pretrained, load_tokenizer
from .validation import check_int, check_number, check_positive_int, check_sequence, check_tensor
from .wordpiece import WordPieceTokenizer, text_list

__all__ = ["mean_pooling", "l2_normalize", "pool_sentence_embeddings", "SentenceEncoder", "encode", "default_encoder",
           "semantic_search", "load_corpus", "load_reference_embeddings", "attention_maps", "head_role_scores"]


# --- 4. pooling ------------------------------------------------------------------------------

def mean_pooling(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token vectors over the real tokens of each sentence.

    Args:
        hidden: ``(B, T, D)`` token vectors.
        attention_mask: ``(B, T)``, 1/True at real tokens, 0/False at padding.

    Returns:
        ``(B, D)``: ``sum_t m_t h_t / sum_t m_t``.
    """
    check_tensor("hidden", hidden, ndim=3, floating=True)
    check_tensor("attention_mask", attention_mask)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"attention_mask must be (B, T) = {tuple(hidden.shape[:2])}, got {tuple(attention_mask.shape)}")
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)                    # (B, T) -> (B, T, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)        # (B, D) / (B, 1)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Each row divided by its Euclidean length, so dot products are cosines. ``(..., D) -> (..., D)``."""
    check_tensor("x", x, floating=True)
    check_number("eps", eps, low=0.0, low_open=True)
    return F.normalize(x, p=2.0, dim=-1, eps=eps)


def pool_sentence_embeddings(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Sentence embeddings as all-MiniLM-L6-v2 was trained: mean pooling, then L2 normalisation.

    Shape:
        hidden ``(B, T, D)``, attention_mask ``(B, T)`` (1/True = real token) -> ``(B, D)`` unit vectors.
    """
    return l2_normalize(mean_pooling(hidden, attention_mask))


# --- the whole pipeline ----------------------------------------------------------------------

class SentenceEncoder:
    """Tokenizer + model + pooling: sentences -> unit vectors whose dot products are cosines.

    Args:
        model: a :class:`BertModel` with the weights (default :func:`load_pretrained`).
        tokenizer: a :class:`WordPieceTokenizer` (default :func:`load_tokenizer`).
        pooling: ``pooling(hidden, attention_mask) -> (B, D)`` (default
            :func:`pool_sentence_embeddings`).

    Example:
        >>> encoder = SentenceEncoder()
        >>> e = encoder.encode(["A cat sleeps.", "A kitten naps."])    # (2, 384)
        >>> float(e[0] @ e[1])                                         # cosine similarity
    """

    #: ``encode`` makes a batch of long sentences smaller, so that B * T * T stays below this: every
    #: layer computes (and keeps, while the batch runs) ``(B, H, T, T)`` attention weights.
    max_attention_entries = 2 ** 19

    def __init__(self, model: BertModel | None = None, tokenizer: WordPieceTokenizer | None = None,
                 pooling: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        if model is not None and not isinstance(model, BertModel):
            raise TypeError(f"model must be a BertModel (or None for all-MiniLM-L6-v2), got {type(model).__name__}")
        if tokenizer is not None and not isinstance(tokenizer, WordPieceTokenizer):
            raise TypeError(f"tokenizer must be a WordPieceTokenizer (or None), got {type(tokenizer).__name__}")
        if pooling is not None and not callable(pooling):
            raise TypeError(f"pooling must be a function (hidden, attention_mask) -> (B, D), "
                            f"got {type(pooling).__name__}")
        self.model = (model if model is not None else load_pretrained()).eval()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        self.pooling = pooling or pool_sentence_embeddings

    def __repr__(self) -> str:
        c = self.model.config
        return (f"SentenceEncoder(L={c.num_layers}, D={c.d_model}, H={c.num_heads}, "
                f"vocab={len(self.tokenizer)}, max_len={self.tokenizer.max_len})")

    def tokens(self, sentence: str) -> list[str]:
        """The tokens the model sees for one sentence, ``[CLS]`` and ``[SEP]`` included."""
        return self.tokenizer.convert_ids_to_tokens(self.tokenizer.encode(sentence))

    @torch.inference_mode()
    def hidden_states(self, sentences: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One padded batch through the model: ``(hidden (B, T, D), attention_mask (B, T))``."""
        batch = self.tokenizer(sentences)
        hidden = self.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        return hidden, batch["attention_mask"]

    @torch.inference_mode()
    def encode(self, sentences: str | Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Sentence embeddings ``(N, D)`` (one sentence gives ``(1, D)``).

        Sentences are sorted by length and batched, so a batch holds little padding (the order of
        the result is that of ``sentences``); batches of long sentences are smaller (see
        ``max_attention_entries``). The attention weights are not kept.
        """
        sentences = text_list(sentences, "sentences")
        check_positive_int("batch_size", batch_size)
        ids = [self.tokenizer.encode(s) for s in sentences]
        order = sorted(range(len(ids)), key=lambda n: len(ids[n]))
        out = torch.empty(len(ids), self.model.config.d_model)
        pad = self.tokenizer.pad_id
        chunks: list[list[int]] = [[]]
        for n in order:                                   # shortest first: each new sentence is the longest
            T = len(ids[n])
            if chunks[-1] and (len(chunks[-1]) >= batch_size or (len(chunks[-1]) + 1) * T * T > self.max_attention_entries):
                chunks.append([])
            chunks[-1].append(n)
        for chunk in chunks:
            T = max(len(ids[n]) for n in chunk)
            input_ids = torch.full((len(chunk), T), pad, dtype=torch.long)       # (B, T)
            attention_mask = torch.zeros(len(chunk), T, dtype=torch.long)        # (B, T)
            for b, n in enumerate(chunk):
                input_ids[b, : len(ids[n])] = torch.tensor(ids[n])
                attention_mask[b, : len(ids[n])] = 1
            hidden = self.model(input_ids, torch.zeros_like(input_ids), attention_mask)   # (B, T, D)
            out[chunk] = self.pooling(hidden, attention_mask)                              # (B, D)
        self._forget_attention_weights()
        return out

    def _forget_attention_weights(self) -> None:
        """Drop the (B, H, T, T) weights every attention layer keeps for plotting: after a batch of
        long sentences they hold hundreds of MB that embeddings never need."""
        for module in self.model.modules():
            if hasattr(module, "last_weights"):
                module.last_weights = None


@functools.lru_cache(maxsize=1)
def default_encoder() -> SentenceEncoder:
    """One shared :class:`SentenceEncoder` with the verified weights (loaded on first use)."""
    return SentenceEncoder()


def encode(sentences: str | Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Sentence embeddings ``(N, 384)`` of all-MiniLM-L6-v2 with the shared encoder."""
    return default_encoder().encode(sentences, batch_size=batch_size)


def semantic_search(queries: torch.Tensor, corpus: torch.Tensor, top_k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``top_k`` corpus entries most similar (cosine) to each query.

    Args:
        queries: ``(Q, D)`` or ``(D,)`` embeddings.
        corpus: ``(N, D)`` embeddings.
        top_k: how many matches per query (at most N).

    Returns:
        ``(scores (Q, k), indices (Q, k))``, best first.
    """
    check_tensor("corpus", corpus, ndim=2, floating=True)
    check_tensor("queries", queries, ndim=(1, 2), floating=True)
    if queries.ndim == 1:
        queries = queries[None]                                          # (D,) -> (1, D)
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} features but the corpus has {corpus.shape[1]}")
    check_int("top_k", top_k, 1, corpus.shape[0], hint="at most the corpus size")
    scores = l2_normalize(queries) @ l2_normalize(corpus).T               # (Q, D) @ (D, N) -> (Q, N)
    return scores.topk(top_k, dim=1)


# --- the data shipped with the lesson --------------------------------------------------------

def load_corpus() -> tuple[list[str], list[str]]:
    """Lesson 13's 300 sentences on 12 topics, for semantic search: ``(sentences, topics)``."""
    sentences, topics = [], []
    for line in data_file("sentences.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            topic, sentence = line.split("\t", 1)
            topics.append(topic)
            sentences.append(sentence)
    return sentences, topics


def load_reference_embeddings() -> tuple[list[str], torch.Tensor]:
    """Sentences and their embeddings ``(N, 384)`` computed by sentence-transformers itself
    (``tools/make_reference_embeddings.py``)."""
    import numpy as np

    with data_file("reference_embeddings.npz").open("rb") as f:
        data = np.load(f)
        return [str(s) for s in data["sentences"]], torch.from_numpy(data["embeddings"].copy())


# --- inside the model ------------------------------------------------------------------------

@torch.inference_mode()
def attention_maps(encoder: SentenceEncoder, sentence: str) -> tuple[list[str], torch.Tensor]:
    """The attention weights of every head of every layer on one sentence.

    Returns:
        ``(tokens, weights (L, H, T, T))`` with T the number of tokens ([CLS] and [SEP] included).
    """
    if not isinstance(encoder, SentenceEncoder):
        raise TypeError(f"encoder must be a SentenceEncoder, got {type(encoder).__name__}")
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be one str, got {type(sentence).__name__}")
    encoder.hidden_states([sentence])
    weights = encoder.model.attention_weights()
    if any(w is None for w in weights):
        raise RuntimeError("the model kept no attention weights: its attention layers are set to the fused kernel "
                           "(need_weights = False)")
    return encoder.tokens(sentence), torch.stack([w[0] for w in weights])     # L x (H, T, T) -> (L, H, T, T)


@torch.inference_mode()
def head_role_scores(encoder: SentenceEncoder, sentences: Sequence[str], batch_size: int = 16) -> dict[str, torch.Tensor]:
    """How strongly each head plays a recognisable role, averaged over the tokens of ``sentences``.

    Returns ``{role: (L, H) scores}``, each the mean attention weight that a query token puts on

    * ``"previous token"``: the token just before it;
    * ``"next token"``: the token just after it;
    * ``"[CLS] / [SEP]"``: the two special tokens (a "nothing to do" sink many heads use);
    * ``"same word"``: the other occurrences of its own token in the sentence (``the`` ...
      ``the``), over the tokens that do occur more than once.

    Only real tokens are queries; a score of 1 means all of a head's weight goes there. The
    sentences run in padded batches: padding gets no attention, so each sentence's ``(T, T)``
    block of weights is the same as when it runs alone.
    """
    if not isinstance(encoder, SentenceEncoder):
        raise TypeError(f"encoder must be a SentenceEncoder, got {type(encoder).__name__}")
    if isinstance(sentences, str):
        raise ValueError("sentences must be a non-empty list of str")
    sentences = check_sequence("sentences", sentences, str, "sentences (str)")
    if not sentences:
        raise ValueError("sentences must be a non-empty list of str")
    check_positive_int("batch_size", batch_size)
    tok = encoder.tokenizer
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, float] = {}
    for start in range(0, len(sentences), batch_size):
        batch = tok(list(sentences[start:start + batch_size]))
        encoder.model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
        weights = torch.stack(encoder.model.attention_weights(), dim=1)             # L x (B, H, T, T) -> (B, L, H, T, T)
        for b in range(weights.shape[0]):
            T = int(batch["attention_mask"][b].sum())
            w = weights[b, :, :, :T, :T]                                              # (L, H, T, T): real tokens only
            ids = batch["input_ids"][b, :T]                                           # (T,)
            special = (ids == tok.cls_id) | (ids == tok.sep_id)                       # (T,)
            same = (ids[:, None] == ids[None, :]) & ~torch.eye(T, dtype=torch.bool)   # (T, T)
            same &= ~special[:, None]
            words = ~special                                                          # query rows: real tokens
            roles = {  # role: (keys that count (T, T), queries that count (T,))
                "previous token": (torch.ones(T, T).tril(-1).triu(-1).bool(), words),
                "next token": (torch.ones(T, T).triu(1).tril(1).bool(), words),
                "[CLS] / [SEP]": (special[None, :].expand(T, T), words),
                "same word": (same, same.any(dim=1)),
            }
            for role, (keys, queries) in roles.items():
                mass = (w * keys).sum(-1)                                             # (L, H, T): weight on those keys
                sums[role] = sums.get(role, 0) + (mass * queries).sum(-1)             # (L, H)
                counts[role] = counts.get(role, 0) + float(queries.sum())
    encoder._forget_attention_weights()
    return {role: sums[role] / max(counts[role], 1.0) for role in sums}
