"""Shared test set-up: paths, tiny odd sizes, seeding."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

# Odd, pairwise different sizes: a swapped axis cannot pass unnoticed.
B, T, S, D, H = 2, 5, 7, 12, 3
D_K = D // H


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
