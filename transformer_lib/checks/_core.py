"""The machinery behind every exercise check.

A check is written as a function ``body(fn)`` that runs the learner's ``fn`` on several cases
through :func:`call` and calls :func:`fail` with a diagnosis in words when something is wrong.
:func:`exercise` turns it into the ``check_<name>(fn)`` a notebook calls, which

* prints one line and returns ``fn`` when every case passes, so the rest of the lesson uses
  the learner's own function;
* prints a friendly "not implemented yet" message and returns the library's reference when
  ``fn`` is still the **untouched stub** (its first call raises a bare ``NotImplementedError()``
  from the function's own body, as the exercise notebooks are generated). Any other
  ``NotImplementedError`` (one with a message, or one raised for some inputs only) is the
  learner's code and is judged like any other error;
* raises :class:`CheckFailed` (an ``AssertionError``) whose message says what is wrong, on
  which input, and what to change. Its traceback holds only the learner's own frames (the line
  of theirs that raised, or the ``return`` line of the call whose result was wrong), never the
  course's source: IPython hides the check's own frame (``__tracebackhide__``).

Rules that hold for every check (enforced in :func:`call`):

* **Arguments are not to be modified.** A check passes copies of its tensors, dicts and lists
  and compares them (and the parameters of any module it passes) with the originals after the
  call; a function that changed one in place fails, and the message names the argument.
* Warnings raised while the learner's code runs are kept out of the output; a known one that
  explains a failure (``x.T`` on a batched tensor) becomes part of the diagnosis.
* A raw error from the learner's code gets one added line saying what to change when it is a
  common one (a tuple from an attention layer, a float size, a weight in the other orientation).

When the environment variable ``TRANSFORMER_COURSE_PROGRESS`` names a file, every check also
appends one JSON line with its result there (``python course.py progress`` reads them).

When ``TRANSFORMER_COURSE_GRADING=1`` (set for nbgrader's autograder by the ``nbgrader_config.py``
that ``tools/nbgrader_course.py`` writes), a check whose exercise is not started or wrong prints
its message to **stderr**, which nbgrader scores 0 points, and returns the library's reference:
the rest of the notebook, and every later exercise, is then graded on its own.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import linecache
import numbers
import os
import re
import sys
import sysconfig
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

PROGRESS_ENV = "TRANSFORMER_COURSE_PROGRESS"
GRADING_ENV = "TRANSFORMER_COURSE_GRADING"
_LIBRARY = str(Path(__file__).resolve().parent.parent) + os.sep            # .../transformer_lib/
_INSTALLED = tuple(str(Path(p).resolve()) + os.sep for p in {sysconfig.get_paths()[k] for k in
                                                               ("stdlib", "platstdlib", "purelib", "platlib")})


class CheckFailed(AssertionError):
    """An exercise gave a wrong answer; the message says what is wrong.

    ``learner_error`` is the exception the learner's own code raised, if that is what failed.
    """
    learner_error: BaseException | None = None


class _NotStarted(BaseException):
    """The untouched stub ran (a BaseException, so no check's ``except`` can swallow it)."""


@dataclass
class _Run:
    """What one run of a check knows about the learner's function."""
    fn: Callable | None = None
    reference: Callable | None = None
    calls: int = 0
    frame: types.FrameType | None = None          # the learner's frame of the latest call


_RUNS: list[_Run] = []


def _current() -> _Run:
    return _RUNS[-1] if _RUNS else _Run()


def fail(message: str, error: BaseException | None = None) -> None:
    """Stop the check with a diagnosis for the learner (``error``: what the learner's code raised)."""
    __tracebackhide__ = True
    failed = CheckFailed(message)
    failed.learner_error = error
    raise failed


def reword(failed: CheckFailed, message: str) -> CheckFailed:
    """``failed`` with another message, keeping the learner's error (``raise reword(e, ...) from None``)."""
    new = CheckFailed(message)
    new.learner_error = failed.learner_error
    return new


def grading() -> bool:
    """Whether the checks run under an autograder (``TRANSFORMER_COURSE_GRADING`` set, not "0")."""
    return os.environ.get(GRADING_ENV, "") not in ("", "0")


def _record(check: str, status: str, message: str = "") -> None:
    path = os.environ.get(PROGRESS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"check": check, "status": status, "message": message}) + "\n")


