"""Lesson 05 onwards: the hyper-parameters of the layers and of the models, each in one frozen dataclass.

* :class:`LayerConfig`: what every encoder and decoder layer of a stack shares (d_model, num_heads,
  d_ff, dropout, norm_first, activation, layer_norm_eps). A stack builds its layers from one, as
  nanoGPT passes ``config`` (``Encoder(num_layers, LayerConfig(...))``); a single layer keeps its
  plain keyword arguments (``EncoderLayer(d_model, num_heads, d_ff, ...)``), so a notebook can
  build one on its own.
* :class:`ModelConfig`: what :class:`TransformerConfig` (lesson 07), :class:`BertConfig` (10) and
  :class:`GPTConfig` (11) share: they hold a layer's fields too (``config.layer`` is its
  :class:`LayerConfig`), and get ``replace`` (the configs are frozen), ``to_dict`` and ``from_dict``.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import ClassVar

from .feed_forward import ACTIVATIONS
from .validation import check_flag, check_number, check_positive_int, is_int

__all__ = ["LayerConfig", "ModelConfig"]


@dataclass(frozen=True)
class LayerConfig:
    """The hyper-parameters of one encoder or decoder layer, checked on construction: the
    arguments of :class:`~transformer_lib.encoder.EncoderLayer` (and ``DecoderLayer``), which say
    what each one means."""

    d_model: int
    num_heads: int
    d_ff: int
    dropout: float = 0.0
    norm_first: bool = False
    activation: str = "relu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        for name in ("d_model", "num_heads", "d_ff"):
            check_positive_int(name, getattr(self, name))
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        check_number("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        check_flag("norm_first", self.norm_first)
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        check_number("layer_norm_eps", self.layer_norm_eps, low=0.0, low_open=True)

    def kwargs(self) -> dict:
        """The fields as keyword arguments of a layer: ``EncoderLayer(**config.kwargs())``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def of(cls, config, args: tuple = (), kwargs: dict | None = None, stack: str = "the stack") -> "LayerConfig":
        """The :class:`LayerConfig` a stack was given. The old form ``Encoder(num_layers, d_model,
        num_heads, d_ff, ...)`` still works for one release, with a ``DeprecationWarning``."""
        if isinstance(config, LayerConfig) and not args and not kwargs:
            return config
        if is_int(config):
            warnings.warn(f"{stack}(num_layers, d_model, num_heads, d_ff, ...) is deprecated: pass one "
                          f"LayerConfig(d_model, num_heads, d_ff, ...) instead", DeprecationWarning, stacklevel=3)
            return cls(config, *args, **(kwargs or {}))
        raise TypeError(f"{stack} takes (num_layers, config) with config a LayerConfig(d_model, num_heads, d_ff, "
                        f"...), got {type(config).__name__}")


class ModelConfig:
    """Mixin for ``@dataclass(frozen=True)`` model configs; subclasses list their own fields to check."""

    #: int fields that must be > 0 (``None`` is allowed where the field is optional)
    POSITIVE: ClassVar[tuple[str, ...]] = ()
    #: fields that must be True or False
    FLAGS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        for name in self.POSITIVE:
            if getattr(self, name) is not None:
                self.check_field(check_positive_int, name)
        for name in self.FLAGS:
            check_flag(name, getattr(self, name))
        try:
            self.layer                                    # checks the layer's fields
        except TypeError as e:
            raise ValueError(str(e)) from None

    @property
    def layer(self) -> LayerConfig:
        """The hyper-parameters every layer of the model shares."""
        return LayerConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LayerConfig)})

    def check_field(self, check, name: str, *args, **kwargs) -> None:
        """Run a :mod:`~transformer_lib.validation` check on field ``name``; a config reports every
        bad field value as a ``ValueError``, of the wrong kind or not (flags excepted)."""
        try:
            check(name, getattr(self, name), *args, **kwargs)
        except TypeError as e:
            raise ValueError(str(e)) from None

    def replace(self, **changes):
        """A copy with some fields changed (the config itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**d)
