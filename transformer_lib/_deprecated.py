"""Old names kept for one release: they still work, with a ``DeprecationWarning`` that names the new one.

When a public name moves or is renamed, a module keeps its old names with ``__getattr__ =
moved(__name__, {"old": "package.module:new"})``; a class keeps old attribute names by listing them
in ``RENAMED`` and inheriting :class:`RenamedAttributes`. Remove them in the next release.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Callable, ClassVar


def _warn(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated: use {new} (it will be removed in the next release)",
                  DeprecationWarning, stacklevel=3)


def moved(module: str, names: dict[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` serving each old name of ``names`` (``{"old": "package.module:new"}``)."""
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, attribute = names[name].partition(":")
        _warn(f"{module}.{name}", f"{target}.{attribute}")
        return getattr(importlib.import_module(target), attribute)
    return __getattr__


class RenamedAttributes:
    """Mixin for an ``nn.Module`` whose attributes were renamed: ``RENAMED = {"old": "new"}``."""

    RENAMED: ClassVar[dict[str, str]] = {}

    def __getattr__(self, name: str):
        new = type(self).RENAMED.get(name)
        if new is None:
            return super().__getattr__(name)
        _warn(f"{type(self).__name__}.{name}", f"{type(self).__name__}.{new}")
        return getattr(self, new)