# ---------------------------------------------------------------------------------- the decorator

def exercise(reference: Callable, name: str | None = None):
    """Decorator: turn ``body(fn)`` into a learner-facing check of the exercise ``name``.

    Args:
        reference: what the rest of the lesson uses while the exercise is not done. It is marked
            ``__course_reference__ = True``, so :func:`yours` can label results that come from it.
        name: the exercise's function name (default: the check's name without ``check_``).

    ``body`` may return the number of cases it ran, which the success line reports.
    """
    reference.__course_reference__ = True

    def decorate(body: Callable) -> Callable:
        exercise_name = name or body.__name__.removeprefix("check_")

        @functools.wraps(body)
        def check(fn: Callable) -> Callable:
            __tracebackhide__ = True  # noqa: F841 - read by IPython and pytest: the learner sees their own frames
            if not callable(fn):
                raise TypeError(f"{body.__name__} takes your function, e.g. {body.__name__}({exercise_name}), "
                                f"got {type(fn).__name__}")
            run = _Run(fn, reference)
            status, result = _run_body(body, fn, run, exercise_name)
            if status == "todo":
                _record(exercise_name, "todo")
                if grading():
                    return _graded_zero(f"⏳ {exercise_name} is not implemented", reference)
                ref = f"{reference.__module__}.{reference.__qualname__}"
                print(f"⏳ {exercise_name} is not implemented yet: replace `raise NotImplementedError()` "
                      f"with your code and run the exercise cell and this check again.\n"
                      f"   Until then the rest of the lesson uses the library's reference ({ref}).")
                return reference
            if status == "fail":
                _record(exercise_name, "fail", str(result).splitlines()[0] if str(result) else "")
                if grading():
                    return _graded_zero(f"❌ {result}", reference)
                raise result.with_traceback(_learner_traceback(run, result)) from None
            _record(exercise_name, "pass")
            cases = f" on all {result} test cases" if isinstance(result, int) else ""
            print(f"✅ {exercise_name} is correct{cases}. The rest of the lesson uses your function.")
            return fn

        check.exercise_name = exercise_name
        check.reference = reference
        return check
    return decorate


def _graded_zero(message: str, reference: Callable) -> Callable:
    """Under an autograder: say on stderr (nbgrader gives a test cell with stderr output 0 points)
    why this exercise scores nothing, and go on with the reference, so the rest of the notebook and
    the later exercises are graded on their own, not failed with this one."""
    print(f"{message}\n   Graded: 0 points for this exercise. The rest of the notebook uses the library's "
          f"reference ({reference.__module__}.{reference.__qualname__}).", file=sys.stderr, flush=True)
    return reference


