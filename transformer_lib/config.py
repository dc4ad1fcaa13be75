"""What the frozen dataclass configs of the three model families share.

:class:`TransformerConfig` (lesson 07), :class:`BertConfig` (09) and :class:`GPTConfig` (10)
subclass :class:`ModelConfig`: it checks the fields they have in common when a config is
made, and gives each a ``replace`` (the configs are frozen), ``to_dict`` and ``from_dict``.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from .feed_forward import ACTIVATIONS


class ModelConfig:
    """Mixin for ``@dataclass(frozen=True)`` configs; subclasses list their own fields to check."""

    #: int fields that must be > 0 (``None`` is allowed where the field is optional)
    POSITIVE: ClassVar[tuple[str, ...]] = ()
    #: fields that must be True or False
    FLAGS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        for name in self.POSITIVE:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in self.FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by num_heads={self.num_heads}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps <= 0:
            raise ValueError(f"layer_norm_eps must be a positive number, got {eps!r}")

    def replace(self, **changes):
        """A copy with some fields changed (the config itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**d)
