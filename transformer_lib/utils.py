"""Small helpers every lesson uses: seeding, devices, parameter counts, argument checks.

Nothing here imports matplotlib or ipywidgets (see ``transformer_lib.plotting``).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn

#: CPU threads every lesson uses: one, unless TRANSFORMER_COURSE_THREADS says otherwise.
#: - Results of float reductions depend on the thread count, so a fixed count makes the stored
#:   notebook outputs reproducible (nbval) on every machine, however many cores it has.
#: - The course's tiny tensors gain little from a second thread (about 1.3x for training), and
#:   lose a lot when the machine is busy: threads that wait for a shared core made training
#:   5-20x slower in our measurements. With one thread per lesson, the tests run two lessons
#:   side by side instead.
NUM_THREADS = int(os.environ.get("TRANSFORMER_COURSE_THREADS", "1"))


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
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(max(1, min(threads, usable_cpus())))


def pick_device(prefer: str | None = None) -> torch.device:
    """Return CUDA when a GPU is present, else the CPU; ``prefer`` ("cpu"/"cuda") overrides."""
    if prefer is not None:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``module``, each shared (tied) tensor counted once."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():  # parameters() already yields a shared tensor once
        if trainable_only and not p.requires_grad:
            continue
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def smoke_test_mode() -> bool:
    """True when ``TRANSFORMER_COURSE_SMOKE=1``: training loops then run a few steps only.

    The test suite sets it to run every *exercise* notebook to the end quickly; the solution
    notebooks always run in full.
    """
    return os.environ.get("TRANSFORMER_COURSE_SMOKE", "") not in ("", "0")


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
    if not smoke_test_mode() and not bool(condition):
        raise AssertionError(message)


def check_positive_int(name: str, value) -> int:
    """Raise a clear ``TypeError``/``ValueError`` unless ``value`` is a positive int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


def check_probability(name: str, value) -> float:
    """Raise a clear error unless ``0 <= value < 1``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1), got {type(value).__name__}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


def check_tensor(name: str, x, ndim: int | tuple[int, ...] | None = None, floating: bool | None = None) -> torch.Tensor:
    """Check that ``x`` is a tensor with the expected number of dimensions and dtype kind.

    Args:
        name: how the argument is called in the error message.
        ndim: allowed number of dimensions (an int or a tuple of ints), ``None`` for any.
        floating: ``True`` for a float tensor, ``False`` for an integer one, ``None`` for any.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.dim() not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")
    if floating is True and not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got dtype {x.dtype}")
    if floating is False and (x.is_floating_point() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor of token ids, got dtype {x.dtype}")
    return x
