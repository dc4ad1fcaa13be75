"""Shared test set-up: paths, tiny odd sizes, seeding."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# Two xdist workers share the cores. A lesson cell that times two threads (lesson 09) while the other
# worker is busy makes each parallel region wait for a descheduled thread, and OpenMP's default is to
# spin while waiting: that cell took 101 s instead of 6 s. Passive waiting (set before PyTorch loads
# OpenMP, and inherited by every kernel) changes how threads wait, never a result; no test compares
# timings. A learner's own runs keep the default, which is faster on a quiet machine.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(1, str(ROOT))        # course.py

from build_notebooks import lesson_paths  # noqa: E402

# One PyTorch thread per test process, as in the lessons: `python course.py test` runs two xdist
# workers on two cores, and a worker whose PyTorch spreads over both cores while the other worker
# runs a lesson is oversubscribed (a 3 s training test took 111 s that way).
torch.set_num_threads(1)

# Odd, pairwise different sizes: a swapped axis cannot pass unnoticed.
B, T, S, D, H = 2, 5, 7, 12, 3
D_K = D // H
D_FF = 20


def randomise_norms(module: torch.nn.Module) -> None:
    """Give every LayerNorm a non-trivial weight and bias, so a comparison tests them too."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
    if torch.get_num_threads() != 1:     # a test that changed it must not slow every later test
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """nbval judges the lessons in solutions/ only: a learner's own notebook there (Untitled.ipynb,
    a "-Copy1") is left alone. In CI, tests/test_notebooks.py fails on any such extra file."""
    solutions = (ROOT / "solutions").resolve()
    lessons = {p.resolve() for p in lesson_paths(solutions)}
    extra = [item for item in items if item.path.suffix == ".ipynb" and item.path.resolve().parent == solutions
             and item.path.resolve() not in lessons]
    if extra:
        config.hook.pytest_deselected(items=extra)
        items[:] = [item for item in items if item not in extra]
