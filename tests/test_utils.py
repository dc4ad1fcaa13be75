"""The runtime (seeding, threads, devices, smoke mode), parameter counts, the environment check."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from transformer_lib.environment import check_environment, pinned_versions
from transformer_lib.runtime import seed_everything, threads_from_environment, usable_cpus
from transformer_lib.utils import count_parameters

ROOT = Path(__file__).resolve().parent.parent


def test_seed_everything_makes_draws_repeat():
    seed_everything(3)
    a = torch.randn(4)
    seed_everything(3)
    assert torch.equal(a, torch.randn(4))
    # NUM_THREADS: one thread unless TRANSFORMER_COURSE_THREADS asks for more (and the CPUs allow it)
    assert torch.get_num_threads() == max(1, min(threads_from_environment(), usable_cpus()))
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
    from transformer_lib.runtime import assert_trained
    monkeypatch.delenv("TRANSFORMER_COURSE_SMOKE", raising=False)
    assert_trained(True, "fine")
    with pytest.raises(AssertionError, match="too low"):
        assert_trained(0.5 >= 0.99, "too low")
    monkeypatch.setenv("TRANSFORMER_COURSE_SMOKE", "1")
    assert_trained(False, "skipped in smoke mode")
    with pytest.raises(TypeError, match="message must be a str"):
        assert_trained(True, 3)


def test_training_steps_shortens_loops_in_smoke_mode_only(monkeypatch):
    from transformer_lib.runtime import SMOKE_STEPS, training_steps

    monkeypatch.delenv("TRANSFORMER_COURSE_SMOKE", raising=False)
    assert training_steps(400) == 400 and training_steps(1) == 1
    monkeypatch.setenv("TRANSFORMER_COURSE_SMOKE", "1")
    assert training_steps(400) == SMOKE_STEPS and training_steps(1) == 1
    with pytest.raises(ValueError, match="steps"):
        training_steps(0)
    monkeypatch.delenv("TRANSFORMER_COURSE_SMOKE")
    monkeypatch.setenv("TRANSFORMER_COURSE_MAX_STEPS", "5")                  # tests/test_sabotage.py
    assert training_steps(400) == 5 and training_steps(2) == 2
    monkeypatch.setenv("TRANSFORMER_COURSE_MAX_STEPS", "five")
    with pytest.raises(ValueError, match="whole number of steps, got 'five'"):
        training_steps(400)


def test_a_bad_thread_count_in_the_environment_warns_and_uses_one():
    code = "import transformer_lib, transformer_lib.runtime as r; print(r.NUM_THREADS)"
    env = {**os.environ, "TRANSFORMER_COURSE_THREADS": "abc",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr                      # `import transformer_lib` still works
    assert run.stdout.strip() == "1"
    assert run.stderr.count("TRANSFORMER_COURSE_THREADS='abc' is not a positive whole number") == 1   # once
    assert "using 1" in run.stderr


@pytest.mark.parametrize("value, threads, warns", [("2", 2, False), (" 3 ", 3, False), ("abc", 1, True),
                                                   ("0", 1, True), ("-2", 1, True), ("1.5", 1, True), ("", 1, True)])
def test_threads_from_environment(value, threads, warns):
    from transformer_lib.runtime import threads_from_environment
    if not warns:
        assert threads_from_environment(value) == threads
        return
    with pytest.warns(RuntimeWarning, match=f"={value!r} is not a positive whole number of CPU threads: using 1"):
        assert threads_from_environment(value) == threads


def test_pick_device_speaks():
    from transformer_lib.runtime import pick_device
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type in ("cpu", "cuda")
    with pytest.raises(ValueError, match=r"prefer must be a device PyTorch knows, such as 'cpu', 'cuda' \(or 'cuda:N'\) "
                                         r"or 'mps', got 'tpu'"):
        pick_device("tpu")
    with pytest.raises(TypeError, match="prefer must be a device such as 'cpu' or 'cuda', or a torch.device, got int 0"):
        pick_device(0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="this machine has no 'cuda' device .*pick_device\\('cpu'\\)"):
            pick_device("cuda")


def test_count_parameters_and_seed_reject_what_they_cannot_count():
    with pytest.raises(TypeError, match=r"module must be an nn.Module .*got a Tensor of shape \(2, 3\).*numel"):
        count_parameters(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="trainable_only must be True or False"):
        count_parameters(nn.Linear(2, 2), trainable_only="yes")
    with pytest.raises(ValueError, match="threads must be a positive int, got 0"):
        seed_everything(0, threads=0)


def test_setup_notebook_seeds_and_styles_the_figures():
    import matplotlib as mpl

    from transformer_lib.plotting import setup_notebook              # the first cell of every lesson
    from transformer_lib.runtime import setup_notebook as runtime_setup_notebook
    assert setup_notebook is runtime_setup_notebook
    mpl.rcParams["figure.dpi"] = 100
    setup_notebook(5)
    a = torch.randn(3)
    setup_notebook(5)
    assert torch.equal(a, torch.randn(3)) and mpl.rcParams["figure.dpi"] == 72


def test_importing_the_model_code_loads_no_plotting_library():
    code = ("import sys, transformer_lib, transformer_lib.runtime, transformer_lib.kv_cache, transformer_lib.gpt; "
            "print([m for m in ('matplotlib', 'ipywidgets') if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
