"""What the frozen dataclass configs of the three model families share.

:class:`TransformerConfig` (lesson 07), :class:`BertConfig` (09) and :class:`GPTConfig` (10)
subclass :class:`ModelConfig`: it checks the fields they have in common when a config is
made, and gives each a ``replace`` (the configs are frozen), ``to_dict`` and ``from_dict``.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from .feed_forward import ACTIVATIONS
from .validation import check_flag, check_number, check_positive_int


class ModelConfig:
    """Mixin for ``@dataclass(frozen=True)`` configs; subclasses list their own fields to check."""

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
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        self.check_field(check_number, "dropout", low=0.0, high=1.0, high_open=True)
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        self.check_field(check_number, "layer_norm_eps", low=0.0, low_open=True)

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
