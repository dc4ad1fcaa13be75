"""Multi-head attention (lesson 04): against nn.MultiheadAttention, fast path, KV cache, errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import B, D, D_FF, D_K, H, S, T
from transformer_lib.attention import scaled_dot_product_attention
from transformer_lib.masks import causal_mask, from_torch_mask, padding_mask, to_torch_mask
from transformer_lib.multi_head_attention import (MultiHeadAttention, fused_attention, merge_heads,
                                                  multi_head_attention_forward, split_heads)
from transformer_lib.torch_interop import copy_mha
from transformer_lib.utils import count_parameters


def pair(bias: bool = True, dtype=torch.float32):
    ours = MultiHeadAttention(D, H, bias=bias).to(dtype).eval()
    theirs = copy_mha(ours, nn.MultiheadAttention(D, H, bias=bias, batch_first=True).to(dtype)).eval()
    return ours, theirs


def pad_mask(lengths=(S, 3)) -> torch.Tensor:
    ids = torch.stack([torch.cat([torch.arange(1, n + 1), torch.zeros(S - n, dtype=torch.long)]) for n in lengths])
    return padding_mask(ids, pad_id=0)                       # (B, 1, 1, S)


def empty_row_mask() -> torch.Tensor:
    mask = torch.rand(T, S) < 0.5
    mask[:, 0] = True
    mask[1] = False                                         # query 1 may attend to nothing
    return mask


# ---------------------------------------------------------------------------- split and merge


def test_split_heads_gives_each_head_its_block_of_features():
    x = torch.randn(B, T, D)
    heads = split_heads(x, H)
    assert heads.shape == (B, H, T, D_K)
    for h in range(H):
        assert torch.equal(heads[:, h], x[..., h * D_K:(h + 1) * D_K])
    assert torch.equal(merge_heads(heads), x)


def test_merge_heads_concatenates_in_head_order():
    x = torch.randn(B, H, T, D_K)
    assert torch.equal(merge_heads(x), torch.cat([x[:, h] for h in range(H)], dim=-1))


@pytest.mark.parametrize("fn, args, words", [
    (split_heads, (torch.randn(B, T, 10), 3), r"D=10 is not divisible by num_heads=3"),
    (split_heads, (torch.randn(T, D), H), r"\(B, T, D\)"),
    (merge_heads, (torch.randn(B, T, D),), r"\(B, H, T, d_k\)"),
])
def test_split_and_merge_errors(fn, args, words):
    with pytest.raises(ValueError, match=words):
        fn(*args)


@pytest.mark.parametrize("num_heads, error, words", [
    (0, ValueError, "num_heads must be a positive int, got 0"),
    (-3, ValueError, "num_heads must be a positive int, got -3"),
    (3.0, TypeError, "num_heads must be a positive int, got float 3.0"),
])
def test_split_heads_needs_a_positive_number_of_heads(num_heads, error, words):
    with pytest.raises(error, match=words):
        split_heads(torch.randn(B, T, D), num_heads)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got list"):
        merge_heads([[1.0]])


# ---------------------------------------------------------------------------- the module


def test_shapes_parameters_and_kept_weights():
    mha = MultiHeadAttention(D, H).eval()
    assert [n for n, _ in mha.named_children()] == ["w_q", "w_k", "w_v", "w_o"]
    assert count_parameters(mha) == 4 * D * D + 4 * D
    assert count_parameters(MultiHeadAttention(D, H, bias=False)) == 4 * D * D
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    out, w = mha(x, memory, memory)
    assert out.shape == (B, T, D) and w.shape == (B, H, T, S)
    assert torch.equal(mha.last_weights, w) and not mha.last_weights.requires_grad
    out, w = mha(x, x, x, need_weights=False)
    assert out.shape == (B, T, D) and w is None and mha.last_weights is None


def test_d_model_not_divisible_names_both_numbers():
    with pytest.raises(ValueError, match=r"d_model=10 is not divisible by num_heads=3"):
        MultiHeadAttention(10, 3)


@pytest.mark.parametrize("kwargs, error", [({"d_model": 0, "num_heads": 1}, ValueError),
                                           ({"d_model": 12, "num_heads": 2.0}, TypeError),
                                           ({"d_model": 12, "num_heads": 3, "dropout": 1.5}, ValueError)])
def test_bad_constructor_arguments(kwargs, error):
    with pytest.raises(error):
        MultiHeadAttention(**kwargs)


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("args, error, words", [
    ((torch.randn(B, T, D + 1),) * 3, ValueError, r"d_model=12.*\(2, 5, 13\)"),
    ((torch.randn(T, D),) * 3, ValueError, "3 dimensions"),
    ((torch.randn(B, T, D), torch.randn(B, S, D), torch.randn(B, S + 1, D)), ValueError, "same"),
    ((torch.randn(B, T, D),) * 3 + (torch.ones(T, T),), TypeError, "bool"),
    ((torch.randn(B, T, D),) * 3 + (torch.ones(T, T + 1, dtype=torch.bool),), ValueError, "cannot broadcast"),
    ((torch.ones(B, T, D, dtype=torch.long),) * 3, TypeError, "float"),
])
def test_forward_errors(args, error, words, need_weights):
    with pytest.raises(error, match=words):
        MultiHeadAttention(D, H)(*args, need_weights=need_weights)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("need_weights", [True, False])
def test_input_of_another_dtype_than_the_weights_is_named(dtype, need_weights):
    x = torch.randn(B, T, D, dtype=dtype)
    with pytest.raises(TypeError, match=rf"query has dtype {dtype} but the attention layer's weights are torch.float32: "
                                        rf"both must be the same. Convert the input with query.to\(torch.float32\)"):
        MultiHeadAttention(D, H)(x, x, x, need_weights=need_weights)
    with pytest.raises(TypeError, match="query has dtype"):
        multi_head_attention_forward(MultiHeadAttention(D, H), x, x, x)


def test_autocast_may_mix_dtypes():
    mha = MultiHeadAttention(D, H).eval()
    x = torch.randn(B, T, D)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = mha(x.bfloat16(), x.bfloat16(), x.bfloat16())
    torch.testing.assert_close(out.float(), mha(x, x, x)[0], atol=0.1, rtol=0.1)


def test_query_and_key_must_have_one_batch_size():
    x, memory = torch.randn(1, T, D), torch.randn(B, S, D)
    with pytest.raises(ValueError, match=r"query and key must have the same batch size B, got query \(1, 5, 12\) "
                                         r"and key \(2, 7, 12\)"):
        MultiHeadAttention(D, H)(x, memory, memory)


def test_a_b_s_padding_mask_is_an_error_when_b_equals_t():
    mha = MultiHeadAttention(D, H).eval()
    x, memory = torch.randn(T, T, D), torch.randn(T, S, D)       # B = T = 5
    ids = torch.randint(1, 9, (T, S))
    ids[1, 3:] = 0
    ids[4, 5:] = 0
    for need_weights in (True, False):
        with pytest.raises(ValueError, match=r"mask of shape \(5, 7\) is ambiguous .*padding_mask\(ids, pad_id\)"):
            mha(x, memory, memory, mask=ids != 0, need_weights=need_weights)
    out, _ = mha(x, memory, memory, mask=padding_mask(ids, 0))   # the fix the message names
    out_1, _ = mha(x[1:2], memory[1:2, :3], memory[1:2, :3])
    torch.testing.assert_close(out[1:2], out_1)
    mha(x, x, x, mask=causal_mask(T))                            # a causal (T, T) mask stays fine when B == T


def test_need_weights_and_keys_values_are_checked():
    x = torch.randn(B, T, D)
    with pytest.raises(TypeError, match="need_weights must be True or False"):
        MultiHeadAttention(D, H)(x, x, x, need_weights="no")
    with pytest.raises(TypeError, match=r"keys_values must be a function \(mha, key, value\) -> \(k, v\).*got list"):
        MultiHeadAttention(D, H)(x, x, x, keys_values=[])
    with pytest.raises(TypeError, match="mha must be a MultiHeadAttention layer"):
        multi_head_attention_forward(nn.Linear(D, D), x, x, x)


def test_the_lesson_forward_equals_the_module():
    mha = MultiHeadAttention(D, H).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    for args in ((x, x, x, causal_mask(T)), (x, memory, memory, pad_mask())):
        out, w = multi_head_attention_forward(mha, *args[:3], mask=args[3])
        ref_out, ref_w = mha(*args[:3], mask=args[3])
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(w, ref_w)


def test_equal_to_a_loop_over_heads():
    mha = MultiHeadAttention(D, H).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    out, w = mha(x, memory, memory)
    heads = []
    for h in range(H):
        rows = slice(h * D_K, (h + 1) * D_K)
        project = lambda layer, inp: inp @ layer.weight[rows].T + layer.bias[rows]  # noqa: E731
        o, w_h = scaled_dot_product_attention(project(mha.w_q, x), project(mha.w_k, memory), project(mha.w_v, memory))
        torch.testing.assert_close(w[:, h], w_h)
        heads.append(o)
    torch.testing.assert_close(out, mha.w_o(torch.cat(heads, dim=-1)))


# ---------------------------------------------------------------------------- against PyTorch


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_with_causal_mask_equals_pytorch(need_weights, bias):
    ours, theirs = pair(bias)
    x = torch.randn(B, T, D)
    mask = causal_mask(T)
    out, w = ours(x, x, x, mask=mask, need_weights=need_weights)
    ref_out, ref_w = theirs(x, x, x, attn_mask=to_torch_mask(mask), average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)
    # PyTorch's own masks, converted to ours: the float causal mask and a bool one (True = blocked)
    for their_mask in (nn.Transformer.generate_square_subsequent_mask(T), ~causal_mask(T)):
        out2, _ = ours(x, x, x, mask=from_torch_mask(their_mask), need_weights=need_weights)
        torch.testing.assert_close(out2, theirs(x, x, x, attn_mask=their_mask)[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("need_weights", [True, False])
def test_cross_attention_with_padding_equals_pytorch(need_weights):
    ours, theirs = pair()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    mask = pad_mask()
    out, w = ours(x, memory, memory, mask=mask, need_weights=need_weights)
    ref_out, ref_w = theirs(x, memory, memory, key_padding_mask=~mask[:, 0, 0, :], average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(w, ref_w, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("need_weights", [True, False])
def test_batch_of_one_and_a_single_query_equal_pytorch(need_weights):
    ours, theirs = pair()
    q, memory = torch.randn(1, 1, D), torch.randn(1, S, D)
    out, _ = ours(q, memory, memory, need_weights=need_weights)
    torch.testing.assert_close(out, theirs(q, memory, memory)[0], atol=1e-6, rtol=1e-5)


def test_float64_equals_pytorch():
    ours, theirs = pair(dtype=torch.float64)
    x = torch.randn(B, T, D, dtype=torch.float64)
    mask = causal_mask(T)
    for need in (True, False):
        out, _ = ours(x, x, x, mask=mask, need_weights=need)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, theirs(x, x, x, attn_mask=to_torch_mask(mask))[0], atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("dtype, tol", [(torch.bfloat16, 5e-2), (torch.float16, 1e-2)])
@pytest.mark.parametrize("need_weights", [True, False])
def test_low_precision_is_close_to_float32_and_never_nan(dtype, tol, need_weights):
    mha = MultiHeadAttention(D, H).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    mask = empty_row_mask()
    ref, _ = mha(x, memory, memory, mask=mask)
    low = MultiHeadAttention(D, H).eval()
    low.load_state_dict(mha.state_dict())
    low = low.to(dtype)
    out, _ = low(x.to(dtype), memory.to(dtype), memory.to(dtype), mask=mask, need_weights=need_weights)
    assert out.dtype == dtype and not out.isnan().any()
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)


# ---------------------------------------------------------------------------- fast path == explicit path


MASKS = {"none": lambda: None, "causal": lambda: causal_mask(T), "padding": pad_mask, "empty row": empty_row_mask}


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name", list(MASKS))
def test_fast_path_equals_explicit_path_with_gradients(name, train):
    mha = MultiHeadAttention(D, H).train(train)
    x = torch.randn(B, T, D)
    memory = x if name == "causal" else torch.randn(B, S, D)
    mask = MASKS[name]()
    results = []
    for need_weights in (True, False):
        mha.zero_grad()
        xq, xm = x.clone().requires_grad_(), memory.clone().requires_grad_()
        out, _ = mha(xq, xm, xm, mask=mask, need_weights=need_weights)
        assert not out.isnan().any()
        out.pow(2).sum().backward()
        results.append((out.detach(), xq.grad, xm.grad, [p.grad.clone() for p in mha.parameters()]))
    (out1, gq1, gm1, gp1), (out2, gq2, gm2, gp2) = results
    torch.testing.assert_close(out1, out2, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gq1, gq2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gm1, gm2, atol=1e-5, rtol=1e-4)
    for a, b in zip(gp1, gp2):
        assert torch.isfinite(a).all() and a.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_fully_masked_query_gets_only_the_output_bias():
    mha = MultiHeadAttention(D, H).eval()
    x, memory = torch.randn(B, T, D), torch.randn(B, S, D)
    for need_weights in (True, False):
        out, w = mha(x, memory, memory, mask=empty_row_mask(), need_weights=need_weights)
        torch.testing.assert_close(out[:, 1], mha.w_o.bias.expand(B, D).detach())   # zero attention output
        if need_weights:
            assert (w[:, :, 1] == 0).all()


def test_dropout_acts_only_in_training():
    mha = MultiHeadAttention(D, H, dropout=0.5)
    x = torch.randn(B, T, D)
    mha.eval()
    assert torch.equal(mha(x, x, x)[0], mha(x, x, x)[0])
    assert torch.equal(mha(x, x, x, need_weights=False)[0], mha(x, x, x, need_weights=False)[0])
    mha.train()
    torch.manual_seed(1)
    _, w = mha(x, x, x)
    assert (w == 0).any()                                       # some weights were dropped
    assert not torch.equal(mha(x, x, x, need_weights=False)[0], mha(x, x, x, need_weights=False)[0])


# ---------------------------------------------------------------------------- which kernel runs


def test_the_kernel_is_an_explicit_choice_not_the_training_mode():
    mha = MultiHeadAttention(D, H)
    x = torch.randn(B, T, D)
    for mode in (mha.train, mha.eval):                          # the mode does not choose the kernel
        mode()
        _, w = mha(x, x, x)
        assert w is not None and torch.equal(mha.last_weights, w)
    mha.need_weights = False                                    # the layer's own setting
    out, w = mha(x, x, x)
    assert w is None and mha.last_weights is None
    torch.testing.assert_close(out, mha(x, x, x, need_weights=True)[0], atol=1e-6, rtol=1e-5)


def test_fused_attention_switches_every_layer_for_a_while():
    from transformer_lib import Encoder, LayerConfig

    enc = Encoder(2, LayerConfig(D, H, D_FF)).eval()
    enc.layers[1].self_attn.need_weights = True
    x = torch.randn(B, T, D)
    with fused_attention(enc):
        fused = enc(x)
        assert enc.attention_weights() == [None, None]
        assert not any(layer.self_attn.need_weights for layer in enc.layers)
    assert all(layer.self_attn.need_weights for layer in enc.layers)   # each layer's setting is back
    torch.testing.assert_close(enc(x), fused, atol=1e-5, rtol=1e-5)
    assert all(w is not None for w in enc.attention_weights())
    with pytest.raises(TypeError, match="model must be"):
        with fused_attention("encoder"):
            pass


# ---------------------------------------------------------------------------- pictures and the explorer


def test_head_split_picture_and_head_explorer():
    import matplotlib.pyplot as plt

    from transformer_lib.plotting import head_explorer, plot_head_split

    fig = plot_head_split(T, D, H)
    assert len(fig.axes) == 1 + H and fig.axes[0].get_xlabel() == "feature"
    assert [ax.get_title() for ax in fig.axes[1:]] == [f"head {h}" for h in range(H)]
    with pytest.raises(ValueError, match="D=10 is not divisible by H=3"):
        plot_head_split(T, 10, 3)
    plt.close("all")

    mha = MultiHeadAttention(D, H).eval()
    x = torch.randn(1, T, D) * 3
    mha(x, x, x)
    tokens = [f"t{i}" for i in range(T)]
    ex = head_explorer(mha.last_weights[0], tokens, head_names=["a", "b", "c"])
    first = ex.image.value
    assert first[:4] == b"\x89PNG"
    ex.controls["head"].value = 2
    assert ex.image.value != first
    with pytest.raises(ValueError, match=r"\(H, T, S\)"):
        head_explorer(mha.last_weights, tokens)
    with pytest.raises(ValueError, match="2 head names for 3 heads"):
        head_explorer(mha.last_weights[0], tokens, head_names=["a", "b"])
