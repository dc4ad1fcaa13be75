"""The package reads like the lessons: a module imports only from its own lesson and earlier ones.

Every module of ``transformer_lib`` has its lesson in ``LESSON`` below (a new module must be
added, or this test fails). A later lesson extends earlier code (lesson 11's key/value cache plugs
into lesson 04's ``keys_values`` hook) instead of earlier code importing it. ``plotting/<topic>``
and ``checks/<topic>`` follow the same rule with the lesson of their topic, so the pictures and
checks of a lesson never need a later lesson's code. The package facades (``__init__.py``) may
re-export anything. Imports inside functions count too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "transformer_lib"

LESSON = {
    # 00: how the course runs
    "validation": 0, "runtime": 0, "environment": 0, "start_here": 0, "utils": 0, "_deprecated": 0,
    "tokenizer": 1, "embeddings": 1,
    "positional": 2,
    "attention": 3, "masks": 3, "recall": 3,
    "multi_head_attention": 4,
    "feed_forward": 5, "layer_norm": 5, "encoder": 5, "config": 5, "vision": 5,
    "decoder": 6,
    "transformer": 7, "torch_interop": 7,
    "training": 8, "data": 8, "decoding": 8, "checkpoint": 8,
    "bpe": 9, "translation": 9, "rnn_baseline": 9,
    "bert": 10, "mlm": 10, "toy_text": 10,
    "gpt": 11, "sampling": 11, "kv_cache": 11,
    "text_to_text": 12,
    "pretrained": 13, "wordpiece": 13, "sentence_encoder": 13,
    "scaling": 14,
    # plotting/<topic> and checks/<topic>: the lesson of their topic
    "plotting.core": 0, "plotting.course": 0, "plotting.embeddings": 1, "plotting.positional": 2,
    "plotting.attention": 3, "plotting.multi_head_attention": 4, "plotting.encoder": 5,
    "plotting.transformer": 7, "plotting.training": 8, "plotting.translation": 9,
    "plotting.families": 12, "plotting.pretrained": 13,
    "plotting.scaling": 14,
    "checks._core": 0, "checks._watch": 0, "checks.start_here": 0, "checks.embeddings": 1,
    "checks.positional": 2, "checks.attention": 3, "checks.multi_head_attention": 4, "checks.encoder": 5,
    "checks.decoder": 6, "checks.transformer": 7, "checks.training": 8,
    "checks.translation": 9, "checks.bert": 10, "checks.gpt": 11,
    "checks.text_to_text": 12, "checks.pretrained": 13, "checks.scaling": 14,
}
FACADES = {"__init__", "plotting.__init__", "checks.__init__"}


def module_name(path: Path) -> str:
    """``transformer_lib/plotting/core.py`` -> ``plotting.core``."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def imported_modules(path: Path) -> set[str]:
    """The ``transformer_lib`` modules ``path`` imports (relative or absolute, anywhere in the file),
    as names of ``LESSON`` (``plotting.core``), or a package name for a facade (``plotting``)."""
    package = module_name(path).split(".")[:-1]                       # the package the file is in
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                parts = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "transformer_lib":
                parts = node.module.split(".")[1:]
            else:
                continue
            name = ".".join(parts)
            if name in ("", "plotting", "checks"):                   # `from . import x`: x are modules
                found |= {".".join(parts + [alias.name]) for alias in node.names}
            else:
                found.add(name)
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith("transformer_lib.")}
    return found


def lesson_of(name: str) -> int:
    if name in LESSON:
        return LESSON[name]
    return max(v for k, v in LESSON.items() if k.startswith(name + "."))   # a facade: all of its modules


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if module_name(p) not in FACADES)


def test_every_module_has_its_lesson():
    unknown = sorted({module_name(p) for p in MODULES} - set(LESSON))
    assert not unknown, f"add these modules to LESSON in tests/test_layering.py, with the lesson they belong to: {unknown}"
    assert not set(LESSON) - {module_name(p) for p in MODULES}, "LESSON names a module that does not exist"


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_a_module_imports_only_its_own_and_earlier_lessons(path):
    own = LESSON[module_name(path)]
    later = sorted(f"{name} (lesson {lesson_of(name):02d})" for name in imported_modules(path) if lesson_of(name) > own)
    assert not later, f"{module_name(path)} (lesson {own:02d}) imports later lessons: {', '.join(later)}"


def test_the_rule_sees_relative_lazy_and_facade_imports(tmp_path, monkeypatch):
    """The parser finds what a violation would look like: a lazy relative import, a facade import."""
    fake = PACKAGE / "multi_head_attention.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: (
        "from .attention import x\ndef f():\n    from .kv_cache import KVCache\n"
        "from . import plotting\nimport transformer_lib.gpt\nfrom .plotting.core import y\n"))
    assert imported_modules(fake) == {"attention", "kv_cache", "plotting", "gpt", "plotting.core"}
    assert lesson_of("plotting") == max(LESSON.values()) and lesson_of("plotting.core") == 0
