"""Lesson 03: a long-range dependency, measured: recall the first token of a sequence.

Legend: B batch, T sequence length, D model width, V vocabulary size.

The task: a sequence of T random tokens; the answer is its **first** token, seen T - 1 steps
before the model must say it. Two small models read the sequence and answer at its end:

* :class:`RecurrentRecall`, an LSTM, must carry the first token in its state through T - 1
  updates: information and gradients travel a path of length T;
* :class:`AttentionRecall`, one attention layer of lesson 03 whose only query is the last
  position, reaches position 0 in one step: a path of length 1, whatever T.

Both have an embedding and an output layer of the same size; the lesson trains them with the
same budget and plots accuracy against T.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import scaled_dot_product_attention
from .validation import check_int, check_tensor

__all__ = ["recall_batch", "RecurrentRecall", "AttentionRecall", "recall_accuracy", "chance_level"]


def recall_batch(batch_size: int, length: int, vocab_size: int = 16,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random sequences and their answers.

    Args:
        batch_size: B, the number of sequences.
        length: T, the number of tokens per sequence (at least 1).
        vocab_size: V, tokens are drawn uniformly from ``0 .. V-1``.
        generator: a seeded ``torch.Generator`` for reproducible batches.

    Returns:
        ``(x (B, T), y (B,))`` int64, with ``y = x[:, 0]``.
    """
    check_int("batch_size", batch_size, minimum=1)
    check_int("length", length, minimum=1)
    check_int("vocab_size", vocab_size, minimum=2)
    x = torch.randint(0, vocab_size, (batch_size, length), generator=generator)   # (B, T)
    return x, x[:, 0].clone()


class RecurrentRecall(nn.Module):
    """Embedding -> LSTM -> the last state -> scores over the V tokens.

    Args:
        vocab_size: V.
        d_model: D, the width of the embedding and of the LSTM's state.

    Shape:
        ``x (B, T)`` token ids -> ``(B, V)`` scores for the first token.
    """

    def __init__(self, vocab_size: int = 16, d_model: int = 32):
        super().__init__()
        check_int("vocab_size", vocab_size, minimum=2)
        check_int("d_model", d_model, minimum=1)
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.rnn = nn.LSTM(d_model, d_model, batch_first=True)
        self.output = nn.Linear(d_model, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=2, floating=False)
        states, _ = self.rnn(self.embedding(x))                  # (B, T) -> (B, T, D)
        return self.output(states[:, -1])                        # (B, D) -> (B, V)


class AttentionRecall(nn.Module):
    """Embedding + learned positions -> one attention layer queried from the last position.

    Args:
        vocab_size: V.
        d_model: D, the width of the embedding, the positions and the attention.
        max_len: the longest sequence (one learned position vector each).

    Shape:
        ``x (B, T)`` token ids -> ``(B, V)`` scores for the first token.
    """

    def __init__(self, vocab_size: int = 16, d_model: int = 32, max_len: int = 512):
        super().__init__()
        check_int("vocab_size", vocab_size, minimum=2)
        check_int("d_model", d_model, minimum=1)
        check_int("max_len", max_len, minimum=1)
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.position = nn.Embedding(max_len, d_model)
        self.w_q, self.w_k, self.w_v = (nn.Linear(d_model, d_model) for _ in range(3))
        self.output = nn.Linear(d_model, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=2, floating=False)
        if x.shape[1] > self.position.num_embeddings:
            raise ValueError(f"x has {x.shape[1]} tokens, more than max_len={self.position.num_embeddings}")
        h = self.embedding(x) + self.position(torch.arange(x.shape[1], device=x.device))  # (B, T, D)
        q = self.w_q(h[:, -1:])                                  # (B, 1, D): the last position asks
        out, _ = scaled_dot_product_attention(q, self.w_k(h), self.w_v(h))               # (B, 1, D)
        return self.output(out[:, 0])                            # (B, D) -> (B, V)


@torch.no_grad()
def recall_accuracy(model: nn.Module, length: int, n: int = 1000, vocab_size: int = 16, seed: int = 999) -> float:
    """The fraction of ``n`` fresh sequences of ``length`` tokens whose first token ``model`` recalls."""
    check_int("n", n, minimum=1)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    x, y = recall_batch(n, length, vocab_size, generator=torch.Generator().manual_seed(seed))
    correct = (model(x).argmax(dim=-1) == y).float().mean().item()
    model.train(was_training)
    return correct


def chance_level(vocab_size: int = 16) -> float:
    """The accuracy of a guess: 1 / V."""
    check_int("vocab_size", vocab_size, minimum=2)
    return 1.0 / vocab_size

