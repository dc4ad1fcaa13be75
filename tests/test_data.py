"""The date-normalisation task: formats, determinism, disjoint splits, batching and masks."""
from __future__ import annotations

import datetime as dt

import pytest
import torch

from transformer_lib.data import (FORMATS, SOURCE_CHARS, Batch, DateTask, format_date, ordinal,
                                  padding_fraction)
from transformer_lib.masks import causal_mask


@pytest.fixture(scope="module")
def task():
    return DateTask(n_train=3_000, n_val=101, n_test=307, seed=5)


def test_formats_of_a_known_date():
    d = dt.date(1998, 3, 3)   # a Tuesday
    assert format_date(d, "ordinal") == "3rd of March 1998"
    assert format_date(d, "dmy_slash") == "03/03/98"
    assert format_date(d, "us_long") == "March 3, 1998"
    assert format_date(d, "ymd_abbrev") == "1998-Mar-03"
    assert format_date(d, "weekday") == "Tuesday 3 March 1998"
    assert format_date(d, "short") == "3 Mar 98"
    assert format_date(d, "dotted") == "3.3.1998"
    assert format_date(d, "rfc") == "Tue, 03 MAR 1998"
    with pytest.raises(ValueError, match="fmt must be one of"):
        format_date(d, "roman")


@pytest.mark.parametrize("day, text", [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"),
                                       (12, "12th"), (13, "13th"), (21, "21st"), (22, "22nd"), (23, "23rd"), (31, "31st")])
def test_ordinal(day, text):
    assert ordinal(day) == text


def test_two_digit_years_follow_the_pivot(task):
    for e in task.train + task.val + task.test:
        if e.format in ("dmy_slash", "short"):
            yy = int(e.source[-2:])
            assert int(e.target[:4]) == (1900 + yy if yy >= 50 else 2000 + yy)


def test_generation_is_deterministic(task):
    again = DateTask(n_train=3_000, n_val=101, n_test=307, seed=5)
    assert again.train == task.train and again.val == task.val and again.test == task.test
    other = DateTask(n_train=3_000, n_val=101, n_test=307, seed=6)
    assert other.test != task.test


def test_splits_are_disjoint_by_date_and_input(task):
    dates = {name: {e.target for e in task.split(name)} for name in ("train", "val", "test")}
    sources = {name: {e.source for e in task.split(name)} for name in ("train", "val", "test")}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not dates[a] & dates[b], f"{a} and {b} share dates"
        assert not sources[a] & sources[b], f"{a} and {b} share inputs"
    assert len(task.test) == 307 and len(dates["test"]) == 307       # every test date is different
    assert len(task.val) == 101 and len(task.train) == 3_000


def test_every_format_appears_and_targets_are_iso_dates(task):
    assert {e.format for e in task.train} == set(FORMATS)
    for e in task.train[:500] + task.test:
        d = dt.date.fromisoformat(e.target)
        assert format_date(d, e.format) == e.source


def test_vocabulary_covers_every_input_and_target(task):
    for e in task.train + task.val + task.test:
        assert set(e.source) <= set(SOURCE_CHARS)
        assert task.src_tokenizer.unk_id not in task.src_tokenizer.encode(e.source)
        assert task.tgt_tokenizer.unk_id not in task.tgt_tokenizer.encode(e.target)
    assert len(task.tgt_tokenizer) == 4 + 11                         # specials + 0-9 and "-"
    assert task.src_tokenizer.decode(task.src_tokenizer.encode("March 3, 1998")) == "March 3, 1998"


def test_bad_arguments_raise(task):
    with pytest.raises(ValueError, match="n_train"):
        DateTask(n_train=0)
    with pytest.raises(ValueError, match="formats"):
        DateTask(n_train=10, formats=["nope"])
    with pytest.raises(ValueError, match="split"):
        task.split("dev")
    with pytest.raises(ValueError, match="no dates for training"):
        DateTask(n_train=10, n_val=20_000, n_test=20_000)


