"""Lesson 01: one-hot lookup, scaled embeddings, cosine similarity, TokenEmbedding."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import B, D, T
from transformer_lib import TokenEmbedding
from transformer_lib.embeddings import cosine_similarity, one_hot_lookup, scaled_embedding

V = 11


def test_one_hot_times_matrix_is_a_row_lookup():
    weight = torch.randn(V, D)
    ids = torch.randint(0, V, (B, T))
    out = one_hot_lookup(ids, weight)
    assert out.shape == (B, T, D)
    assert torch.equal(out, weight[ids])                  # exact: every other term is 0 * x
    assert torch.equal(one_hot_lookup(torch.tensor(3), weight), weight[3])


def test_one_hot_lookup_works_when_the_largest_id_is_missing():
    weight = torch.randn(V, D)
    ids = torch.tensor([[0, 1, 2]])                       # F.one_hot(ids) alone would give width 3
    assert torch.equal(one_hot_lookup(ids, weight), weight[ids])


def test_scaled_embedding_multiplies_by_sqrt_d_model():
    weight = torch.randn(V, D)
    ids = torch.randint(0, V, (B, T))
    out = scaled_embedding(ids, weight)
    assert out.shape == (B, T, D)
    assert torch.allclose(out, weight[ids] * math.sqrt(D))
    assert torch.allclose(out.norm(dim=-1), weight[ids].norm(dim=-1) * math.sqrt(D))


def test_cosine_similarity_properties():
    a, b = torch.randn(5, D), torch.randn(7, D)
    sim = cosine_similarity(a, b)
    assert sim.shape == (5, 7)
    assert torch.allclose(sim, F.cosine_similarity(a[:, None], b[None], dim=-1), atol=1e-6)
    assert sim.abs().max() <= 1 + 1e-6
    assert torch.allclose(cosine_similarity(a, a).diagonal(), torch.ones(5), atol=1e-6)
    # invariant to (positive) scaling, sign flips give -1 times
    assert torch.allclose(cosine_similarity(3.0 * a, 0.5 * b), sim, atol=1e-6)
    assert torch.allclose(cosine_similarity(-a, b), -sim, atol=1e-6)
    assert torch.allclose(cosine_similarity(b, a), sim.T, atol=1e-6)


def test_cosine_similarity_of_a_zero_vector_is_zero_not_nan():
    a = torch.zeros(1, D)
    assert torch.equal(cosine_similarity(a, torch.randn(3, D)), torch.zeros(1, 3))


@pytest.mark.parametrize("call, error, words", [
    (lambda: one_hot_lookup(torch.tensor([0, V]), torch.randn(V, D)), ValueError, r"ids must be in \[0, 11\).*0 to 11"),
    (lambda: one_hot_lookup(torch.tensor([-1]), torch.randn(V, D)), ValueError, r"\[0, 11\)"),
    (lambda: one_hot_lookup(torch.tensor([0.0]), torch.randn(V, D)), TypeError, "integer tensor"),
    (lambda: one_hot_lookup(torch.tensor([0]), torch.randn(V)), ValueError, "weight must have 2 dimensions"),
    (lambda: scaled_embedding(torch.tensor([0]), torch.ones(V, D, dtype=torch.long)), TypeError, "float tensor"),
    (lambda: scaled_embedding([0, 1], torch.randn(V, D)), TypeError, "torch.Tensor"),
    (lambda: cosine_similarity(torch.randn(3, D), torch.randn(4, D + 1)), ValueError, r"same number of features.*\(3, 12\).*\(4, 13\)"),
    (lambda: cosine_similarity(torch.randn(D), torch.randn(4, D)), ValueError, "2 dimensions"),
])
def test_functions_reject_bad_arguments(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_token_embedding_scales_its_lookup():
    emb = TokenEmbedding(V, D)
    ids = torch.randint(0, V, (B, T))
    out = emb(ids)
    assert out.shape == (B, T, D)
    assert torch.allclose(out, emb.weight[ids] * math.sqrt(D))
    assert emb.weight is emb.embedding.weight and emb.weight.shape == (V, D)
    assert "scale=sqrt(12)" in repr(emb)


def test_token_embedding_gradient_reaches_only_the_used_rows():
    emb = TokenEmbedding(V, D)
    emb(torch.tensor([[1, 4, 4]])).sum().backward()
    used = emb.weight.grad.abs().sum(dim=1) != 0
    assert used.nonzero().flatten().tolist() == [1, 4]
    assert torch.allclose(emb.weight.grad[4], torch.full((D,), 2 * math.sqrt(D)))   # twice, times the scale


def test_token_embedding_padding_row_is_zero_and_frozen():
    emb = TokenEmbedding(V, D, padding_idx=0)
    out = emb(torch.tensor([[0, 2, 0]]))
    assert torch.equal(out[0, 0], torch.zeros(D))
    out.sum().backward()
    assert torch.equal(emb.weight.grad[0], torch.zeros(D))


@pytest.mark.parametrize("call, error, words", [
    (lambda: TokenEmbedding(V, D)(torch.tensor([[0, V]])), ValueError, r"token ids must be in \[0, 11\)"),
    (lambda: TokenEmbedding(V, D)(torch.tensor([[-1, 0]])), ValueError, "from -1 to 0"),
    (lambda: TokenEmbedding(V, D)(torch.zeros(1, 3)), TypeError, "integer tensor"),
    (lambda: TokenEmbedding(0, D), ValueError, "vocab_size must be a positive int"),
    (lambda: TokenEmbedding(V, 2.5), TypeError, "d_model must be a positive int"),
    (lambda: TokenEmbedding(V, D, padding_idx=V), ValueError, "padding_idx"),
])
def test_token_embedding_rejects_bad_arguments(call, error, words):
    with pytest.raises(error, match=words):
        call()


def test_plots_return_figures():
    import matplotlib.pyplot as plt

    from transformer_lib.plotting import plot_cosine_similarity, plot_embedding_scale, plot_one_hot

    fig = plot_one_hot(F.one_hot(torch.tensor([1, 0, 2]), 4), ["a", " ", "b"], ["<pad>", " ", "a", "b"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][1] == "␣"
    fig2 = plot_embedding_scale([8, 16], {"x": [1.0, 1.0]}, {"x": torch.randn(10)}, d_model_shown=16)
    fig3 = plot_cosine_similarity({"a": torch.eye(3), "b": -torch.eye(3)}, ["x", "y", "z"])
    assert len(fig2.axes) == 2 and len(fig3.axes) == 3       # two maps and one colour bar
    assert all(ax.get_title() for ax in fig2.axes)
    plt.close("all")


@pytest.mark.parametrize("embed", [lambda ids: TokenEmbedding(V, D)(ids),
                                   lambda ids: one_hot_lookup(ids, torch.randn(V, D)),
                                   lambda ids: scaled_embedding(ids, torch.randn(V, D))],
                         ids=["TokenEmbedding", "one_hot_lookup", "scaled_embedding"])
def test_uint8_ids_are_an_error_and_int32_ids_work(embed):
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(TypeError, match=r"ids must be an integer tensor of token ids in int64 \(torch.long\) or int32, "
                                        r"got dtype torch.uint8: convert it with ids.long\(\)"):
        embed(ids.to(torch.uint8))           # indexing with uint8 would treat it as a mask
    torch.manual_seed(0)
    a = embed(ids.int())
    torch.manual_seed(0)
    assert torch.equal(a, embed(ids))


def test_cosine_similarity_checks_eps():
    with pytest.raises(ValueError, match="eps must be a positive number, got -1.0"):
        cosine_similarity(torch.randn(2, D), torch.randn(3, D), eps=-1)
