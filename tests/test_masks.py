"""Masks (lessons 03 and 06): causal and padding masks, and PyTorch's opposite convention."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import B, S, T
from transformer_lib.masks import (attention_mask_from, causal_mask, decoder_self_mask, from_torch_mask, padding_mask,
                                   to_torch_mask)


def test_causal_mask_is_bool_lower_triangular():
    m = causal_mask(T)
    assert m.dtype == torch.bool and m.shape == (T, T)
    for i in range(T):
        for j in range(T):
            assert m[i, j] == (j <= i)          # query i may attend to keys 0..i
    assert causal_mask(1).tolist() == [[True]]


def test_causal_mask_with_a_past_lets_every_query_see_the_cached_positions():
    m = causal_mask(2, past=3)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    assert torch.equal(causal_mask(T, past=0), causal_mask(T))
    with pytest.raises(ValueError, match=r"past must be >= 0 \(the number of cached positions\), got -1"):
        causal_mask(T, past=-1)


def test_decoder_self_mask_is_causal_and_hides_target_padding():
    tgt = torch.tensor([[2, 5, 6, 0, 0]])
    mask = decoder_self_mask(tgt, pad_id=0)
    assert mask.shape == (1, 1, 5, 5) and mask.dtype == torch.bool
    assert torch.equal(mask[0, 0], causal_mask(5) & torch.tensor([True, True, True, False, False]))
    step = decoder_self_mask(tgt[:, :1], pad_id=0, past=3)
    assert step.shape == (1, 1, 1, 4) and step.all()


def test_attention_mask_from_a_tokenizers_mask_or_the_padding():
    ids = torch.tensor([[4, 5, 0], [6, 0, 0]])
    assert torch.equal(attention_mask_from(ids, None, pad_id=0), padding_mask(ids, 0))
    ones = torch.tensor([[1, 1, 1], [1, 1, 0]])                    # Hugging Face's attention_mask: 1 = real token
    assert attention_mask_from(ids, ones, pad_id=0)[:, 0, 0].tolist() == [[True] * 3, [True, True, False]]
    with pytest.raises(TypeError, match="dtype torch.float32"):
        attention_mask_from(ids, ones.float(), pad_id=0)
    with pytest.raises(ValueError, match="the shape of ids"):
        attention_mask_from(ids, ones[:, :2], pad_id=0)


@pytest.mark.parametrize("T, error", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)])
def test_causal_mask_rejects_bad_lengths(T, error):
    with pytest.raises(error, match="T must be a positive int"):
        causal_mask(T)


def test_padding_mask_blocks_padding_keys_and_broadcasts():
    ids = torch.tensor([[4, 5, 6, 7, 8, 9, 3], [4, 5, 6, 0, 0, 0, 0]])
    m = padding_mask(ids, pad_id=0)
    assert m.dtype == torch.bool and m.shape == (B, 1, 1, S)
    assert m[0].all() and m[1, 0, 0].tolist() == [True] * 3 + [False] * 4
    scores = torch.zeros(B, 3, T, S)
    assert torch.broadcast_shapes(m.shape, scores.shape) == scores.shape


@pytest.mark.parametrize("ids, pad_id, error, words", [
    (torch.zeros(B, S), 0, TypeError, "integer tensor"),
    (torch.zeros(S, dtype=torch.long), 0, ValueError, "2 dimensions"),
    (torch.zeros(B, S, dtype=torch.bool), 0, TypeError, "integer tensor"),
    (torch.zeros(B, S, dtype=torch.long), 0.0, TypeError, "pad_id must be an int"),
    (torch.zeros(B, S, dtype=torch.long), True, TypeError, "pad_id must be an int"),
])
def test_padding_mask_rejects_bad_input(ids, pad_id, error, words):
    with pytest.raises(error, match=words):
        padding_mask(ids, pad_id)


def test_conversion_to_and_from_pytorch_round_trips():
    ours = causal_mask(T)
    theirs = to_torch_mask(ours)
    assert theirs.dtype == torch.bool and torch.equal(theirs, ~ours)     # True = blocked
    assert torch.equal(from_torch_mask(theirs), ours)


def test_float_masks_of_pytorch_convert_to_ours():
    float_mask = nn.Transformer.generate_square_subsequent_mask(T)       # 0 allowed, -inf blocked
    assert float_mask.is_floating_point()
    assert torch.equal(from_torch_mask(float_mask), causal_mask(T))


@pytest.mark.parametrize("fn, mask, words", [
    (to_torch_mask, torch.ones(T, T), "bool mask.*float32"),
    (to_torch_mask, [[True]], "bool tensor"),
    (from_torch_mask, torch.ones(T, T, dtype=torch.long), "bool.*float"),
    (from_torch_mask, "mask", "tensor"),
])
def test_conversion_rejects_other_types(fn, mask, words):
    with pytest.raises(TypeError, match=words):
        fn(mask)


def test_the_pitfall_passing_our_mask_unconverted_inverts_it():
    """nn.MultiheadAttention reads our causal mask as 'attend only to the future' (and NaN)."""
    mha = nn.MultiheadAttention(12, 3, batch_first=True).eval()
    x = torch.randn(B, T, 12)
    _, right = mha(x, x, x, attn_mask=to_torch_mask(causal_mask(T)))
    out, wrong = mha(x, x, x, attn_mask=causal_mask(T))
    assert (right.triu(1) == 0).all()
    assert (wrong[:, :-1].tril() == 0).all()              # every query but the last sees only later keys
    assert out[:, -1].isnan().all()                       # the last query sees nothing: NaN


def test_padding_mask_arguments_are_checked():
    ids = torch.tensor([[5, 6, 0]])
    with pytest.raises(TypeError, match="pad_id must be an int, got bool True"):
        padding_mask(ids, True)
    with pytest.raises(TypeError, match=r"ids must be an integer tensor .*got dtype torch.uint8: convert it with ids.long\(\)"):
        padding_mask(ids.to(torch.uint8), 0)