def _run_body(body: Callable, fn: Callable, run: _Run, exercise_name: str) -> tuple[str, Any]:
    """Run a check's body: ("pass", n_cases), ("todo", None) or ("fail", CheckFailed)."""
    _RUNS.append(run)
    try:
        with one_thread(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return "pass", body(fn)
            except _NotStarted:
                return "todo", None
            except CheckFailed as e:
                return "fail", reword(e, f"{exercise_name}: {e}{_warning_notes(caught, str(e))}")
    finally:
        _RUNS.pop()


_WARNING_NOTES = [
    (re.compile(r"use of `x\.T` on tensors of dimension other than 2"), "transpose(-2, -1)",
     "PyTorch warned that your code used `.T` on a tensor with more than 2 dimensions, which reverses "
     "*all* its axes: to swap the last two, use .transpose(-2, -1) (or .mT)."),
]


def _warning_notes(caught: list, message: str) -> str:
    """Known warnings that explain a failure, as extra lines (the others are dropped)."""
    notes = []
    for pattern, already_said, note in _WARNING_NOTES:
        if any(pattern.search(str(w.message)) for w in caught) and already_said not in message:
            notes.append(f"\n   Note: {note}")
    return "".join(notes)


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


# ---------------------------------------------------------------------------------- tracebacks

def _is_learner_file(filename: str) -> bool:
    """Code the learner wrote (a notebook cell, a script, a test), not the course's or an installed
    package's."""
    if filename.startswith("<frozen"):
        return False
    path = os.path.realpath(filename) if os.path.isabs(filename) else filename
    return not path.startswith(_LIBRARY) and not path.startswith(_INSTALLED)


def _learner_traceback(run: _Run, failed: CheckFailed) -> types.TracebackType | None:
    """A traceback of the learner's own frames only: where their code raised (the library frames
    under it left out), or else the ``return`` line of their latest call."""
    entries = []
    error = failed.learner_error
    tb = error.__traceback__ if error is not None else None
    while tb is not None:
        if _is_learner_file(tb.tb_frame.f_code.co_filename):
            entries.append((tb.tb_frame, tb.tb_lasti, tb.tb_lineno))
        tb = tb.tb_next
    if not entries and run.frame is not None and run.frame.f_lineno is not None:
        entries.append((run.frame, run.frame.f_lasti, run.frame.f_lineno))
    chain = None
    for frame, lasti, lineno in reversed(entries):
        chain = types.TracebackType(chain, frame, lasti, lineno)
    return chain


def _code_of(fn: Callable):
    fn = inspect.unwrap(fn) if callable(fn) else fn
    code = getattr(fn, "__code__", None)
    if code is None:
        code = getattr(getattr(type(fn), "__call__", None), "__code__", None)
    return code


@contextlib.contextmanager
def _capture_frame(fn: Callable, run: _Run):
    """Keep the learner's frame of this call (for the traceback of a wrong result), through
    ``sys.settrace`` or, when a debugger or coverage tool traces already, ``sys.setprofile``;
    skipped when both are taken."""
    code = _code_of(fn)
    run.frame = None
    if code is None:
        yield
        return

    def hook(frame, event, arg):
        if event == "call" and frame.f_code is code and run.frame is None:
            run.frame = frame
        return None

    for get, set_ in ((sys.gettrace, sys.settrace), (sys.getprofile, sys.setprofile)):
        if get() is None:
            set_(hook)
            try:
                yield
            finally:
                set_(None)
            return
    yield


# ---------------------------------------------------------------------------------- calling the learner

#: Common raw errors -> what to change (one line, added under the error).
TRANSLATIONS: list[tuple[str, str]] = [
    (r"for [-+*/@]=?: '(Tensor|tuple)' and '(tuple|Tensor)'|must be Tensor, not tuple|'tuple' object has no attribute",
     "a tuple reached a tensor operation. The attention layers (self_attn, cross_attn, MultiHeadAttention) "
     "and scaled_dot_product_attention return a pair (output, weights): take the output with [0], e.g. "
     "layer.self_attn(x, x, x, mask=mask)[0]"),
    (r"tuple of ints, ?but (found element of type|got) float",
     "a size is a float: sizes must be ints. D / num_heads gives a float even when it divides evenly; "
     "use integer division, d_k = D // num_heads"),
    (r"view size is not compatible with input tensor's size and stride",
     "view needs the numbers in memory order, and transpose only changes how they are read: after a "
     "transpose use .reshape(...) (or .contiguous().view(...))"),
]
_MATMUL = re.compile(r"\((\d+)x(\d+) and (\d+)x(\d+)\)")


def translate(error: BaseException) -> str | None:
    """One line saying what to change for a common raw error, or ``None``."""
    text = str(error)
    for pattern, advice in TRANSLATIONS:
        if re.search(pattern, text):
            return advice
    m = _MATMUL.search(text)
    if m and m.group(2) == m.group(4) and m.group(2) != m.group(3):
        n, d, f = m.group(1), m.group(2), m.group(3)
        return (f"({n}×{d}) @ ({f}×{d}): the second matrix is stored the other way round. F.linear(x, w) and "
                f"nn.Linear compute x @ w.T, for a weight stored (out, in); a weight stored (in, out), like the "
                f"paper's w_1 of shape (d_model, d_ff), is used as x @ w_1")
    return None


def learner_source(error: BaseException) -> str:
    """The source lines of the learner's own frames in ``error``'s traceback (where they are known)."""
    lines = []
    tb = error.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if _is_learner_file(filename):
            lines.append(linecache.getline(filename, tb.tb_lineno, tb.tb_frame.f_globals).strip())
        tb = tb.tb_next
    return "\n".join(lines)


def _learner_error(error: BaseException, case: str, advice: str | None) -> CheckFailed:
    where = f" on {case}" if case else ""
    message = f"your function raised {type(error).__name__}{where}: {error}"
    if advice:
        message += f"\n   Hint: {advice}"
    failed = CheckFailed(message)
    failed.learner_error = error
    return failed


def _is_untouched_stub(error: NotImplementedError, fn: Callable) -> bool:
    """A bare ``NotImplementedError()`` raised by the function's own body (the generated stub)."""
    if error.args:
        return False
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    code = _code_of(fn)
    if tb is None:
        return False
    return tb.tb_frame.f_code is code if code is not None else _is_learner_file(tb.tb_frame.f_code.co_filename)


def call(fn: Callable, *args, case: str = "", hints: dict[str, str] | None = None,
         explain: Callable[[BaseException], str | None] | None = None, trains: bool = False, **kwargs):
    """Call the learner's ``fn`` on copies of the arguments and return its result.

    * An error becomes a :class:`CheckFailed` that names the input (``case``) and adds one line
      saying what to change: ``explain(error)`` if it returns one, else the first of ``hints``
      (regular expression -> advice) that matches the message, else :func:`translate`.
    * The untouched stub stops the check as "not implemented yet" (on the first call only).
    * Any argument changed in place (a tensor, a dict or list, a module's parameters) fails,
      except the parameters of the modules given to a training step (``trains=True``): updating
      them is its job.
    """
    __tracebackhide__ = True
    run = _current()
    run.calls += 1
    first = run.calls == 1
    memo: dict[int, Any] = {}
    copies = [_copy(a, memo) for a in args]
    kw_copies = {k: _copy(v, memo) for k, v in kwargs.items()}
    modules = [] if trains else _module_states(list(args) + list(kwargs.values()))
    try:
        with _capture_frame(fn, run):
            result = fn(*copies, **kw_copies)
    except (CheckFailed, _NotStarted):
        raise
    except NotImplementedError as e:
        if first and _is_untouched_stub(e, fn):
            raise _NotStarted() from None
        raise _learner_error(e, case, _advice(e, hints, explain)) from e
    except Exception as e:  # noqa: BLE001 - any learner error becomes a diagnosis
        raise _learner_error(e, case, _advice(e, hints, explain)) from e
    _expect_unchanged(run, args, kwargs, copies, kw_copies, modules, case, result)
    return result


def _advice(error: BaseException, hints: dict[str, str] | None, explain) -> str | None:
    if explain is not None:
        said = explain(error)
        if said:
            return said
    for pattern, advice in (hints or {}).items():
        if re.search(pattern, str(error)):
            return advice
    return translate(error)


def raises_same(wrong: Callable, args: tuple, kwargs: dict, error: BaseException) -> bool:
    """Whether ``wrong(*args, **kwargs)`` raises the very same error (type and message)."""
    try:
        wrong(*args, **kwargs)
    except type(error) as same:
        return str(same) == str(error)
    except Exception:  # noqa: BLE001 - a different error: not this mistake
        return False
    return False


def call_diagnosing(fn: Callable, *args, case: str = "", raising: dict[str, Callable] | None = None,
                    explain: Callable[[BaseException], str | None] | None = None, **kwargs):
    """Like :func:`call`, but when ``fn`` raises, look for a typical mistake that raises the very
    same error on these arguments and name it. ``raising`` maps a diagnosis in words to a
    function with that mistake; ``explain(error)`` is asked first."""
    __tracebackhide__ = True

    def diagnosis(error):
        said = explain(error) if explain is not None else None
        if said:
            return said
        for message, wrong in (raising or {}).items():
            if raises_same(wrong, args, kwargs, error):
                return message
        return None

    return call(fn, *args, case=case, explain=diagnosis, **kwargs)


# ---------------------------------------------------------------------------------- the in-place rule

def _copy(value, memo: dict[int, Any]):
    """A copy of the tensors, lists, tuples and dicts in ``value`` (the same object copied once)."""
    if id(value) in memo:
        return memo[id(value)]
    if isinstance(value, torch.Tensor):
        out = value.detach().clone()
        if value.requires_grad:
            out.requires_grad_()
    elif type(value) is dict:
        out = {k: _copy(v, memo) for k, v in value.items()}
    elif type(value) is list:
        out = [_copy(v, memo) for v in value]
    elif type(value) is tuple:
        out = tuple(_copy(v, memo) for v in value)
    else:
        return value
    memo[id(value)] = out
    return out


def _module_states(values) -> list[tuple[int, nn.Module, dict[str, torch.Tensor]]]:
    """(position, module, copy of its parameters and buffers) for every module among ``values``."""
    return [(i, v, {k: t.detach().clone() for k, t in v.state_dict(keep_vars=True).items()})
            for i, v in enumerate(values) if isinstance(v, nn.Module)]


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and "meta" in (a.device.type, b.device.type):
        return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device   # no values to compare
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.equal(a.detach(), b.detach()) or (
                    a.is_floating_point() and torch.isclose(a.detach(), b.detach(), rtol=0, atol=0,
                                                            equal_nan=True).all())))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if a is b:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):          # e.g. NumPy arrays: compare their values
        return bool(np.array_equal(a, b))


