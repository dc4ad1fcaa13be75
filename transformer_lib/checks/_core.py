"""The machinery behind every exercise check.

A check is written as a function ``body(fn)`` that runs the learner's ``fn`` on several cases
and calls :func:`fail` with a diagnosis in words when something is wrong. :func:`exercise`
turns it into the ``check_<name>(fn)`` a notebook calls, which

* prints one line and returns ``fn`` when every case passes, so the rest of the lesson uses
  the learner's own function;
* prints a friendly "not implemented yet" message and returns the library's reference when
  ``fn`` still raises ``NotImplementedError``, so "Restart & Run All" goes on past an exercise
  the learner has not done yet;
* raises :class:`CheckFailed` (an ``AssertionError``) whose message says what is wrong.

When the environment variable ``TRANSFORMER_COURSE_PROGRESS`` names a file, every check also
appends one JSON line with its result there (``python course.py progress`` reads them).
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Callable

import numpy as np
import torch

PROGRESS_ENV = "TRANSFORMER_COURSE_PROGRESS"


class CheckFailed(AssertionError):
    """An exercise gave a wrong answer; the message says what is wrong."""


def fail(message: str) -> None:
    """Stop the check with a diagnosis for the learner."""
    __tracebackhide__ = True
    raise CheckFailed(message)


def _record(check: str, status: str, message: str = "") -> None:
    path = os.environ.get(PROGRESS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"check": check, "status": status, "message": message}) + "\n")


def exercise(reference: Callable, name: str | None = None):
    """Decorator: turn ``body(fn)`` into a learner-facing check of the exercise ``name``.

    Args:
        reference: what the rest of the lesson uses while the exercise is not done.
        name: the exercise's function name (default: the check's name without ``check_``).

    ``body`` may return the number of cases it ran, which the success line reports.
    """
    def decorate(body: Callable) -> Callable:
        exercise_name = name or body.__name__.removeprefix("check_")

        @functools.wraps(body)
        def check(fn: Callable) -> Callable:
            __tracebackhide__ = True
            if not callable(fn):
                raise TypeError(f"{body.__name__} takes your function, e.g. {body.__name__}({exercise_name}), "
                                f"got {type(fn).__name__}")
            try:
                with one_thread():
                    n_cases = body(fn)
            except NotImplementedError:
                _record(exercise_name, "todo")
                ref = f"{reference.__module__}.{reference.__qualname__}"
                print(f"⏳ {exercise_name} is not implemented yet: replace `raise NotImplementedError()` "
                      f"with your code and run the exercise cell and this check again.\n"
                      f"   Until then the rest of the lesson uses the library's reference ({ref}).")
                return reference
            except CheckFailed as e:
                _record(exercise_name, "fail", str(e).splitlines()[0] if str(e) else "")
                # raised afresh here so the traceback skips the check's internals; an error
                # raised by the learner's own code stays attached, to show where it happened
                raise CheckFailed(f"{exercise_name}: {e}") from e.__cause__
            _record(exercise_name, "pass")
            cases = f" on all {n_cases} test cases" if isinstance(n_cases, int) else ""
            print(f"✅ {exercise_name} is correct{cases}. The rest of the lesson uses your function.")
            return fn

        check.exercise_name = exercise_name
        check.reference = reference
        return check
    return decorate


@contextlib.contextmanager
def one_thread():
    """Run a check's tiny tensors on one thread: on a busy machine, waking a second thread for
    every small operation costs milliseconds each; the results do not change."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def call(fn: Callable, *args, case: str = "", **kwargs):
    """Call the learner's ``fn``; turn any error other than ``NotImplementedError`` into a
    diagnosis that says on which input it happened (the original error stays attached)."""
    __tracebackhide__ = True
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as e:  # noqa: BLE001 - any learner error becomes a diagnosis
        where = f" on {case}" if case else ""
        raise CheckFailed(f"your function raised {type(e).__name__}{where}: {e}") from e


def call_diagnosing(fn: Callable, *args, case: str = "", raising: dict[str, Callable] | None = None):
    """Like :func:`call`, but when ``fn`` raises, look for a typical mistake that raises the very
    same error on these arguments and name it. ``raising`` maps a diagnosis in words to a
    function with that mistake."""
    __tracebackhide__ = True
    try:
        return call(fn, *args, case=case)
    except CheckFailed as failed:
        error = failed.__cause__
        if error is None:
            raise
        for message, wrong in (raising or {}).items():
            try:
                wrong(*args)
            except type(error) as same:
                if str(same) == str(error):
                    raise CheckFailed(f"your function raised {type(error).__name__} on {case}: {message}") from error
            except Exception:  # noqa: BLE001 - a different error: not this mistake
                pass
        raise


def expect_result(got, what: str) -> None:
    """Fail with a hint when the learner's function returned ``None`` or a NumPy array.

    ``what`` names the result, e.g. "normalize_rows(x) for x of shape (3, 5)".
    """
    __tracebackhide__ = True
    if got is None:
        fail(f"{what}: your function returned None. Did you forget the `return` statement? (An in-place "
             f"operation such as `x /= ...` changes x but returns nothing.)")
    if isinstance(got, np.ndarray):
        fail(f"{what} should be a torch.Tensor, got a NumPy array: stay with torch operations, or convert "
             f"the array with torch.from_numpy(...)")


def describe(x) -> str:
    """A short description of a value for messages: a tensor's shape and dtype, else its type."""
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    if x is None:
        return "None (did your function forget its `return` statement?)"
    return f"a {type(x).__name__}"


def expect_tensor(x, shape: tuple[int, ...] | torch.Size, what: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Fail unless ``x`` is a tensor of ``shape`` (and ``dtype`` when given)."""
    __tracebackhide__ = True
    if isinstance(x, np.ndarray):
        expect_result(x, what)
    if not isinstance(x, torch.Tensor):
        fail(f"{what} should be a torch.Tensor, got {describe(x)}")
    if tuple(x.shape) != tuple(shape):
        fail(f"{what} should have shape {tuple(shape)}, got {tuple(x.shape)}")
    if dtype is not None and x.dtype != dtype:
        fail(f"{what} should have dtype {dtype}, got {x.dtype}")
    return x


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Shapes equal and values close (NaN never counts as close)."""
    return isinstance(a, torch.Tensor) and a.shape == b.shape and bool(
        torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def diagnose(actual: torch.Tensor, mistakes: dict[str, torch.Tensor], atol: float = 1e-5) -> str | None:
    """The description of the first typical mistake whose output equals ``actual``, if any.

    ``mistakes`` maps a diagnosis in words to what a function with that mistake returns.
    """
    for message, wrong in mistakes.items():
        if close(actual, wrong, atol=atol):
            return message
    return None


def expect_close(actual, expected: torch.Tensor, what: str, mistakes: dict[str, torch.Tensor] | None = None,
                 hint: str = "", atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Fail unless ``actual`` equals ``expected``; name the mistake when one of ``mistakes`` matches."""
    __tracebackhide__ = True
    expect_tensor(actual, expected.shape, what)
    if torch.isnan(actual).any() and not torch.isnan(expected).any():
        fail(f"{what} contains NaN. {hint}".strip())
    if close(actual, expected, atol=atol, rtol=rtol):
        return
    found = diagnose(actual, mistakes or {}, atol=atol)
    if found:
        fail(f"{what} is wrong: {found}")
    err = (actual.double() - expected.double()).abs().max().item()
    fail(f"{what} is wrong (largest difference from the reference: {err:.3g}). {hint}".strip())
