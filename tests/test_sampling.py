"""Lesson 11: greedy, temperature, top-k and top-p sampling."""
from __future__ import annotations

import pytest
import torch

from transformer_lib.sampling import apply_temperature, sample_next, top_k_filter, top_k_probs, top_p_filter


def logits_batch(B=3, V=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, V, generator=g) * 2


def test_temperature_zero_is_greedy_and_tiny_temperature_too():
    z = logits_batch(5, 11)
    assert torch.equal(sample_next(z, temperature=0.0), z.argmax(-1))
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        assert torch.equal(sample_next(z, temperature=1e-4, generator=g), z.argmax(-1))


def test_top_k_one_is_greedy_whatever_the_temperature():
    z = logits_batch(4, 9)
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        assert torch.equal(sample_next(z, temperature=5.0, top_k=1, generator=g), z.argmax(-1))


def test_tiny_top_p_keeps_exactly_the_best_token():
    z = logits_batch(4, 9)
    kept = top_p_filter(z, 1e-6)
    assert torch.equal(torch.isfinite(kept).sum(-1), torch.ones(4, dtype=torch.long))
    assert torch.equal(kept.argmax(-1), z.argmax(-1))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(sample_next(z, temperature=3.0, top_p=1e-6, generator=g), z.argmax(-1))


def test_top_p_keeps_the_smallest_nucleus():
    z = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isfinite(top_p_filter(z, 0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(top_p_filter(z, 0.6)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(z, 0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(z, 0.81)).tolist() == [[True, True, True, False]]
    assert torch.equal(top_p_filter(z, 1.0), z)
    # unsorted input: the nucleus is found in sorted order and mapped back
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.isfinite(top_p_filter(z[:, perm], 0.6)).tolist() == [[False, True, False, True]]


def test_top_k_filter_and_probs():
    z = torch.tensor([[1.0, 4.0, 2.0, 3.0, 0.0]])
    assert torch.isfinite(top_k_filter(z, 2)).tolist() == [[False, True, False, True, False]]
    p = top_k_probs(z, 2)
    assert torch.allclose(p.sum(-1), torch.ones(1))
    assert torch.allclose(p[0, [1, 3]], torch.softmax(torch.tensor([4.0, 3.0]), -1))
    assert torch.equal(top_k_filter(z, 5), z) and torch.equal(top_k_filter(z, 99), z)
    assert top_k_probs(torch.randn(2, 3, 6), 4).shape == (2, 3, 6)


def test_sampling_follows_the_filtered_distribution():
    z = torch.log(torch.tensor([0.4, 0.3, 0.2, 0.1])).expand(20000, 4)
    g = torch.Generator().manual_seed(4)
    counts = torch.bincount(sample_next(z, top_k=2, generator=g), minlength=4).float() / 20000
    assert counts[2:].sum() == 0
    assert abs(counts[0].item() - 4 / 7) < 0.02
    counts = torch.bincount(sample_next(z, temperature=1.0, generator=g), minlength=4).float() / 20000
    assert torch.allclose(counts, torch.tensor([0.4, 0.3, 0.2, 0.1]), atol=0.02)
    # a high temperature flattens, a low one sharpens
    hot = torch.bincount(sample_next(z, temperature=10.0, generator=g), minlength=4).float() / 20000
    cold = torch.bincount(sample_next(z, temperature=0.3, generator=g), minlength=4).float() / 20000
    assert hot.max() < 0.32 and cold[0] > 0.6


def test_seeded_sampling_repeats_and_keeps_the_batch_shape():
    z = torch.randn(2, 3, 10)
    a = sample_next(z, temperature=0.9, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(7))
    b = sample_next(z, temperature=0.9, top_k=5, top_p=0.9, generator=torch.Generator().manual_seed(7))
    assert a.shape == (2, 3) and a.dtype == torch.long and torch.equal(a, b)


@pytest.mark.parametrize("kwargs, error", [
    (dict(temperature=-1.0), ValueError), (dict(top_k=0), ValueError), (dict(top_k=2.5), TypeError),
    (dict(top_p=0.0), ValueError), (dict(top_p=1.5), ValueError), (dict(top_p="0.9"), TypeError),
])
def test_bad_arguments_are_errors(kwargs, error):
    with pytest.raises(error):
        sample_next(torch.randn(2, 5), **kwargs)


def test_bad_logits_and_temperature():
    with pytest.raises(TypeError, match="float"):
        sample_next(torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="greedy"):
        apply_temperature(torch.randn(3), 0.0)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_logits_that_allow_no_token_are_named(temperature):
    z = logits_batch(3, 7)
    nan = z.clone()
    nan[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"logits contain NaN, so no distribution can be formed: .*lower the learning rate"):
        sample_next(nan, temperature)
    dead = z.clone()
    dead[2] = float("-inf")
    with pytest.raises(ValueError, match=r"every logit of row 2 is -inf: no token is allowed"):
        sample_next(dead, temperature)
    with pytest.raises(ValueError, match=r"every logit is -inf"):
        sample_next(torch.full((7,), float("-inf")), temperature)


def test_plus_infinity_is_greedy_only():
    z = logits_batch(1, 7)
    z[0, 4] = float("inf")
    assert sample_next(z, temperature=0.0).tolist() == [4]           # argmax is well defined
    with pytest.raises(ValueError, match=r"logits contain \+inf"):
        sample_next(z, temperature=1.0)                              # softmax would give NaN


def test_generator_and_top_p_are_checked():
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got int"):
        sample_next(logits_batch(), generator=0)
    with pytest.raises(ValueError, match=r"top_p must be a number in \(0, 1\]"):
        top_p_filter(logits_batch(), 0.0)
