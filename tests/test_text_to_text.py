"""Lesson 12: the text-to-text tasks, their encoding and scoring, and relative positions."""
from __future__ import annotations

import datetime
import math
import random

import pytest
import torch

from transformer_lib.text_to_text import (ADD_MAX, TASKS, apply_rope, encode_examples, generate_examples,
                                          make_example, per_task_accuracy, random_value, relative_position_bucket,
                                          text_to_text_tokenizer)


def test_make_example_for_every_task():
    assert make_example("reverse", "stone") == ("reverse: stone", "enots")
    assert make_example("sort", "stone") == ("sort: stone", "enost")
    assert make_example("add", (57, 64)) == ("add: 57+64", "121")
    assert make_example("date", datetime.date(2021, 3, 7)) == ("date: 7 march 2021", "2021-03-07")
    assert make_example("date", datetime.date(1999, 12, 31)) == ("date: 31 december 1999", "1999-12-31")
    with pytest.raises(ValueError, match="unknown task"):
        make_example("copy", "abc")


def test_random_values_stay_in_range():
    rng = random.Random(0)
    for _ in range(200):
        word = random_value("reverse", rng)
        assert 3 <= len(word) <= 8 and word.isalpha() and word.islower()
        a, b = random_value("add", rng)
        assert 0 <= a <= ADD_MAX and 0 <= b <= ADD_MAX
        d = random_value("date", rng)
        assert datetime.date(1950, 1, 1) <= d <= datetime.date(2049, 12, 31)
    with pytest.raises(ValueError):
        random_value("translate", rng)


def test_generate_examples_is_seeded_and_takes_tasks_in_turn():
    ex = generate_examples(40, seed=1)
    assert ex == generate_examples(40, seed=1) != generate_examples(40, seed=2)
    assert [t for t, _, _ in ex[:4]] == list(TASKS)
    for task, source, target in ex:
        assert source.startswith(task + ": ")
    only = generate_examples(6, tasks=("add",))
    assert all(t == "add" for t, _, _ in only)
    calls = []
    generate_examples(3, maker=lambda t, v: calls.append(t) or ("s", "t"))
    assert calls == list(TASKS[:3])
    with pytest.raises(ValueError):
        generate_examples(3, tasks=("copy",))
    with pytest.raises(ValueError):
        generate_examples(-1)


def test_tokenizer_covers_every_character_and_encoding():
    tok = text_to_text_tokenizer()
    ex = generate_examples(400, seed=3)
    for _, s, t in ex:
        assert tok.unk_id not in tok.encode(s) + tok.encode(t)
        assert tok.decode(tok.encode(s)) == s
    src, tgt_in, tgt_out = encode_examples(tok, ex[:5])
    assert src.shape[0] == tgt_in.shape[0] == tgt_out.shape[0] == 5 and tgt_in.shape == tgt_out.shape
    assert (tgt_in[:, 0] == tok.bos_id).all()
    assert torch.equal(tgt_in[:, 1:][tgt_out[:, :-1] != tok.eos_id], tgt_out[:, :-1][tgt_out[:, :-1] != tok.eos_id])
    assert (tgt_in != tok.eos_id).all()
    for row, (_, _, t) in zip(tgt_out, ex[:5]):
        assert tok.decode(row) == t and (row == tok.eos_id).sum() == 1


def test_per_task_accuracy():
    acc = per_task_accuracy(["add", "add", "sort", "date"], ["3", "4", "abc", "x"], ["3", "5", "abc", "y"])
    assert acc == {"add": 0.5, "sort": 1.0, "date": 0.0, "all": 0.5}
    assert per_task_accuracy([], [], []) == {}
    with pytest.raises(ValueError, match="same length"):
        per_task_accuracy(["add"], [], [])


def hf_t5_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """Hugging Face's T5Attention._relative_position_bucket, written out for comparison."""
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    large = max_exact + (torch.log(relative_position.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return relative_buckets + torch.where(is_small, relative_position, large)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_matches_t5(bidirectional):
    rel = torch.arange(-300, 301)
    ours = relative_position_bucket(rel, bidirectional=bidirectional)
    assert torch.equal(ours, hf_t5_bucket(rel, bidirectional=bidirectional))
    assert ours.max() < 32 and ours.min() >= 0
    with pytest.raises(TypeError):
        relative_position_bucket(rel.float())


def test_rope_rotates_pairs_and_is_relative():
    x = torch.randn(2, 6, 8)
    out = apply_rope(x)
    assert out.shape == x.shape
    assert torch.allclose(out[:, 0], x[:, 0])                              # position 0 is not rotated
    assert torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5)    # rotations keep lengths
    # the same as multiplying complex numbers (x_2i + i x_2i+1) by e^{i m theta_i}
    z = torch.view_as_complex(x.reshape(2, 6, 4, 2).contiguous())
    theta = 10000 ** (-torch.arange(0, 8, 2).float() / 8)
    rot = torch.polar(torch.ones(6, 4), torch.arange(6).float()[:, None] * theta)
    assert torch.allclose(torch.view_as_real(z * rot).reshape(2, 6, 8), out, atol=1e-5)
    # q_m . k_n depends on m - n only
    q, k = torch.randn(1, 8).expand(10, 8), torch.randn(1, 8).expand(10, 8)
    scores = apply_rope(q) @ apply_rope(k).T
    for offset in range(-4, 5):
        assert torch.diagonal(scores, offset).std() < 1e-4
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.randn(3, 5))


def test_arguments_are_checked():
    with pytest.raises(TypeError, match=r"the value of task 'add' must be a pair of ints \(a, b\), got str"):
        make_example("add", "57+264")
    with pytest.raises(ValueError, match="unknown task 'copy'"):
        make_example("copy", "abc")
    with pytest.raises(TypeError, match=r"rng must be a random.Random \(e.g. random.Random\(0\)\), got int"):
        random_value("add", 0)
    with pytest.raises(ValueError, match="tasks must be a non-empty list of task names"):
        generate_examples(3, tasks="add")
    with pytest.raises(ValueError, match="max_distance=8 must be larger than the 8 distances that get a bucket each"):
        relative_position_bucket(torch.arange(-3, 3), max_distance=8)
    with pytest.raises(TypeError, match="bidirectional must be True or False"):
        relative_position_bucket(torch.arange(-3, 3), bidirectional=1)
