"""Lesson 08: save a trained Transformer to one file and load it back.

:func:`save_model` writes the model's configuration (its frozen dataclass, as a dict) and its
weights (the ``state_dict``) with ``torch.save``; :func:`load_model` rebuilds the
:class:`~transformer_lib.transformer.Transformer` from the configuration and loads the weights,
so a lesson can go on later without training again.
"""
from __future__ import annotations

import torch
from torch import nn

from .transformer import Transformer, TransformerConfig
from .validation import check_module, check_path

__all__ = ["save_model", "load_model"]


def save_model(model: nn.Module, path, **extra) -> None:
    """Save a :class:`~transformer_lib.transformer.Transformer`'s config and weights to ``path``
    (one file, ``torch.save``), plus any ``extra`` picklable-by-value items (e.g. the vocabulary)."""
    check_module("model", model)
    check_path("path", path)
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise TypeError(f"save_model saves a model with a .config (TransformerConfig), got {type(model).__name__}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"config": config.to_dict(), "state_dict": state, "extra": extra}, path)


def load_model(path, device: torch.device | str = "cpu", return_extra: bool = False):
    """Rebuild the model saved by :func:`save_model` (in eval mode, on ``device``).

    Returns the model, or ``(model, extra)`` with ``return_extra=True``.
    """
    saved = torch.load(check_path("path", path), map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or not {"config", "state_dict"} <= set(saved):
        raise ValueError(f"{path} is not a file written by save_model (it has no config and state_dict)")
    model = Transformer(TransformerConfig.from_dict(saved["config"]))
    model.load_state_dict(saved["state_dict"])
    model.to(device).eval()
    return (model, saved.get("extra", {})) if return_extra else model
