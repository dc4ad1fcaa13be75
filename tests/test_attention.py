"""Scaled dot-product attention (lesson 03): against PyTorch, masks, dtypes, gradients, errors."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import B, D_K, H, S, T
from transformer_lib.attention import attention_scores, check_attention_inputs, scaled_dot_product_attention, softmax
from transformer_lib.masks import causal_mask

D_V = 6


def qkv(dtype=torch.float32, T=T, S=S, batch=(B, H)):
    return (torch.randn(*batch, T, D_K, dtype=dtype), torch.randn(*batch, S, D_K, dtype=dtype),
            torch.randn(*batch, S, D_V, dtype=dtype))


def padding(lengths=(S, 4)) -> torch.Tensor:
    """(B, 1, 1, S): sequence b has lengths[b] real keys."""
    return (torch.arange(S)[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :]


def with_empty_row() -> torch.Tensor:
    """(T, S) mask in which query 2 may attend to nothing and every other query to something."""
    mask = torch.rand(T, S) < 0.5
    mask[:, 0] = True
    mask[2] = False
    return mask


def naive(q, k, v, mask=None):
    """Attention written out in float64, one query at a time (an independent reference)."""
    q, k, v = q.double(), k.double(), v.double()
    batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    q, k, v = q.expand(*batch, *q.shape[-2:]), k.expand(*batch, *k.shape[-2:]), v.expand(*batch, *v.shape[-2:])
    allowed = torch.ones(*batch, q.shape[-2], k.shape[-2], dtype=torch.bool) if mask is None \
        else mask.expand(*batch, q.shape[-2], k.shape[-2])
    out = torch.zeros(*batch, q.shape[-2], v.shape[-1], dtype=torch.float64)
    weights = torch.zeros(*batch, q.shape[-2], k.shape[-2], dtype=torch.float64)
    for index in itertools.product(*(range(n) for n in (*batch, q.shape[-2]))):
        scores = k[index[:-1]] @ q[index] / math.sqrt(q.shape[-1])
        ok = allowed[index]
        if ok.any():
            e = torch.where(ok, torch.exp(scores - scores[ok].max()), torch.zeros(()))
            weights[index] = e / e.sum()
            out[index] = weights[index] @ v[index[:-1]]
    return out, weights


MASKS = {"none": lambda: None, "padding": padding, "causal": lambda: causal_mask(T)[:, :T],
         "empty row": with_empty_row}


@pytest.mark.parametrize("name", list(MASKS))
def test_equal_to_pytorch_and_to_a_naive_loop(name):
    mask = MASKS[name]()
    q, k, v = qkv(S=T if name == "causal" else S)
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    assert out.shape == (B, H, T, D_V) and w.shape == (B, H, T, k.shape[-2])
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-6, rtol=1e-5)
    ref_out, ref_w = naive(q, k, v, mask)
    torch.testing.assert_close(out.double(), ref_out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w.double(), ref_w, atol=1e-6, rtol=1e-5)


def test_weights_sum_to_one_over_the_keys_and_blocked_keys_get_zero():
    q, k, v = qkv()
    mask = padding()
    _, w = scaled_dot_product_attention(q, k, v, mask=mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, T))
    assert (w.masked_select(~mask.expand_as(w)) == 0).all()


def test_causal_mask_equals_is_causal():
    q, k, v = qkv(S=T)
    out, w = scaled_dot_product_attention(q, k, v, mask=causal_mask(T))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6, rtol=1e-5)
    assert (w.triu(1) == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_fully_masked_row_gives_zero_weights_output_and_finite_gradients(dtype):
    q, k, v = (x.requires_grad_() for x in qkv(dtype))
    mask = with_empty_row()
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    assert out.dtype == w.dtype == dtype
    assert not out.isnan().any() and not w.isnan().any()
    assert (w[..., 2, :] == 0).all() and (out[..., 2, :] == 0).all()
    (out.float() ** 2).sum().backward()
    for x in (q, k, v):
        assert torch.isfinite(x.grad).all()
    assert (q.grad[..., 2, :] == 0).all()            # the empty query influences nothing


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
def test_low_and_high_precision_agree_with_float64(dtype, tol):
    q, k, v = qkv(torch.float64)
    mask = padding()
    ref_out, ref_w = scaled_dot_product_attention(q, k, v, mask=mask)
    out, w = scaled_dot_product_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask=mask)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), ref_out, atol=tol * 4, rtol=tol * 4)
    torch.testing.assert_close(w.double(), ref_w, atol=tol, rtol=tol * 4)


def test_gradients_flow_and_match_finite_differences():
    q, k, v = (x.requires_grad_() for x in qkv(torch.float64, T=3, S=4, batch=(2,)))
    mask = torch.tensor([[True, True, False, True], [False, False, False, False], [True, False, False, False]])
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask=mask), (q, k, v))
    out, _ = scaled_dot_product_attention(q, k, v)
    out.sum().backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in (q, k, v))


def test_batch_dimensions_broadcast():
    q = torch.randn(B, H, T, D_K)
    k, v = torch.randn(1, H, S, D_K), torch.randn(1, 1, S, D_V)
    out, w = scaled_dot_product_attention(q, k, v)
    ref_out, ref_w = scaled_dot_product_attention(q, k.expand(B, H, S, D_K), v.expand(B, H, S, D_V))
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


@pytest.mark.parametrize("batch", [(), (B,), (1,), (1, 1)])
def test_any_number_of_batch_dimensions_batch_of_one_and_single_query(batch):
    q, k, v = qkv(T=1, batch=batch)
    mask = torch.tensor([True, False, True, True, False, True, True])       # (S,) broadcasts to (..., 1, S)
    out, w = scaled_dot_product_attention(q, k, v, mask=mask)
    assert out.shape == (*batch, 1, D_V) and w.shape == (*batch, 1, S)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask[None]), atol=1e-6, rtol=1e-5)
    ref_out, ref_w = naive(q, k, v, mask)
    torch.testing.assert_close(w.double(), ref_w, atol=1e-6, rtol=1e-5)


def test_dropout_only_when_asked():
    q, k, v = qkv()
    out0, w0 = scaled_dot_product_attention(q, k, v)
    out1, w1 = scaled_dot_product_attention(q, k, v, dropout_p=0.0)
    assert torch.equal(out0, out1) and torch.equal(w0, w1)
    torch.manual_seed(1)
    _, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    dropped = w == 0
    assert dropped.any() and (~dropped).any()
    torch.testing.assert_close(w[~dropped], 2 * w0[~dropped])           # kept weights are scaled by 1 / (1 - p)


def test_the_lesson_steps_equal_pytorch():
    q, k, _ = qkv()
    torch.testing.assert_close(attention_scores(q, k), q @ k.transpose(-2, -1) / 2.0)
    x = torch.randn(B, T, S) * 50
    torch.testing.assert_close(softmax(x), torch.softmax(x, dim=-1))
    torch.testing.assert_close(softmax(x, dim=0), torch.softmax(x, dim=0))
    big = torch.tensor([1000.0, 1001.0, -5000.0])
    assert torch.isfinite(softmax(big)).all()


@pytest.mark.parametrize("args, error, words", [
    ((torch.randn(B, T, 4), torch.randn(B, S, 5), torch.randn(B, S, D_V)), ValueError,
     r"same feature size d_k.*\(2, 5, 4\).*\(2, 7, 5\)"),
    ((torch.randn(B, T, 4), torch.randn(B, S, 4), torch.randn(B, S + 1, D_V)), ValueError,
     r"same length S.*\(2, 7, 4\).*\(2, 8, 6\)"),
    ((torch.randn(B, T, 4), torch.randn(3, S, 4), torch.randn(3, S, D_V)), ValueError, "do not broadcast"),
    ((torch.randn(B, T, 4), torch.randn(B, S, 4), torch.randn(B, S, D_V), torch.ones(T, S + 1, dtype=torch.bool)),
     ValueError, r"mask of shape \(5, 8\) cannot broadcast to the scores' shape \(2, 5, 7\)"),
    ((torch.randn(B, T, 4), torch.randn(B, S, 4), torch.randn(B, S, D_V), torch.ones(3, 1, T, S, dtype=torch.bool)),
     ValueError, "cannot broadcast"),
    ((torch.randn(B, T, 4), torch.randn(B, S, 4), torch.randn(B, S, D_V), torch.ones(T, S)), TypeError,
     r"bool.*True = may attend.*torch.float32"),
    ((torch.randn(B, T, 4), torch.randn(B, S, 4), torch.randn(B, S, D_V), [[True]]), TypeError, "bool tensor"),
    ((torch.ones(B, T, 4, dtype=torch.long), torch.randn(B, S, 4), torch.randn(B, S, D_V)), TypeError, "float"),
    ((torch.randn(4), torch.randn(S, 4), torch.randn(S, D_V)), ValueError, "at least 2 dimensions"),
    ((torch.randn(T, 4).numpy(), torch.randn(S, 4), torch.randn(S, D_V)), TypeError, "torch.Tensor"),
])
def test_clear_errors(args, error, words):
    with pytest.raises(error, match=words):
        scaled_dot_product_attention(*args)
    with pytest.raises(error, match=words):
        check_attention_inputs(*args)


def test_q_k_v_of_different_dtypes_are_named():
    q, k, v = qkv()
    with pytest.raises(TypeError, match=r"q, k, v must have the same dtype, got q torch.float32, k torch.float64, "
                                        r"v torch.float32: convert them with .to\(q.dtype\)"):
        scaled_dot_product_attention(q, k.double(), v)


# B == T: a (B, S) padding mask has the shape of a (T, S) mask, and broadcasting would read it as one
def ambiguous_case():
    q, k, v = qkv(batch=(T, H))                                  # B = T = 5 sequences
    lengths = torch.tensor([7, 4, 2, 6, 3])
    pad_2d = torch.arange(S)[None, :] < lengths[:, None]         # (B, S) = (5, 7): the mistake
    return q, k, v, pad_2d


def test_a_b_s_padding_mask_is_an_error_when_b_equals_t():
    q, k, v, pad_2d = ambiguous_case()
    words = (r"mask of shape \(5, 7\) is ambiguous for scores of shape \(5, 3, 5, 7\) \(B, H, T, S\).*read as T \(5\), "
             r"but the batch B has the same size.*padding_mask\(ids, pad_id\), which gives \(B, 1, 1, S\), or "
             r"mask\[:, None, None\].*mask\[None, None\], of shape \(1, 1, 5, 7\)")
    with pytest.raises(ValueError, match=words):
        scaled_dot_product_attention(q, k, v, mask=pad_2d)
    # the two fixes the message names: each is unambiguous, and they mean different things
    as_padding, _ = scaled_dot_product_attention(q, k, v, mask=pad_2d[:, None, None])
    as_queries, _ = scaled_dot_product_attention(q, k, v, mask=pad_2d[None, None])
    for b, n in enumerate([7, 4, 2, 6, 3]):                      # padding: sequence b sees its n real keys
        ref, _ = scaled_dot_product_attention(q[b], k[b, :, :n], v[b, :, :n])
        torch.testing.assert_close(as_padding[b], ref)
    assert not torch.allclose(as_padding, as_queries)


def test_masks_that_mean_the_same_either_way_are_accepted_when_b_equals_t():
    q, k, v = qkv(batch=(T, H))
    causal = causal_mask(T)                                      # (T, T): the usual 2-D mask
    out, w = scaled_dot_product_attention(q, k[..., :T, :], v[..., :T, :], mask=causal)
    torch.testing.assert_close(out, scaled_dot_product_attention(q, k[..., :T, :], v[..., :T, :], mask=causal[None, None])[0])
    cached = torch.ones(T, S, dtype=torch.bool).tril(S - T)      # causal with S - T cached keys
    scaled_dot_product_attention(q, k, v, mask=cached)
    same_rows = (torch.arange(S) < 4).expand(T, S)               # every query the same keys: both readings agree
    scaled_dot_product_attention(q, k, v, mask=same_rows)
    with pytest.raises(ValueError, match="ambiguous"):           # the values are looked at, not only the shape
        scaled_dot_product_attention(q, k, v, mask=~cached)


def test_b_s_mask_with_b_not_t_names_the_padding_fix():
    q, k, v = qkv()                                              # B = 2, T = 5
    with pytest.raises(ValueError, match=r"mask of shape \(2, 7\) cannot broadcast .*read as T, not as the batch B\. "
                                         r"For a mask of shape \(B, S\), use padding_mask\(ids, pad_id\)"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(B, S, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(2, 5, 7\) cannot broadcast .*read as H.*\(B, T, S\), use mask\[:, None\], "
                                         r"of shape \(2, 1, 5, 7\)"):
        scaled_dot_product_attention(q, k, v, mask=torch.ones(B, T, S, dtype=torch.bool))


def test_a_b_t_s_mask_is_an_error_when_b_equals_h():
    q, k, v = qkv(batch=(H, H))
    mask = torch.rand(H, T, S) < 0.5
    with pytest.raises(ValueError, match=r"\(3, 5, 7\) is ambiguous .*read as H \(3\).*mask\[:, None\], of shape "
                                         r"\(3, 1, 5, 7\).*mask\[None\], of shape \(1, 3, 5, 7\)"):
        scaled_dot_product_attention(q, k, v, mask=mask)
    scaled_dot_product_attention(*qkv(batch=(B, H)), mask=mask)   # B != H: a (H, T, S) mask per head is fine


@pytest.mark.parametrize("p", [-0.1, 1.0, "0.1"])
def test_bad_dropout_is_rejected(p):
    with pytest.raises((TypeError, ValueError), match="dropout_p"):
        scaled_dot_product_attention(*qkv(), dropout_p=p)


# ---------------------------------------------------------------------------- pictures and the explorer


def test_pictures_have_titles_and_axis_labels():
    import matplotlib.pyplot as plt

    from transformer_lib.plotting import (plot_masks, plot_query_attention, plot_rnn_vs_attention,
                                          plot_scaling_experiment, plot_weight_bars)

    d_ks = [1, 2, 4]
    data = {"unscaled": [1.0, 2.0, 4.0], "scaled": [1.0, 1.0, 1.0]}
    figs = [plot_scaling_experiment(d_ks, data, data, data), plot_masks({"causal": causal_mask(3)}, list("abc"), list("abc")),
            plot_rnn_vs_attention([8, 16], [1.0, 2.0], [0.5, 2.0]),
            plot_query_attention(torch.softmax(torch.randn(3, 3), -1), list("abc"), query=1),
            plot_weight_bars(torch.tensor([0.2, 0.8]), ["x", "y"]).figure]
    axes = [ax for fig in figs for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 3 + 1 + 1 + 2 + 1
    for ax in axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        plot_query_attention(torch.ones(3, 4), list("abc"), query=0)
    with pytest.raises(ValueError, match="query must be a position"):
        plot_query_attention(torch.ones(3, 3), list("abc"), query=3)
    with pytest.raises(ValueError, match="for 2 keys"):
        plot_weight_bars(torch.ones(3), ["x", "y"])
    plt.close("all")


def test_attention_explorer_redraws_when_a_control_changes():
    from transformer_lib.plotting import attention_explorer

    calls = []

    def attend(tokens, sharpness):
        calls.append((tuple(tokens), sharpness))
        scores = torch.arange(len(tokens) ** 2, dtype=torch.float32).reshape(len(tokens), -1).sin()
        return torch.softmax(sharpness * 3 * scores, dim=-1)

    ex = attention_explorer({"a b c d": "a b c d".split(), "e f": ["e", "f"]}, attend)
    first = ex.image.value
    assert first[:4] == b"\x89PNG" and calls[-1] == (("a", "b", "c", "d"), 1.0)
    ex.controls["query"].value = 3
    second = ex.image.value
    assert second != first
    ex.controls["sharpness"].value = 4.0
    assert ex.image.value != second and calls[-1][1] == 4.0
    third = ex.image.value
    ex.controls["sentence"].value = "e f"                       # the query choices follow the sentence
    assert [label for label, _ in ex.controls["query"].options] == ["0: e", "1: f"]
    assert ex.image.value != third and calls[-1][0] == ("e", "f")
    with pytest.raises(ValueError, match="at least one sentence"):
        attention_explorer({}, attend)
