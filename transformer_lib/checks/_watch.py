"""Watching the parts of a module while the learner's code runs (for the layer and model checks).

* :func:`spy` sees every call of one method of one object, :func:`forbid_calling` fails a check
  whose learner calls a method they were asked to write (``layer(x)`` or ``layer.forward(x)``);
* :func:`watch_modules` records the inputs each named sub-module gets, and :func:`compare_calls`
  finds the first sub-module whose input differs from the reference's, to say *where* a forward
  pass goes wrong ("layer.norm2 gets the wrong input: ...") instead of only that its output is wrong.
"""
from __future__ import annotations

import contextlib
import inspect
import types
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ._core import close, describe, fail, where_wrong


@contextlib.contextmanager
def spy(obj, method: str, record: Callable[[tuple, dict], None]):
    """Let ``record(args, kwargs)`` see every call of ``obj.method``, whether made as
    ``obj.method(...)`` or, for ``forward``, as ``obj(...)``: the method is replaced on the
    instance for the duration (by a bound method, so that a ``copy.deepcopy`` of ``obj`` made by
    the learner calls its own method)."""
    had_own = method in vars(obj)
    own = vars(obj).get(method)

    def watched(self, *args, **kwargs):
        record(args, kwargs)
        if had_own:
            return own(*args, **kwargs)
        return getattr(type(self), method)(self, *args, **kwargs)

    setattr(obj, method, types.MethodType(watched, obj))
    try:
        yield
    finally:
        if had_own:
            setattr(obj, method, own)
        else:
            delattr(obj, method)


@contextlib.contextmanager
def forbid_calling(obj, method: str, message: str):
    """Fail (after the learner's function returns) if it called ``obj.method`` - directly, or for
    ``forward`` through ``obj(...)`` - instead of writing it from the parts."""
    called = []
    with spy(obj, method, lambda args, kwargs: called.append(True)):
        yield
    if called:
        fail(message)


@dataclass
class Calls:
    """The calls of some sub-modules, in order: ``(name, {argument: value})``."""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@contextlib.contextmanager
def watch_modules(root: nn.Module, names: list[str]):
    """Record the inputs of ``root.<name>`` for each name (a module called under several names is
    recorded under the first). Yields a :class:`Calls`."""
    record = Calls()
    seen: set[int] = set()
    with contextlib.ExitStack() as stack:
        for name in names:
            module = getattr(root, name, None)
            if module is None or id(module) in seen:
                continue
            seen.add(id(module))
            signature = inspect.signature(module.forward)

            def keep(args, kwargs, name=name, signature=signature):
                try:
                    bound = signature.bind(*args, **kwargs)
                    bound.apply_defaults()
                    inputs = dict(bound.arguments)
                except TypeError:
                    inputs = {f"argument {i + 1}": a for i, a in enumerate(args)} | kwargs
                record.calls.append((name, {k: v.detach().clone() if isinstance(v, torch.Tensor) else v
                                            for k, v in inputs.items()}))
            stack.enter_context(spy(module, "forward", keep))
        yield record


def _mask_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        a2, b2 = torch.broadcast_tensors(a, b)
    except RuntimeError:
        return False
    return bool(torch.equal(a2, b2))


def compare_calls(got: Calls, expected: Calls, owner: str, expect: dict[str, str] | None = None,
                  masks: dict[str, torch.Tensor | None] | None = None, atol: float = 1e-5,
                  partial: bool = False) -> str | None:
    """Where the learner's use of the sub-modules first departs from the reference's.

    Walks the reference's calls in order and compares each with the learner's call of the same
    sub-module (the k-th with the k-th). ``owner`` is how messages name the parent ("layer");
    ``expect`` says in words what each sub-module should get (by name); ``masks`` names the
    masks the learner was given, so a mask passed to the wrong place is named. ``partial``: the
    learner's code stopped with an error, so calls it never reached are not reported.
    Returns a diagnosis, or ``None`` when every call matches.
    """
    expect = expect or {}
    learner: dict[str, list[dict]] = defaultdict(list)
    for name, inputs in got.calls:
        learner[name].append(inputs)
    total = Counter(name for name, _ in expected.calls)
    seen: Counter = Counter()
    for name, inputs in expected.calls:
        k = seen[name]
        seen[name] += 1
        label = f"{owner}.{name}"
        nth = f" (call {k + 1} of {total[name]})" if total[name] > 1 else ""
        should = f" It should get {expect[name]}." if name in expect else ""
        if k >= len(learner[name]):
            if partial:
                return None
            if not learner[name]:
                return f"your forward pass never calls {label}.{should}"
            return f"your forward pass calls {label} {len(learner[name])} time(s); it is needed {total[name]} times.{should}"
        mine = learner[name][k]
        for arg, want in inputs.items():
            have = mine.get(arg)
            if not isinstance(want, torch.Tensor) and not isinstance(have, torch.Tensor):
                continue
            why = _input_difference(have, want, arg, masks or {}, atol)
            if why:
                return f"{label}{nth} gets the wrong {arg}: {why}.{should}"
    for name, calls in learner.items():
        if len(calls) > total[name] and not partial:
            return f"your forward pass calls {owner}.{name} {len(calls)} times; it is needed {total[name]} time(s)"
    return None


def _input_difference(have, want, arg: str, masks: dict, atol: float) -> str | None:
    if want is None:
        return f"{describe(have)} where it should get None"
    if have is None:
        return f"None (nothing passed) where it should get {describe(want)}"
    if want.dtype == torch.bool or have.dtype == torch.bool:
        if _mask_equal(have, want):
            return None
        if have.dtype == torch.bool and want.dtype == torch.bool and _mask_equal(~have, want):
            return "the mask is inverted (True means *may attend*)"
        for mask_name, mask in masks.items():
            if mask is not None and _mask_equal(have, mask) and not _mask_equal(mask, want):
                return f"it gets {mask_name}, of shape {tuple(mask.shape)}"
        return f"a mask of shape {tuple(have.shape)} that differs from the expected one"
    if have.shape != want.shape:
        return f"shape {tuple(have.shape)}, expected {tuple(want.shape)}"
    if close(have, want, atol=atol, rtol=1e-4):
        return None
    return where_wrong(have, want, atol=atol)
