"""Lesson 03's recall task: the data, the two models, and that attention solves it in one step."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_lib.recall import AttentionRecall, RecurrentRecall, chance_level, recall_accuracy, recall_batch


def test_the_answer_is_the_first_token_and_batches_repeat_with_a_seed():
    x, y = recall_batch(5, 7, vocab_size=11, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 7) and x.dtype == torch.int64 and torch.equal(y, x[:, 0])
    assert int(x.min()) >= 0 and int(x.max()) < 11
    again, _ = recall_batch(5, 7, vocab_size=11, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    y[0] = -1
    assert x[0, 0] != -1, "the answer is a copy, not a view of x"


@pytest.mark.parametrize("model_cls", [RecurrentRecall, AttentionRecall])
def test_both_models_score_every_token_from_the_whole_sequence(model_cls):
    model = model_cls(vocab_size=11, d_model=12)
    x, _ = recall_batch(3, 9, vocab_size=11, generator=torch.Generator().manual_seed(1))
    assert model(x).shape == (3, 11)
    assert recall_accuracy(model, 9, n=50, vocab_size=11) <= 1.0
    assert chance_level(11) == pytest.approx(1 / 11)


def test_attention_reaches_the_first_token_in_one_step_however_far():
    """One attention layer learns the task at T = 60 within a couple of hundred steps."""
    torch.manual_seed(0)
    model = AttentionRecall(vocab_size=8, d_model=16, max_len=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        x, y = recall_batch(32, 60, vocab_size=8, generator=g)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert recall_accuracy(model, 60, n=300, vocab_size=8) > 0.95


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="length"):
        recall_batch(2, 0)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        RecurrentRecall()([[1, 2]])
    with pytest.raises(ValueError, match="max_len=4"):
        AttentionRecall(max_len=4)(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="nn.Module"):
        recall_accuracy(lambda x: x, 3)
