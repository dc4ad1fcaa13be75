"""Lesson 02's exercise checks accept correct functions and name each typical mistake."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from transformer_lib.checks import CheckFailed, check_rotation_for_offset, check_sinusoidal_positional_encoding
from transformer_lib.positional import rotation_for_offset, sinusoidal_positional_encoding


@pytest.mark.parametrize("check, reference", [
    (check_sinusoidal_positional_encoding, sinusoidal_positional_encoding),
    (check_rotation_for_offset, rotation_for_offset),
], ids=["sinusoidal", "rotation"])
def test_reference_passes_on_all_cases(check, reference, capsys):
    assert check(reference) is reference
    assert "is correct on all 5 test cases" in capsys.readouterr().out


# ---------------------------------------------------------------- sinusoidal_positional_encoding
def annotated_transformer(max_len, d_model):
    """The Annotated Transformer's float32 version (exp/log form), made to work for odd d_model."""
    pe = torch.zeros(max_len, d_model)
    position = torch.arange(0, max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2) * -(math.log(10000.0) / d_model))
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
    return pe


def with_numpy_loops(max_len, d_model):
    pe = np.zeros((max_len, d_model))
    for pos in range(max_len):
        for j in range(d_model):
            angle = pos / 10000 ** ((j - j % 2) / d_model)
            pe[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return torch.from_numpy(pe).float()


@pytest.mark.parametrize("other", [annotated_transformer, with_numpy_loops])
def test_sinusoidal_accepts_other_correct_versions(other):
    assert check_sinusoidal_positional_encoding(other) is other


def table(max_len, d_model, base=10000.0, first=torch.sin, second=torch.cos, exponent=None, start=0, multiply=False):
    pos = torch.arange(start, start + max_len, dtype=torch.float32).unsqueeze(1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)
    div = base ** (two_i / d_model if exponent is None else exponent(two_i, d_model))
    angle = pos * div if multiply else pos / div
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = first(angle)
    pe[:, 1::2] = second(angle[:, : d_model // 2])
    return pe


def even_only(max_len, d_model):
    """The usual even-only code: the cosine assignment breaks for an odd d_model."""
    pos = torch.arange(max_len).unsqueeze(1)
    div = 10000.0 ** (torch.arange(0, d_model, 2) / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos / div)
    pe[:, 1::2] = torch.cos(pos / div)
    return pe


def refuses_odd_d_model(max_len, d_model):
    """A learner's own NotImplementedError for the odd case: judged, not taken for "not started"."""
    if d_model % 2:
        raise NotImplementedError("odd d_model is not supported")
    return table(max_len, d_model)


def padded_for_odd(max_len, d_model):
    """Builds an even table one column too wide for an odd d_model."""
    return table(max_len, d_model + d_model % 2)


def own_exponent(max_len, d_model):
    pos = torch.arange(max_len).unsqueeze(1)
    div = 10000.0 ** (torch.arange(d_model) / d_model)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(pos / div[0::2])
    pe[:, 1::2] = torch.cos(pos / div[1::2])
    return pe


def halves(max_len, d_model):
    pe = table(max_len, d_model)
    return torch.cat([pe[:, 0::2], pe[:, 1::2]], dim=1)


@pytest.mark.parametrize("wrong, words", [
    (lambda L, D: table(L, D, first=torch.cos, second=torch.sin), "sin and cos are swapped"),
    (halves, "first half"),
    (lambda L, D: table(L, D, exponent=lambda t, d: t / 2 / d), "exponent is i/d_model"),
    (lambda L, D: table(L, D, exponent=lambda t, d: 2 * t / d), "exponent is 4i/d_model"),
    (own_exponent, r"\(2i\+1\)/d_model"),
    (lambda L, D: table(L, D, multiply=True), "divide by it"),
    (lambda L, D: table(L, D, start=1), "positions start at 1"),
    (lambda L, D: table(L, D, base=1000.0), "the base is 1000, the paper uses 10000"),
    (lambda L, D: table(L, D, base=100000.0), "the base is 100000"),
    (lambda L, D: table(L, D, base=math.e), "base is e"),
    (lambda L, D: table(L, D).T, r"positions and dimensions are transposed"),
    (lambda L, D: table(L, D).T.contiguous() if L == D else table(L, D), "rows and columns are transposed"),
    (even_only, r"works for even d_model but raised RuntimeError for the odd d_model=7"),
    (padded_for_odd, "one column too many"),
    (lambda L, D: table(L, D).double(), "dtype torch.float32"),
    (lambda L, D: table(L, D).numpy(), "should be a torch.Tensor"),
    (lambda L, D: table(L, D) * 0.5, "largest difference"),
    (refuses_odd_d_model,
     r"works for even d_model but raised NotImplementedError for the odd d_model=7 \(odd d_model is not supported\)"),
    (lambda L, D: table(L, D) * 0.5, r"first wrong entry is PE\[0, 1\] = 0\.5; it should be cos\(0 / 10000\^\(0/12\)\) = 1"),
    (lambda L, D: table(L, D).double(), r"return result\.float\(\)"),
    (lambda L, D: None, "forget the `return` statement"),
])
def test_sinusoidal_rejects_typical_mistakes(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_sinusoidal_positional_encoding(wrong)


# ---------------------------------------------------------------- rotation_for_offset
def with_block_diag(k, d_model):
    blocks = []
    for two_i in range(0, d_model, 2):
        a = k / 10000 ** (two_i / d_model)
        blocks.append(torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]))
    return torch.block_diag(*blocks)


def rotation(k, d_model, angle, transpose=False):
    m = torch.zeros(d_model, d_model)
    for two_i in range(0, d_model, 2):
        c, s = math.cos(angle(two_i, d_model)), math.sin(angle(two_i, d_model))
        m[two_i:two_i + 2, two_i:two_i + 2] = torch.tensor([[c, s], [-s, c]])
    return m.T.contiguous() if transpose else m


def overlapping_blocks(k, d_model):
    """Indexes the blocks with the pair number i instead of the column 2i: blocks overlap."""
    m = torch.zeros(d_model, d_model)
    for i in range(d_model // 2):
        a = k / 10000 ** (2 * i / d_model)
        m[i:i + 2, i:i + 2] = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return m


def test_rotation_accepts_another_correct_version():
    assert check_rotation_for_offset(with_block_diag) is with_block_diag


@pytest.mark.parametrize("wrong, words", [
    (lambda k, D: rotation(k, D, lambda t, d: k / 10000 ** (t / d), transpose=True), "PE\\[pos - k\\]"),
    (lambda k, D: rotation(k, D, lambda t, d: float(k)), "same angle k"),
    (lambda k, D: rotation(k, D, lambda t, d: k / 10000 ** (t / 2 / d)), "exponent i/d_model"),
    (lambda k, D: rotation(k, D, lambda t, d: k * 10000 ** (t / d)), "divide k by"),
    (lambda k, D: torch.eye(D), "identity"),
    (lambda k, D: rotation(k, D, lambda t, d: k / 10000 ** (t / d)).double(), "dtype torch.float32"),
    (lambda k, D: torch.zeros(D // 2, D), r"should have shape \(8, 8\)"),
    (lambda k, D: rotation(k, D, lambda t, d: k / 10000 ** (t / d)) * 1.1, "largest difference"),
    (lambda k, D: rotation(k, D, lambda t, d: k / 10000 ** (t / d)) * 1.1,
     r"first wrong entry is \[0, 0\] = 0\.5943, expected 0\.5403: the block of pair i = 0"),
    (overlapping_blocks, r"Entry \[1, 2\] is 0\.09983 but lies outside the 2×2 blocks"),
])
def test_rotation_rejects_typical_mistakes(wrong, words):
    with pytest.raises(CheckFailed, match=words):
        check_rotation_for_offset(wrong)


def test_a_rotation_that_only_fails_for_negative_offsets_is_caught():
    wrong = lambda k, D: rotation_for_offset(abs(k), D)  # noqa: E731 - forgets the sign of k
    with pytest.raises(CheckFailed, match=r"k=-2, d_model=4.*PE\[pos - k\]"):
        check_rotation_for_offset(wrong)
