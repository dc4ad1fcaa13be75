"""Argument checks: the one place where the library's error messages are written.

Every check raises a ``TypeError`` (the wrong kind of thing) or a ``ValueError`` (the right
kind, a wrong value) that says what was expected, what came, and how to fix it, and returns
the checked value, so a line reads ``self.d_model = check_positive_int("d_model", d_model)``.

The checks look at types, shapes and dtypes, not at the values inside a tensor, so the layers
can run them on every forward pass without slowing down. (The few that must look at values say
so: a 0/1 integer mask, a token-id list.)

Masks in this course are bool with **True = may attend** (see :mod:`transformer_lib.masks`).
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Iterable

import torch

__all__ = [
    "is_int", "check_int", "check_positive_int", "check_number", "check_probability", "check_flag",     # numbers
    "check_tensor", "check_ids_dtype", "check_feature_size", "check_dtype_matches", "check_hidden",     # tensors
    "check_same_dtype", "check_bool_mask", "check_token_ids", "out_of_range_targets", "MASK_FIX",
    "check_sequence", "check_path", "check_device", "check_module",                                     # the rest
]

#: How to turn the other usual kinds of masks into the course's (appended to mask errors).
MASK_FIX = "for a 0/1 mask use mask.bool(), for an additive float mask (0 / -inf) use mask == 0"

#: Integer dtypes that ``nn.Embedding`` (and indexing) accept as token ids.
ID_DTYPES = (torch.int64, torch.int32)


def _describe(value) -> str:
    """``"float 5.7"``, ``"str 'abc'"``, ``"Tensor of shape (2, 3)"``: what came, in a few words."""
    if isinstance(value, torch.Tensor):
        return f"a Tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def is_int(value) -> bool:
    """Is ``value`` an int (a Python or NumPy integer, but not a bool)?"""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None, hint: str = "") -> int:
    """``value`` as an int, or a clear error: not an int (a bool is not one), or outside
    ``[minimum, maximum]`` (either bound may be ``None``). ``hint`` follows the message."""
    hint = f" ({hint})" if hint else ""
    if minimum is not None and maximum is not None:
        bounds = f"in {minimum}..{maximum}"
    elif minimum is not None:
        bounds = f">= {minimum}"
    elif maximum is not None:
        bounds = f"<= {maximum}"
    else:
        bounds = ""
    positive = minimum == 1 and maximum is None
    want = "a positive int" if positive else f"an int {bounds}".rstrip()
    if not is_int(value):
        raise TypeError(f"{name} must be {want}{hint}, got {_describe(value)}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {want if positive else bounds}{hint}, got {value}")
    return int(value)


def check_positive_int(name: str, value) -> int:
    """Raise a clear ``TypeError``/``ValueError`` unless ``value`` is a positive int."""
    return check_int(name, value, minimum=1)


def check_number(name: str, value, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, hint: str = "") -> float:
    """``value`` as a float, or a clear error: not a real number (a bool is not one), not
    finite, or outside the interval from ``low`` to ``high`` (open at an end when ``*_open``)."""
    if low is not None and high is not None:
        want = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low == 0 and low_open:
        want = "a positive number"
    elif low is not None:
        want = f"a finite number {'greater than' if low_open else '>='} {low:g}"
    elif high is not None:
        want = f"a finite number {'less than' if high_open else '<='} {high:g}"
    else:
        want = "a finite number"
    hint = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {want.replace('a finite number', 'a number')}{hint}, got {_describe(value)}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        raise ValueError(f"{name} must be {want}{hint}, got {value}")
    return value


def check_probability(name: str, value) -> float:
    """Raise a clear error unless ``0 <= value < 1`` (a dropout rate)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in [0, 1), got {_describe(value)}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def check_flag(name: str, value) -> bool:
    """``value`` if it is ``True`` or ``False``; anything else (1, "yes", None) is an error."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_tensor(name: str, x, ndim: int | tuple[int, ...] | None = None, floating: bool | None = None) -> torch.Tensor:
    """Check that ``x`` is a tensor with the expected number of dimensions and dtype kind.

    Args:
        name: how the argument is called in the error message.
        ndim: allowed number of dimensions (an int or a tuple of ints), ``None`` for any.
        floating: ``True`` for a float tensor, ``False`` for integer token ids (int64 or
            int32, the dtypes ``nn.Embedding`` takes), ``None`` for any.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.dim() not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")
    if floating is True and not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got dtype {x.dtype}")
    if floating is False:
        check_ids_dtype(name, x)
    return x


