"""Lesson 02: the sinusoidal table, its rotation property, PositionalEncoding, learned positions."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import B, D, T
from transformer_lib import LearnedPositionalEmbedding, PositionalEncoding, sinusoidal_positional_encoding
from transformer_lib.positional import rotation_for_offset


def by_the_formula(max_len, d_model, base=10000.0):
    """The paper's formula, one number at a time, in float64."""
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    for pos in range(max_len):
        for j in range(d_model):
            angle = pos / base ** ((j - j % 2) / d_model)
            pe[pos, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
    return pe


def test_known_points():
    pe = sinusoidal_positional_encoding(50, D)
    assert pe.shape == (50, D) and pe.dtype == torch.float32
    assert torch.equal(pe[0], torch.tensor([0.0, 1.0] * (D // 2)))
    assert pe[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)
    assert pe[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-7)
    assert pe[7, 4].item() == pytest.approx(math.sin(7 / 10000 ** (4 / D)), abs=1e-6)
    assert pe[7, 5].item() == pytest.approx(math.cos(7 / 10000 ** (4 / D)), abs=1e-6)


@pytest.mark.parametrize("max_len, d_model", [(T, D), (40, 7), (3, 1), (1, 6), (17, 33)])
def test_matches_the_formula_for_even_and_odd_sizes(max_len, d_model):
    pe = sinusoidal_positional_encoding(max_len, d_model)
    assert pe.shape == (max_len, d_model)
    assert torch.allclose(pe.double(), by_the_formula(max_len, d_model), atol=1e-6)
    assert pe.abs().max() <= 1.0


def test_odd_d_model_ends_with_an_unpaired_sine():
    pe = sinusoidal_positional_encoding(20, 7)
    w_last = 1 / 10000 ** (6 / 7)
    assert torch.allclose(pe[:, -1].double(), torch.sin(torch.arange(20, dtype=torch.float64) * w_last), atol=1e-7)


def test_values_in_range_and_every_row_has_length_sqrt_d_over_2():
    pe = sinusoidal_positional_encoding(500, 64)
    assert pe.min() >= -1.0 and pe.max() <= 1.0
    assert torch.allclose(pe.norm(dim=-1), torch.full((500,), math.sqrt(32)), atol=1e-4)


def test_every_position_gets_a_different_encoding():
    pe = sinusoidal_positional_encoding(200, 16)
    distances = torch.cdist(pe, pe) + torch.eye(200)
    assert distances.min() > 1e-2


def test_the_base_sets_the_wavelengths():
    assert torch.allclose(sinusoidal_positional_encoding(9, 6, base=100.0).double(), by_the_formula(9, 6, base=100.0), atol=1e-6)
    assert not torch.allclose(sinusoidal_positional_encoding(9, 6, base=100.0), sinusoidal_positional_encoding(9, 6))


@pytest.mark.parametrize("k", [1, 3, 17, -5, 0])
@pytest.mark.parametrize("d_model", [2, D, 64])
def test_shifting_by_k_is_a_fixed_linear_map(k, d_model):
    pe = sinusoidal_positional_encoding(120, d_model).double()
    m = rotation_for_offset(k, d_model).double()
    pos = torch.arange(max(0, -k), min(120, 120 - k))
    # PE(pos + k) = M_k PE(pos) for every pos, with the same M_k
    assert torch.allclose(pe[pos] @ m.T, pe[pos + k], atol=1e-5)


def test_rotation_is_block_diagonal_orthogonal_and_composes():
    m3, m4, m7 = (rotation_for_offset(k, D).double() for k in (3, 4, 7))
    assert torch.allclose(m3 @ m3.T, torch.eye(D, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(m3 @ m4, m7, atol=1e-6)
    assert torch.allclose(rotation_for_offset(-3, D).double(), m3.T, atol=1e-7)
    assert torch.equal(rotation_for_offset(0, D), torch.eye(D))
    off_blocks = m3.clone()
    for two_i in range(0, D, 2):
        off_blocks[two_i:two_i + 2, two_i:two_i + 2] = 0
    assert torch.equal(off_blocks, torch.zeros(D, D, dtype=torch.float64))
    assert rotation_for_offset(3, D).dtype == torch.float32


def test_dot_product_depends_only_on_the_distance():
    pe = sinusoidal_positional_encoding(60, 32).double()
    dots = pe @ pe.T
    for k in range(-20, 21):
        diagonal = dots.diagonal(offset=k)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-6)
        assert diagonal[0].item() == pytest.approx(sum(math.cos(k / 10000 ** (2 * i / 32)) for i in range(16)), abs=1e-6)
    assert torch.allclose(dots, dots.T)
    # largest at distance 0, and on average smaller far away than near
    assert torch.all(dots.diagonal() >= dots.max(dim=1).values - 1e-9)
    assert dots.diagonal(offset=2).mean() > dots.diagonal(offset=30).mean()


@pytest.mark.parametrize("call, error, words", [
    (lambda: sinusoidal_positional_encoding(0, D), ValueError, "max_len must be a positive int, got 0"),
    (lambda: sinusoidal_positional_encoding(T, -2), ValueError, "d_model must be a positive int, got -2"),
    (lambda: sinusoidal_positional_encoding(2.0, D), TypeError, "max_len must be a positive int, got float"),
    (lambda: sinusoidal_positional_encoding(T, D, base=1.0), ValueError, "base must be a finite number greater than 1"),
    (lambda: sinusoidal_positional_encoding(T, D, base="10000"), TypeError, "base must be a number"),
    (lambda: rotation_for_offset(1, 7), ValueError, "d_model must be even, got d_model=7"),
    (lambda: rotation_for_offset(1.5, D), TypeError, "k must be an int"),
    (lambda: rotation_for_offset(1, 0), ValueError, "d_model must be a positive int"),
])
def test_bad_arguments_raise_clear_errors(call, error, words):
    with pytest.raises(error, match=words):
        call()


# ---------------------------------------------------------------- PositionalEncoding
def test_positional_encoding_adds_the_table_to_batch_first_input():
    module = PositionalEncoding(D, max_len=20)
    x = torch.randn(B, T, D)
    out = module(x)
    table = sinusoidal_positional_encoding(20, D)
    assert out.shape == (B, T, D)
    for b in range(B):                                   # the same rows for every sequence of the batch
        assert torch.allclose(out[b], x[b] + table[:T])
    assert torch.allclose(module(x, offset=4), x + table[4:4 + T])


def test_positional_encoding_buffer_is_not_saved_and_moves_with_the_module():
    module = PositionalEncoding(D, max_len=20)
    assert "pe" in dict(module.named_buffers())
    assert list(module.state_dict()) == [] and list(module.parameters()) == []
    module.load_state_dict({})                          # strict loading of an empty state works
    module = module.to(torch.float64)
    assert module.pe.dtype == torch.float64
    assert module(torch.zeros(1, 3, D, dtype=torch.float64)).dtype == torch.float64


def test_positional_encoding_dropout_only_in_training():
    module = PositionalEncoding(D, max_len=20, dropout=0.5)
    x = torch.randn(B, T, D)
    assert torch.equal(module.eval()(x), x + module.pe[:T])
    out = module.train()(x)
    assert (out == 0).float().mean() > 0.2


@pytest.mark.parametrize("module", [PositionalEncoding(D, max_len=8), LearnedPositionalEmbedding(D, 8)],
                         ids=["sinusoidal", "learned"])
def test_too_long_or_misshaped_input_is_a_clear_error(module):
    with pytest.raises(ValueError, match="sequence length 9 is longer than max_len=8"):
        module(torch.zeros(1, 9, D))
    with pytest.raises(ValueError, match=r"positions 5\.\.9 \(offset 5, length 5\) do not fit max_len=8"):
        module(torch.zeros(1, 5, D), offset=5)
    with pytest.raises(ValueError, match="expected d_model=12"):
        module(torch.zeros(1, 3, D + 1))
    with pytest.raises(ValueError, match="3 dimensions"):
        module(torch.zeros(3, D))
    with pytest.raises(TypeError, match="float tensor"):
        module(torch.zeros(1, 3, D, dtype=torch.long))
    with pytest.raises(ValueError, match="offset must be >= 0"):
        module(torch.zeros(1, 3, D), offset=-1)
    with pytest.raises(TypeError, match="offset must be an int"):
        module(torch.zeros(1, 3, D), offset=1.0)
    assert module(torch.zeros(1, 8, D)).shape == (1, 8, D)        # exactly max_len is fine


@pytest.mark.parametrize("make, error, words", [
    (lambda: PositionalEncoding(D, dropout=1.0), ValueError, r"dropout must be in \[0, 1\)"),
    (lambda: PositionalEncoding(D, max_len=0), ValueError, "max_len must be a positive int"),
    (lambda: LearnedPositionalEmbedding("12", 8), TypeError, "d_model must be a positive int"),
])
def test_modules_reject_bad_arguments(make, error, words):
    with pytest.raises(error, match=words):
        make()


# ---------------------------------------------------------------- LearnedPositionalEmbedding
def test_learned_positions_add_one_trained_row_per_position():
    module = LearnedPositionalEmbedding(max_len=9, d_model=D)
    x = torch.randn(B, T, D)
    assert torch.allclose(module(x), x + module.weight[:T])
    assert torch.allclose(module(x, offset=2), x + module.weight[2:2 + T])
    assert sum(p.numel() for p in module.parameters()) == 9 * D
    assert "weight" in list(module.state_dict())[0]
    module(x).sum().backward()
    assert module.weight.grad[:T].abs().sum() > 0 and torch.equal(module.weight.grad[T:], torch.zeros(9 - T, D))


# ---------------------------------------------------------------- pictures and the explorer
def test_pictures_have_titles_and_labels():
    import matplotlib.pyplot as plt

    from transformer_lib.plotting import (plot_pe_curves, plot_pe_dot_products, plot_positional_encoding,
                                          plot_rotation_matrix)

    pe = sinusoidal_positional_encoding(30, 16)
    axes = [plot_positional_encoding(pe), plot_pe_curves(pe, [0, 5])]
    axes += plot_pe_dot_products(pe, starts=(0, 10), max_offset=10).axes
    axes += plot_rotation_matrix(rotation_for_offset(2, 16), k=2).axes
    axes = [ax for ax in axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 5
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    plt.close("all")


def test_explorer_redraws_when_a_slider_moves():
    from transformer_lib.plotting import draw_positional_encoding, positional_encoding_explorer

    calls = []

    def table(max_len, d_model):
        calls.append((max_len, d_model))
        return sinusoidal_positional_encoding(max_len, d_model)

    ex = positional_encoding_explorer(d_model=16, max_len=30, dimension=2, table_fn=table)
    first = ex.image.value
    assert first[:4] == b"\x89PNG" and calls == [(30, 16)]
    ex.controls["d_model"].value = 32
    assert ex.image.value != first and calls[-1] == (30, 32)
    second = ex.image.value
    ex.controls["dimension"].value = 9
    assert ex.image.value != second
    fig = draw_positional_encoding(d_model=4, max_len=10, dimension=100)     # dimension is clipped
    assert "pair i=1" in [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][-1].get_title()