def _argument_names(run: _Run, n_args: int, kwargs: dict) -> list[str]:
    """The names of the positional arguments in the exercise's signature (the reference's)."""
    names = []
    try:
        params = [p.name for p in inspect.signature(run.reference).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    for i in range(n_args):
        names.append(params[i] if i < len(params) else f"argument {i + 1}")
    return names


def _expect_unchanged(run: _Run, args, kwargs, copies, kw_copies, modules, case: str, result) -> None:
    __tracebackhide__ = True
    returned = (" It also returned None: an in-place operation such as x /= ... changes x and returns nothing; "
                "compute a new tensor and `return` it.") if result is None else ""
    names = _argument_names(run, len(args), kwargs) + list(kwargs)
    values = list(args) + list(kwargs.values())
    passed = list(copies) + list(kw_copies.values())
    on = f" on {case}" if case else ""
    for name, original, given in zip(names, values, passed):
        if given is original or _same(original, given):
            continue
        fail(_inplace_message(name, original, given, on) + returned)
    for i, module, before in modules:
        now = module.state_dict(keep_vars=True)
        for key, old in before.items():
            if key not in now or not _same(old, now[key]):
                fail(f"your function changed `{names[i]}.{key}` in place{on}: a forward pass must leave the "
                     f"parameters as they are (no .data, .copy_, *= on a weight)")


_INPLACE_FIX = ("The caller still needs it: compute a new tensor instead (x = x - m, not x -= m; masked_fill, not "
                "masked_fill_; ~mask, not mask.logical_not_()), or work on a copy, x.clone()")


def _inplace_message(name: str, original, given, on: str) -> str:
    """What changed in the argument ``name``, and how to leave it alone."""
    if isinstance(original, torch.Tensor) and isinstance(given, torch.Tensor):
        if original.shape != given.shape:
            return (f"your function changed the shape of its argument `{name}` in place{on}, from "
                    f"{tuple(original.shape)} to {tuple(given.shape)}. {_INPLACE_FIX}")
        if original.dtype == torch.bool and bool((given == ~original).all()):
            return (f"your function inverted its argument `{name}` in place{on} (e.g. {name}.logical_not_() or "
                    f"{name} ^= True): every entry of the caller's mask is flipped. Invert into a new tensor, "
                    f"~{name}, and leave the caller's mask as it is")
        index = first_difference(given, original, atol=0.0, rtol=0.0)
        if index is not None:
            return (f"your function changed its argument `{name}` in place{on} (first change at {_index(index)}: "
                    f"{_number(original[index])} became {_number(given[index])}). {_INPLACE_FIX}")
    kind = type(original).__name__
    return (f"your function changed its argument `{name}` (a {kind}) in place{on}: only read it, or work on a "
            f"copy ({kind}(...) or copy.deepcopy)")


# ---------------------------------------------------------------------------------- results

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


def as_whole_number(x, what: str) -> int:
    """An exact count returned as any number type: ``int``, a NumPy integer, a one-element integer
    tensor, or a float/float tensor with a whole value. Anything else fails."""
    __tracebackhide__ = True
    value = x
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype != np.bool_:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        fail(f"{what} should be a whole number (an int), got {describe(x)}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not float(value).is_integer():
        fail(f"{what} should be a whole number (an int), got {value!r}: a count has no fraction")
    return int(value)


def as_real_number(x, what: str) -> float:
    """A number returned as any real type (int, float, NumPy scalar, one-element tensor)."""
    __tracebackhide__ = True
    value = x
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        fail(f"{what} should be a number, got {describe(x)}")
    return float(value)


def close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4, equal_nan: bool = False) -> bool:
    """Shapes equal and values close (NaN counts as close to NaN only with ``equal_nan``)."""
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool(
        torch.allclose(a.detach().double(), b.detach().double(), atol=atol, rtol=rtol, equal_nan=equal_nan))


def diagnose(actual: torch.Tensor, mistakes: dict[str, torch.Tensor], atol: float = 1e-5, rtol: float = 1e-4,
             equal_nan: bool = False) -> str | None:
    """The description of the first typical mistake whose output equals ``actual``, if any.

    ``mistakes`` maps a diagnosis in words to what a function with that mistake returns.
    """
    for message, wrong in mistakes.items():
        if close(actual, wrong, atol=atol, rtol=rtol, equal_nan=equal_nan):
            return message
    return None


def first_difference(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5,
                     rtol: float = 1e-4) -> tuple[int, ...] | None:
    """The index of the first entry (in row-major order) where ``actual`` and ``expected`` differ."""
    a, b = actual.detach(), expected.detach()
    if a.is_floating_point() or b.is_floating_point():
        bad = ~torch.isclose(a.double(), b.double(), atol=atol, rtol=rtol, equal_nan=True)
    else:
        bad = a != b
    if not bool(bad.any()):
        return None
    return tuple(int(i) for i in bad.nonzero()[0])


def _index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, index)) + "]"


