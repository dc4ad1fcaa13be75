"""Lesson 10: BERT's masking rule (15 % chosen; 80 % [MASK], 10 % random, 10 % unchanged) and
the loss on the chosen positions only."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from transformer_lib.mlm import IGNORE_INDEX, mask_tokens, mlm_batch, mlm_loss

V, NUM_SPECIAL, MASK, PAD, CLS, SEP = 40, 7, 6, 0, 4, 5


def batch(B=300, T=101, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(NUM_SPECIAL, V, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = CLS, SEP
    ids[::3, 60:] = PAD                                        # a third of the rows are padded
    return ids


def test_masking_statistics_with_a_fixed_seed():
    ids = batch()
    inputs, labels = mask_tokens(ids, MASK, NUM_SPECIAL, V, generator=torch.Generator().manual_seed(0))
    ordinary = ids >= NUM_SPECIAL
    chosen = labels != IGNORE_INDEX
    n = int(chosen.sum())
    assert abs(n / int(ordinary.sum()) - 0.15) < 0.006           # 15 % of the ordinary tokens
    masked = (inputs == MASK) & chosen
    unchanged = (inputs == ids) & chosen
    random = chosen & ~masked & ~unchanged
    assert abs(masked.sum().item() / n - 0.8) < 0.015
    assert abs(random.sum().item() / n - 0.1 * (V - NUM_SPECIAL - 1) / (V - NUM_SPECIAL)) < 0.012
    assert abs(unchanged.sum().item() / n - (0.1 + 0.1 / (V - NUM_SPECIAL))) < 0.012
    # random replacements are ordinary tokens, spread over the vocabulary
    assert (inputs[random] >= NUM_SPECIAL).all() and inputs[random].unique().numel() > (V - NUM_SPECIAL) // 2


def test_specials_and_padding_are_never_chosen_and_labels_are_the_originals():
    ids = batch(seed=1)
    inputs, labels = mask_tokens(ids, MASK, NUM_SPECIAL, V, generator=torch.Generator().manual_seed(1))
    special = ids < NUM_SPECIAL
    assert (labels[special] == IGNORE_INDEX).all() and torch.equal(inputs[special], ids[special])
    chosen = labels != IGNORE_INDEX
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])             # nothing else changes


def test_seeded_masking_repeats_and_leaves_the_input_alone():
    ids = batch(10, 20)
    copy = ids.clone()
    a = mask_tokens(ids, MASK, NUM_SPECIAL, V, generator=torch.Generator().manual_seed(3))
    b = mask_tokens(ids, MASK, NUM_SPECIAL, V, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ids, copy)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = mask_tokens(ids, MASK, NUM_SPECIAL, V, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a[1], c[1])


def test_mask_prob_is_used():
    ids = batch(100, 101, seed=2)
    _, labels = mask_tokens(ids, MASK, NUM_SPECIAL, V, generator=torch.Generator().manual_seed(0), mask_prob=0.5)
    frac = (labels != IGNORE_INDEX).sum().item() / (ids >= NUM_SPECIAL).sum().item()
    assert abs(frac - 0.5) < 0.02
    _, none = mask_tokens(ids, MASK, NUM_SPECIAL, V, mask_prob=0.0)
    assert (none == IGNORE_INDEX).all()


@pytest.mark.parametrize("kwargs, error", [
    (dict(mask_id=10), ValueError), (dict(num_special=0), ValueError), (dict(num_special=V), ValueError),
    (dict(mask_prob=1.5), ValueError), (dict(mask_id=6.0), TypeError),
])
def test_bad_arguments(kwargs, error):
    args = dict(mask_id=MASK, num_special=NUM_SPECIAL, vocab_size=V)
    args.update(kwargs)
    with pytest.raises(error):
        mask_tokens(batch(2, 5), **args)
    with pytest.raises(TypeError):
        mask_tokens(batch(2, 5).float(), MASK, NUM_SPECIAL, V)


def test_mlm_loss_counts_chosen_positions_only():
    logits = torch.randn(2, 5, V)
    ids = torch.randint(NUM_SPECIAL, V, (2, 5))
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[0, 1], labels[1, 3] = ids[0, 1], ids[1, 3]
    want = (F.cross_entropy(logits[0, 1], ids[0, 1]) + F.cross_entropy(logits[1, 3], ids[1, 3])) / 2
    assert torch.allclose(mlm_loss(logits, labels), want)
    # changing the logits at positions without a label changes nothing
    other = logits.clone()
    other[0, 0] += 5
    assert torch.allclose(mlm_loss(other, labels), want)
    nothing = mlm_loss(logits.requires_grad_(), torch.full_like(ids, IGNORE_INDEX))
    assert nothing.item() == 0 and nothing.requires_grad


def test_mlm_batch_uses_the_given_masker():
    ids = batch(4, 9)
    b = mlm_batch(ids, MASK, NUM_SPECIAL, V, generator=torch.Generator().manual_seed(0))
    assert torch.equal(b.ids, ids) and b.inputs.shape == ids.shape
    calls = []
    mlm_batch(ids, MASK, NUM_SPECIAL, V, masker=lambda *a, **k: calls.append(1) or (ids, ids))
    assert calls == [1]


def test_loss_arguments_are_checked():
    logits = torch.randn(2, 5, V)
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[0, 1] = 9
    torch.testing.assert_close(mlm_loss(logits, labels.int()), mlm_loss(logits, labels))
    with pytest.raises(ValueError, match=r"logits \(B, T, V\) and labels \(B, T\) must agree"):
        mlm_loss(logits, labels[:, :4])
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None"):
        mask_tokens(batch(2, 5), MASK, NUM_SPECIAL, V, generator=0)
    with pytest.raises(ValueError, match=r"mask_prob must be a number in \[0, 1\] \(a probability\), got 1.5"):
        mask_tokens(batch(2, 5), MASK, NUM_SPECIAL, V, mask_prob=1.5)
