"""The argument checks every module uses: what they accept, and the words of what they reject."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from transformer_lib import runtime, utils
from transformer_lib.validation import (check_bool_mask, check_dtype_matches, check_feature_size, check_flag,
                                        check_int, check_module, check_number, check_positive_int,
                                        check_probability, check_same_dtype, check_tensor, check_token_ids, is_int)


def test_ints_are_ints_and_bools_are_not():
    assert check_int("n", 3) == 3 and check_int("n", np.int64(3)) == 3 and type(check_int("n", np.int64(3))) is int
    assert is_int(7) and not is_int(True) and not is_int(7.0)
    with pytest.raises(TypeError, match="n must be an int, got bool True"):
        check_int("n", True)
    with pytest.raises(TypeError, match=r"top_k must be an int in 1\.\.9 \(at most V\), got float 2\.5"):
        check_int("top_k", 2.5, 1, 9, hint="at most V")
    with pytest.raises(ValueError, match=r"top_k must be in 1\.\.9 \(at most V\), got 10"):
        check_int("top_k", 10, 1, 9, hint="at most V")
    with pytest.raises(ValueError, match="offset must be >= 0, got -1"):
        check_int("offset", -1, minimum=0)
    with pytest.raises(ValueError, match="d_model must be a positive int, got 0"):
        check_positive_int("d_model", 0)
    with pytest.raises(TypeError, match="d_model must be a positive int, got str '12'"):
        check_positive_int("d_model", "12")


def test_numbers_must_be_finite_and_in_range():
    assert check_number("lr", 3) == 3.0 and isinstance(check_number("lr", 3), float)
    with pytest.raises(ValueError, match="eps must be a positive number, got 0.0"):
        check_number("eps", 0, low=0.0, low_open=True)
    with pytest.raises(ValueError, match=r"top_p must be a number in \(0, 1\], got nan"):
        check_number("top_p", float("nan"), 0.0, 1.0, low_open=True)
    with pytest.raises(ValueError, match="base must be a finite number greater than 1 .*got inf"):
        check_number("base", float("inf"), low=1.0, low_open=True, hint="10000.0 in the paper")
    with pytest.raises(TypeError, match=r"dropout must be a number in \[0, 1\), got bool True"):
        check_number("dropout", True, 0.0, 1.0, high_open=True)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        check_probability("dropout", 1.0)


def test_flags_are_true_or_false_only():
    assert check_flag("norm_first", False) is False
    for bad in (1, "yes", None):
        with pytest.raises(TypeError, match="norm_first must be True or False"):
            check_flag("norm_first", bad)


def test_token_id_tensors_are_int64_or_int32():
    check_tensor("ids", torch.ones(2, 3, dtype=torch.int32), floating=False)
    with pytest.raises(TypeError, match=r"ids must be an integer tensor of token ids in int64 .*convert it with ids\.long\(\)"):
        check_tensor("ids", torch.ones(2, 3, dtype=torch.uint8), floating=False)
    with pytest.raises(TypeError, match="integer tensor of token ids, got dtype torch.float32"):
        check_tensor("ids", torch.ones(2, 3), floating=False)
    with pytest.raises(ValueError, match=r"x must have 3 dimensions, got shape \(2, 3\)"):
        check_tensor("x", torch.ones(2, 3), ndim=3)


def test_bool_masks_and_hugging_face_masks():
    m = torch.tensor([[True, False]])
    assert check_bool_mask("mask", m) is m
    assert torch.equal(check_bool_mask("attention_mask", torch.tensor([[1, 0]]), allow_01=True), m)
    additive = torch.tensor([[0.0, float("-inf")]])
    for allow_01 in (False, True):
        with pytest.raises(TypeError, match=r"got dtype torch.float32; .*additive float mask \(0 / -inf\) use mask == 0"):
            check_bool_mask("mask", additive, allow_01=allow_01)
    with pytest.raises(TypeError, match="must be a bool tensor .*got dtype torch.int64"):
        check_bool_mask("mask", torch.tensor([[1, 0]]))                  # integers only where allowed
    with pytest.raises(ValueError, match=r"only 0 \(padding\) and 1 .*got values \[0, 1, 7\].*token ids"):
        check_bool_mask("attention_mask", torch.tensor([[1, 0, 7]]), allow_01=True)


def test_token_id_lists():
    assert check_token_ids([1, np.int64(2)], 5) == [1, 2]
    assert check_token_ids(torch.tensor([3, 4]), 5) == [3, 4]
    with pytest.raises(TypeError, match=r"ids must be int token ids, got float 5.7 at position 1: token ids are whole"):
        check_token_ids([1, 5.7], 9)
    with pytest.raises(ValueError, match=r"id 9 is outside the vocabulary \(size 9: ids 0\.\.8\)"):
        check_token_ids([9], 9)
    with pytest.raises(TypeError, match=r"a tensor of dtype torch.float32; convert it with ids.long\(\)"):
        check_token_ids(torch.tensor([1.0]), 9)
    with pytest.raises(TypeError, match="list of int token ids or a 1-D tensor, got int 5"):
        check_token_ids(5, 9)


def test_dtypes_and_feature_sizes():
    w = torch.zeros(3, 3)
    check_dtype_matches("x", torch.zeros(2, 3), w)
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 but the layer's weights are torch.float32.*x.to\(torch.float32\)"):
        check_dtype_matches("x", torch.zeros(2, 3, dtype=torch.float64), w)
    with torch.autocast("cpu", dtype=torch.bfloat16):                   # autocast mixes dtypes on purpose
        check_dtype_matches("x", torch.zeros(2, 3, dtype=torch.bfloat16), w)
    with pytest.raises(TypeError, match=r"q, k must have the same dtype, got q torch.float32, k torch.float16"):
        check_same_dtype(q=torch.zeros(1), k=torch.zeros(1, dtype=torch.float16))
    with pytest.raises(ValueError, match=r"x must be \(\.\.\., D\) with d_model=12 .*got shape \(2, 5\): its last dimension has 5"):
        check_feature_size("x", torch.zeros(2, 5), 12)


def test_modules_and_the_old_import_path():
    with pytest.raises(TypeError, match=r"module must be an nn.Module .*Tensor of shape \(3,\).*x.numel\(\)"):
        check_module("module", torch.zeros(3))
    # they used to live in utils: the old names still work for one release, with a DeprecationWarning
    with pytest.warns(DeprecationWarning, match="transformer_lib.utils.check_tensor is deprecated: use "
                                                "transformer_lib.validation.check_tensor"):
        assert utils.check_tensor is check_tensor
    with pytest.warns(DeprecationWarning, match="transformer_lib.runtime.assert_trained"):
        assert utils.assert_trained is runtime.assert_trained