def check_ids_dtype(name: str, ids: torch.Tensor) -> torch.Tensor:
    """Token ids must be int64 (``torch.long``) or int32: a float, a bool or a small integer
    dtype such as uint8 (which indexing reads as a mask, and which wraps around at 256) is an error."""
    if ids.dtype not in ID_DTYPES:
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor of token ids, got dtype {ids.dtype}")
        raise TypeError(f"{name} must be an integer tensor of token ids in int64 (torch.long) or int32, "
                        f"got dtype {ids.dtype}: convert it with {name}.long()")
    return ids


def check_feature_size(name: str, x: torch.Tensor, size: int, what: str = "d_model", layout: str = "(..., D)") -> None:
    """The last dimension of ``x`` must be ``size`` (``what`` names it, ``layout`` shows the
    expected shape, e.g. ``"(B, T, D)"``)."""
    if x.dim() == 0 or x.shape[-1] != size:
        got = f": its last dimension has {x.shape[-1]}" if x.dim() else ""
        raise ValueError(f"{name} must be {layout} with {what}={size} features in its last dimension, "
                         f"got shape {tuple(x.shape)}{got}")


def check_dtype_matches(name: str, x: torch.Tensor, weight: torch.Tensor, layer: str = "the layer") -> None:
    """``x`` must have the dtype of the layer's ``weight`` (float64 or half input into a float32
    layer is an error; under ``torch.autocast`` PyTorch converts, so anything goes)."""
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"{name} has dtype {x.dtype} but {layer}'s weights are {weight.dtype}: both must be "
                        f"the same. Convert the input with {name}.to({weight.dtype}) "
                        f"(or the whole model with model.to({x.dtype}))")


def check_hidden(name: str, x, d_model: int, weight: torch.Tensor, layer: str = "the layer",
                 length: str = "length") -> torch.Tensor:
    """Hidden states entering a layer: a float ``(B, length, d_model)`` tensor of the layer's
    dtype (``weight`` is one of its weights)."""
    check_tensor(name, x, ndim=3, floating=True)
    if x.shape[-1] != d_model:
        raise ValueError(f"{name} must be (B, {length}, d_model={d_model}), got shape {tuple(x.shape)}")
    check_dtype_matches(name, x, weight, layer)
    return x


def check_same_dtype(**tensors: torch.Tensor) -> None:
    """Every tensor given must have the same dtype (``check_same_dtype(q=q, k=k, v=v)``)."""
    dtypes = {name: x.dtype for name, x in tensors.items()}
    if len(set(dtypes.values())) > 1:
        first = next(iter(tensors))
        got = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"{', '.join(tensors)} must have the same dtype, got {got}: "
                        f"convert them with .to({first}.dtype)")