def _number(x) -> str:
    x = x.item() if isinstance(x, torch.Tensor) else x
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def where_wrong(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> str:
    """'the first wrong entry is [i, j] = got, expected want (largest difference d)'."""
    index = first_difference(actual, expected, atol, rtol)
    err = (actual.detach().double() - expected.detach().double()).abs()
    largest = err[~torch.isnan(err)].max().item() if bool((~torch.isnan(err)).any()) else float("nan")
    if index is None:
        return f"largest difference from the reference: {largest:.3g}"
    at = f"the value is {_number(actual[index])}" if not index else \
        f"the first wrong entry is {_index(index)} = {_number(actual[index])}"
    return f"{at}, expected {_number(expected[index])} (largest difference from the reference: {largest:.3g})"


def expect_close(actual, expected: torch.Tensor, what: str, mistakes: dict[str, torch.Tensor] | None = None,
                 hint: str = "", atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Fail unless ``actual`` equals ``expected``; name the mistake when one of ``mistakes`` matches,
    else show the first wrong entry. ``what`` names the result and the input it came from."""
    __tracebackhide__ = True
    expect_tensor(actual, expected.shape, what)
    has_nan = bool(torch.isnan(actual.detach()).any()) if actual.is_floating_point() else False
    if has_nan and not bool(torch.isnan(expected).any()):
        found = diagnose(actual, mistakes or {}, atol=atol, rtol=rtol, equal_nan=True)
        fail(f"{what} contains NaN: {found}" if found else f"{what} contains NaN. {hint}".strip())
    if close(actual, expected, atol=atol, rtol=rtol):
        return
    found = diagnose(actual, mistakes or {}, atol=atol, rtol=rtol)
    if found:
        fail(f"{what} is wrong: {found}")
    fail(f"{what} is wrong: {where_wrong(actual, expected, atol, rtol)}. {hint}".strip())


# ---------------------------------------------------------------------------------- results in later cells

def is_reference(fn) -> bool:
    """Whether ``fn`` is the library's reference for an exercise (what a check returns while the
    exercise is not done)."""
    return bool(getattr(fn, "__course_reference__", False))


def yours(fn: Callable, what: str | None = None) -> str:
    """Label a result in a lesson's later cells by whose function produced it.

    ``yours(feed_forward)`` is ``"your feed_forward"`` for the learner's function and
    ``"feed_forward (library reference)"`` when the check returned the library's reference
    because the exercise is not done yet, so a comparison never reads as the learner's success::

        print(f"{yours(layer_norm)} equals nn.LayerNorm:", torch.allclose(...))

    Args:
        fn: the (rebound) exercise function.
        what: what to call the result (default: the function's name).
    """
    what = what or getattr(fn, "__name__", "function")
    return f"{what} (library reference)" if is_reference(fn) else f"your {what}"
