"""Small helpers: seeding, parameter counts, the environment check."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from transformer_lib.environment import check_environment, pinned_versions
from transformer_lib.utils import count_parameters, seed_everything


def test_seed_everything_makes_draws_repeat():
    seed_everything(3)
    a = torch.randn(4)
    seed_everything(3)
    assert torch.equal(a, torch.randn(4))
    assert torch.get_num_threads() == 1          # NUM_THREADS: one thread unless configured
    with pytest.raises(TypeError):
        seed_everything(1.5)


def test_count_parameters_counts_tied_weights_once():
    emb, out = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    out.weight = emb.weight
    assert count_parameters(nn.ModuleList([emb, out])) == 40


def test_environment_check_reads_the_pins(capsys):
    pins = pinned_versions()
    assert pins["torch"] == "2.13.0" and "numpy" in pins
    check_environment()
    out = capsys.readouterr().out
    assert "torch 2.13.0" in out and ("All set" in out or "problem(s)" in out)


def test_assert_trained_asserts_outside_smoke_mode_only(monkeypatch):
    from transformer_lib.utils import assert_trained
    monkeypatch.delenv("TRANSFORMER_COURSE_SMOKE", raising=False)
    assert_trained(True, "fine")
    with pytest.raises(AssertionError, match="too low"):
        assert_trained(0.5 >= 0.99, "too low")
    monkeypatch.setenv("TRANSFORMER_COURSE_SMOKE", "1")
    assert_trained(False, "skipped in smoke mode")
    with pytest.raises(TypeError, match="message must be a str"):
        assert_trained(True, 3)