def check_bool_mask(name: str, mask, allow_01: bool = False, meaning: str = "True = may attend") -> torch.Tensor:
    """``mask`` as a bool tensor (**True = may attend**), or a clear error.

    With ``allow_01`` an integer mask of 0s and 1s (Hugging Face's ``attention_mask``, 1 = real
    token) is accepted and turned into bool; any other value in it is an error. A float mask is
    always an error: an additive mask (0 = may attend, -inf = blocked) would be inverted by
    ``.bool()``.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a bool tensor ({meaning}), got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return mask
    if allow_01 and not mask.is_floating_point() and not mask.is_complex():
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"{name} as integers must hold only 0 (padding) and 1 (real token), got values "
                             f"{sorted(set(mask.unique().tolist()))[:6]}: did you pass the token ids instead?")
        return mask.bool()
    kinds = "a bool tensor or a 0/1 integer tensor" if allow_01 else "a bool tensor"
    raise TypeError(f"{name} must be {kinds} ({meaning}), got dtype {mask.dtype}; {MASK_FIX}")


def check_token_ids(ids: Iterable, vocab_size: int, name: str = "ids") -> list[int]:
    """``ids`` (a list or a 1-D tensor of ints) as a list of ints, each in ``[0, vocab_size)``.

    A float such as ``5.7`` is an error (it is not truncated to 5), and so is an id outside
    the vocabulary.
    """
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(f"{name} must be one sequence (1-D), got shape {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.dtype == torch.bool:
            raise TypeError(f"{name} must be integer token ids, got a tensor of dtype {ids.dtype}; "
                            f"convert it with {name}.long()")
        ids = ids.tolist()
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"{name} must be a list of int token ids or a 1-D tensor, got {_describe(ids)}")
    out = []
    for i in ids:
        if not is_int(i):
            raise TypeError(f"{name} must be int token ids, got {_describe(i)} at position {len(out)}"
                            + (": token ids are whole numbers (convert on purpose with int(...) if it is right)"
                               if isinstance(i, float) else ""))
        if not 0 <= i < vocab_size:
            raise ValueError(f"id {i} is outside the vocabulary (size {vocab_size}: ids 0..{vocab_size - 1})")
        out.append(int(i))
    return out


def check_path(name: str, value) -> Path:
    """``value`` (a str or a path) as a ``Path``; an int would be read by ``open`` as a file descriptor."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (a str or a pathlib.Path), got {_describe(value)}")
    return Path(value)


def out_of_range_targets(error: Exception, what: str, V: int) -> ValueError:
    """The error for class targets outside ``[0, V)``, raised where a loss indexes by them.

    Losses call this only once indexing has failed, so a correct call pays nothing for it."""
    return ValueError(f"{what} must be token ids in [0, {V}) for logits with V={V} classes ({error}); are the "
                      f"logits from a model with the targets' vocabulary, and is the padding id below V?")


def check_sequence(name: str, value, item: type | tuple[type, ...] | None = None, what: str = "") -> list:
    """``value`` as a list: a list, tuple or other iterable, but not a single str and not a tensor;
    with ``item``, every element must be an instance of it (``what`` names the elements)."""
    of = f" of {what}" if what else ""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a list{of}, got a single {type(value).__name__}: wrap it in a list")
    if isinstance(value, torch.Tensor) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list{of}, got {_describe(value)}")
    value = list(value)
    if item is not None:
        for i, element in enumerate(value):
            if not isinstance(element, item):
                raise TypeError(f"{name} must be a list{of}, got {_describe(element)} at position {i}")
    return value


def check_device(name: str, device) -> torch.device:
    """``device`` (``"cpu"``, ``"cuda:0"``, a ``torch.device``) as a ``torch.device``."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{name} must be a device such as 'cpu' or 'cuda', or a torch.device, got {_describe(device)}")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"{name} must be a device PyTorch knows, such as 'cpu', 'cuda' (or 'cuda:N') or 'mps', "
                         f"got {device!r}") from None


def check_module(name: str, value) -> torch.nn.Module:
    """``value`` if it is an ``nn.Module`` (a layer or a model)."""
    if not isinstance(value, torch.nn.Module):
        hint = "; the number of values in a tensor x is x.numel()" if isinstance(value, torch.Tensor) else ""
        raise TypeError(f"{name} must be an nn.Module (a layer or a model), got {_describe(value)}{hint}")
    return value
