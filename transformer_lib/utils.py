"""Counting a model's parameters. (This module used to hold the runtime helpers and the argument
checks too: they live in :mod:`transformer_lib.runtime` and :mod:`transformer_lib.validation`, and
their old names here still work for one release, with a ``DeprecationWarning``.)
"""
from __future__ import annotations

from torch import nn

from ._deprecated import moved
from .validation import check_flag, check_module

__all__ = ["count_parameters"]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module``, each shared (tied) tensor counted once."""
    check_module("module", module)
    check_flag("trainable_only", trainable_only)
    seen: set[int] = set()
    total = 0
    for p in module.parameters():  # parameters() already yields a shared tensor once
        if trainable_only and not p.requires_grad:
            continue
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


__getattr__ = moved(__name__, {
    **{name: f"transformer_lib.runtime:{name}" for name in (
        "THREADS_VARIABLE", "NUM_THREADS", "threads_from_environment", "usable_cpus", "seed_everything", "pick_device",
        "smoke_test_mode", "assert_trained")},
    **{name: f"transformer_lib.validation:{name}" for name in (
        "check_device", "check_int", "check_positive_int", "check_probability", "check_tensor")},
})
