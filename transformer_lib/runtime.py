"""Lesson 00: how every lesson runs: CPU threads, seeding, the device, smoke-test mode, the notebook set-up.

* :data:`NUM_THREADS` (``TRANSFORMER_COURSE_THREADS``, default 1) and :func:`usable_cpus` (the CPU
  affinity and a container's cgroup quota): the threads PyTorch may use;
* :func:`seed_everything`: Python, NumPy and PyTorch seeded, the thread count fixed;
* :func:`pick_device`: CUDA when present, else the CPU;
* :func:`smoke_test_mode` (``TRANSFORMER_COURSE_SMOKE=1``): training runs :data:`SMOKE_STEPS` steps
  only (:func:`training_steps`), and :func:`assert_trained` checks nothing;
* ``TRANSFORMER_COURSE_MAX_STEPS=N``: every training loop stops after N steps, and trained results
  are still asserted (tests/test_sabotage.py: with the learning rate sabotaged to 0 the weights
  never move, so the remaining steps would change nothing);
* :func:`setup_notebook`: the first cell of every lesson.

Nothing here imports matplotlib or ipywidgets at import time (see ``transformer_lib.plotting``).
"""
from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch

from .validation import check_device, check_int, check_positive_int

__all__ = ["THREADS_VARIABLE", "NUM_THREADS", "SMOKE_STEPS", "threads_from_environment", "usable_cpus",
           "seed_everything", "pick_device", "smoke_test_mode", "training_steps", "assert_trained", "setup_notebook"]

#: Steps a training loop runs when TRANSFORMER_COURSE_SMOKE=1 (the exercise-notebook tests).
SMOKE_STEPS = 3

THREADS_VARIABLE = "TRANSFORMER_COURSE_THREADS"


def threads_from_environment(value: str | None = None) -> int:
    """The thread count ``TRANSFORMER_COURSE_THREADS`` asks for (``value``, default: the
    environment's): a positive int, else 1. A value that is not one (``"abc"``, ``"0"``) gives a
    warning that names it, and 1: a typo must not stop ``import transformer_lib``."""
    if value is None:
        value = os.environ.get(THREADS_VARIABLE, "1")
    try:
        threads = int(value.strip())
    except ValueError:
        threads = 0
    if threads < 1:
        warnings.warn(f"{THREADS_VARIABLE}={value!r} is not a positive whole number of CPU threads: using 1. "
                      f"Set it to 1 or 2 (or unset it)", RuntimeWarning, stacklevel=2)
        return 1
    return threads


#: CPU threads every lesson uses: one, unless TRANSFORMER_COURSE_THREADS says otherwise.
#: - Results of float reductions depend on the thread count, so a fixed count makes the stored
#:   notebook outputs reproducible (nbval) on every machine, however many cores it has.
#: - The course's tiny tensors gain little from a second thread (about 1.3x for training), and
#:   lose a lot when the machine is busy: threads that wait for a shared core made training
#:   5-20x slower in our measurements. With one thread per lesson, the tests run two lessons
#:   side by side instead.
NUM_THREADS = threads_from_environment()


def usable_cpus() -> int:
    """CPUs this process may really use: its CPU affinity, capped by a container's CPU quota
    (cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``, as on Binder)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        n = os.cpu_count() or 1
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            fields = open(quota_file).read().split()
            quota, period = (fields[0], fields[1]) if period_file is None else (fields[0], open(period_file).read().strip())
            if quota not in ("max", "-1"):
                n = min(n, max(1, int(int(quota) / int(period))))
            break
        except (OSError, ValueError, IndexError):
            continue
    return max(1, n)


def seed_everything(seed: int = 0, threads: int | None = NUM_THREADS) -> None:
    """Seed Python, NumPy and PyTorch, and fix PyTorch's CPU thread count.

    Args:
        seed: the seed for ``random``, ``numpy.random`` and ``torch``.
        threads: CPU threads for PyTorch, capped by :func:`usable_cpus` (more threads than
            CPUs make PyTorch's threads wait for each other); ``None`` leaves the current
            setting. The same seed with the same thread count gives bit-identical results on
            the same machine.
    """
    check_int("seed", seed)
    if threads is not None:
        check_positive_int("threads", threads)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(max(1, min(threads, usable_cpus())))


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return CUDA when a GPU is present, else the CPU; ``prefer`` ("cpu", "cuda", "cuda:1",
    "mps") overrides, if this machine has that device."""
    if prefer is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = check_device("prefer", prefer)
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise ValueError(f"this machine has no {device.type!r} device that PyTorch can use: "
                         f"use pick_device() (the CPU here) or pick_device('cpu')")
    return device


def smoke_test_mode() -> bool:
    """True when ``TRANSFORMER_COURSE_SMOKE=1``: training loops then run a few steps only.

    The test suite sets it to run every *exercise* notebook to the end quickly; the solution
    notebooks always run in full.
    """
    return os.environ.get("TRANSFORMER_COURSE_SMOKE", "") not in ("", "0")


def training_steps(steps: int) -> int:
    """The number of steps a training loop runs: ``steps``, or at most :data:`SMOKE_STEPS` in
    smoke-test mode (:func:`smoke_test_mode`), so a lesson writes ``range(training_steps(400))``
    instead of testing the mode itself. ``TRANSFORMER_COURSE_MAX_STEPS=N`` caps it at N too."""
    check_positive_int("steps", steps)
    cap = os.environ.get("TRANSFORMER_COURSE_MAX_STEPS", "")
    if cap:
        if not cap.strip().isdigit():
            raise ValueError(f"TRANSFORMER_COURSE_MAX_STEPS must be a whole number of steps, got {cap!r}; "
                             "unset it to train in full")
        steps = min(steps, check_positive_int("TRANSFORMER_COURSE_MAX_STEPS", int(cap)))
    return min(steps, SMOKE_STEPS) if smoke_test_mode() else steps


def assert_trained(condition: bool, message: str) -> None:
    """Assert a property of a *trained* result, e.g. ``assert_trained(accuracy >= 0.99, "...")``.

    Results after training (losses, accuracies, sampled text) depend on the floating-point
    order of the CPU they run on, so a lesson prints them with a ``≈`` and asserts a range that
    holds on every platform instead of comparing digits (the output contract, CONTRIBUTING.md).
    In smoke-test mode (:func:`smoke_test_mode`: the test of the exercise notebooks, which
    trains for a few steps only) nothing is asserted.

    Raises:
        AssertionError: with ``message`` when ``condition`` is false outside smoke-test mode.
    """
    __tracebackhide__ = True  # noqa: F841  (IPython and pytest show the learner's line, not this one)
    if not isinstance(message, str):
        raise TypeError(f"message must be a str, got {type(message).__name__}")
    if isinstance(condition, (torch.Tensor, np.ndarray)) and np.prod(condition.shape, dtype=int) != 1:
        raise TypeError(f"condition must be one True or False (e.g. accuracy >= 0.99), got an array of shape "
                        f"{tuple(condition.shape)}: reduce it first, e.g. with .all()")
    if not smoke_test_mode() and not bool(condition):
        raise AssertionError(message)


def setup_notebook(seed: int = 0) -> None:
    """First cell of every lesson: seed everything, fix the thread count (:func:`seed_everything`),
    and give figures the course's style (small 72-dpi PNGs, so the notebooks stay small in git).

    The style lives with the pictures, in ``transformer_lib.plotting``; it is imported here, when a
    notebook is set up, so that ``import transformer_lib`` never loads matplotlib.
    """
    seed_everything(seed)
    from .plotting.core import use_course_style
    use_course_style()