def test_make_batch_shapes_teacher_forcing_and_masks(task):
    examples = [task.train[0], task.train[1], task.train[2]]
    batch = task.make_batch(examples)
    S = max(len(e.source) for e in examples)
    assert batch.src.shape == (3, S) and batch.tgt_in.shape == batch.tgt_out.shape == (3, 11)
    bos, eos = task.tgt_tokenizer.bos_id, task.tgt_tokenizer.eos_id
    assert (batch.tgt_in[:, 0] == bos).all() and (batch.tgt_out[:, -1] == eos).all()
    assert torch.equal(batch.tgt_in[:, 1:], batch.tgt_out[:, :-1])  # the input is the output shifted right
    for row, e in enumerate(examples):
        assert task.src_tokenizer.decode(batch.src[row]) == e.source
        assert task.tgt_tokenizer.decode(batch.tgt_out[row]) == e.target
        assert batch.src_mask[row, 0, 0].sum() == len(e.source)
    assert batch.src_mask.shape == (3, 1, 1, S) and batch.src_mask.dtype == torch.bool
    assert batch.tgt_mask.shape == (3, 1, 11, 11)
    assert torch.equal(batch.tgt_mask[0, 0], causal_mask(11))
    assert batch.num_tokens == 33 and len(batch) == 3
    with pytest.raises(ValueError):
        task.make_batch([])


def test_bucketed_batches_cover_the_split_once_with_little_padding(task):
    plain = task.batches("train", 64, shuffle=True, bucket=False, seed=1)
    bucketed = task.batches("train", 64, shuffle=True, bucket=True, seed=1)
    seen = sorted(task.src_tokenizer.decode(row) for b in bucketed for row in b.src)
    assert seen == sorted(e.source for e in task.train)
    assert sum(len(b) for b in plain) == len(task.train)
    assert padding_fraction(bucketed) < 0.05 < padding_fraction(plain)
    for b in bucketed:                                                # no column is padding in every row
        assert (b.src[:, -1] != b.pad_id).any()
        assert isinstance(b, Batch) and b.tgt_in.shape == b.tgt_out.shape
    again = task.batches("train", 64, shuffle=True, bucket=True, seed=1)
    assert all(torch.equal(a.src, b.src) for a, b in zip(bucketed, again))
    ordered = task.batches("test", 100)
    assert [task.src_tokenizer.decode(r) for r in ordered[0].src][:3] == \
        [e.source for e in sorted(task.test, key=lambda e: len(e.source))][:3]


def test_batches_of_a_list_of_examples(task):
    batches = task.batches(task.test[:10], 4, bucket=False)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert task.src_tokenizer.decode(batches[0].src[0]) == task.test[0].source


def test_batch_stream_reshuffles_every_epoch_and_is_reproducible(task):
    stream = task.batch_stream(1_000, seed=3)
    assert len(stream) == 3
    first = [stream(step) for step in range(1, 4)]
    second = [stream(step) for step in range(4, 7)]
    assert stream.epoch == 2
    first_sources = sorted(task.src_tokenizer.decode(r) for b in first for r in b.src)
    assert first_sources == sorted(e.source for e in task.train)
    assert any(a.src.shape != b.src.shape or not torch.equal(a.src, b.src) for a, b in zip(first, second))
    again = task.batch_stream(1_000, seed=3)
    assert all(torch.equal(a.src, again().src) for a in first)
    it = iter(task.batch_stream(1_000, seed=3))
    assert torch.equal(next(it).src, first[0].src)


def test_arguments_are_checked(task):
    with pytest.raises(TypeError, match="date must be a datetime.date"):
        format_date("1998-03-03", "rfc")
    with pytest.raises(TypeError, match="formats must be a list of format names, got a single str: wrap it in a list"):
        DateTask(n_train=10, n_val=2, n_test=2, formats="rfc")
    with pytest.raises(TypeError, match="make_batch takes Example objects with .source and .target"):
        task.make_batch(["3 Mar 98"])
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        task.batches("val", 8, shuffle="yes")
    with pytest.raises(TypeError, match="batches must be a list of Batch objects"):
        padding_fraction(task.make_batch(task.val[:2]))
