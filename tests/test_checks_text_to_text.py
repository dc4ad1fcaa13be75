"""The lesson-12 checks: a task as text-to-text, and rotary position embeddings."""
from __future__ import annotations

import pytest
import torch

from transformer_lib.checks import CheckFailed, check_apply_rope, check_make_example
from transformer_lib.checks.text_to_text import _rope_rotate_half, _rope_variant
from transformer_lib.text_to_text import MONTHS, apply_rope, make_example


def other_make_example(task, value):
    """Another correct version, written differently."""
    formats = {
        "reverse": lambda v: (v, "".join(reversed(v))),
        "sort": lambda v: (v, "".join(sorted(v))),
        "add": lambda v: ("+".join(map(str, v)), str(sum(v))),
        "date": lambda v: (f"{v.day} {MONTHS[v.month - 1]} {v.year}", f"{v.year:04d}-{v.month:02d}-{v.day:02d}"),
    }
    if task not in formats:
        raise ValueError(f"unknown task {task}")
    shown, target = formats[task](value)
    return f"{task}: {shown}", target


def test_make_example_accepts_correct_versions(capsys):
    for fn in (make_example, other_make_example):
        assert check_make_example(fn) is fn
    assert capsys.readouterr().out.count("✅") == 2


def wrong(**changes):
    def fn(task, value):
        source, target = make_example(task, value)
        rule = changes.get(task)
        return rule(source, target, value) if rule else (source, target)
    return fn


@pytest.mark.parametrize("fn, words", [
    (wrong(reverse=lambda s, t, v: (v, t)), "must start with the task's prefix"),
    (wrong(reverse=lambda s, t, v: (f"reverse:{v}", t)), "one space after the colon"),
    (wrong(reverse=lambda s, t, v: (s, v)), "read backwards"),
    (wrong(sort=lambda s, t, v: (s, t[::-1])), "descending order"),
    (wrong(sort=lambda s, t, v: (s, str(sorted(v)))), "joined into one string"),
    (wrong(add=lambda s, t, v: (s, f"{v[0]}{v[1]}")), "glued the digits"),
    (wrong(add=lambda s, t, v: (f"add: {v[0]} + {v[1]}", t)), "without spaces"),
    (wrong(add=lambda s, t, v: (s, sum(v))), "must both be strings"),
    (wrong(date=lambda s, t, v: (s, f"{v.year}-{v.month}-{v.day}")), "pad month and day"),
    (wrong(date=lambda s, t, v: (s, v.strftime("%d/%m/%Y"))), "ISO form"),
    (wrong(date=lambda s, t, v: (f"date: {v.day:02d} {MONTHS[v.month - 1]} {v.year}", t)), "without a leading zero"),
    (wrong(date=lambda s, t, v: (f"date: {v.day} {MONTHS[v.month - 1].title()} {v.year}", t)), "lower case"),
    (wrong(date=lambda s, t, v: (f"date: {v.isoformat()}", t)), "month name"),
    (lambda task, value: f"{task}: {value}", "should return a pair"),
])
def test_make_example_rejects_wrong_versions(fn, words):
    with pytest.raises(CheckFailed, match=words):
        check_make_example(fn)


def test_unknown_task_must_raise_value_error():
    def returns_none(task, value):
        return make_example(task, value) if task in ("reverse", "sort", "add", "date") else None
    with pytest.raises(CheckFailed, match="should raise ValueError"):
        check_make_example(returns_none)

    def key_error(task, value):
        table = {"reverse": 1, "sort": 1, "add": 1, "date": 1}
        table[task]
        return make_example(task, value)
    with pytest.raises(CheckFailed, match="should raise ValueError naming the tasks, got KeyError"):
        check_make_example(key_error)

    def not_implemented_for_other_tasks(task, value):
        if task not in ("reverse", "sort", "add", "date"):
            raise NotImplementedError(f"unknown task {task}")   # the learner's own: judged, not "not started"
        return make_example(task, value)
    with pytest.raises(CheckFailed, match="should raise ValueError naming the tasks, got NotImplementedError: unknown"):
        check_make_example(not_implemented_for_other_tasks)


# ---- RoPE ----------------------------------------------------------------------------------

def complex_rope(x, base=10000.0):
    """Another correct way: pairs as complex numbers times e^{i m theta}."""
    T, d = x.shape[-2], x.shape[-1]
    z = torch.view_as_complex(x.reshape(*x.shape[:-1], d // 2, 2).contiguous())
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    rot = torch.polar(torch.ones(T, d // 2, dtype=torch.float64), torch.arange(T, dtype=torch.float64)[:, None] * theta)
    return torch.view_as_real(z * rot.to(torch.complex64)).reshape(x.shape)


def loop_rope(x, base=10000.0):
    """Another correct way: a Python loop over the pairs, in float64."""
    T, d = x.shape[-2], x.shape[-1]
    m = torch.arange(T, dtype=torch.float64)[:, None]
    out = torch.empty_like(x, dtype=torch.float64)
    for i in range(d // 2):
        angle = m[:, 0] * base ** (-2 * i / d)
        a, b = x[..., 2 * i].double(), x[..., 2 * i + 1].double()
        out[..., 2 * i] = a * angle.cos() - b * angle.sin()
        out[..., 2 * i + 1] = a * angle.sin() + b * angle.cos()
    return out.to(x.dtype)


def test_apply_rope_accepts_correct_versions(capsys):
    for fn in (apply_rope, complex_rope, loop_rope):
        assert check_apply_rope(fn) is fn
    assert capsys.readouterr().out.count("✅") == 3


@pytest.mark.parametrize("fn, words", [
    (_rope_rotate_half, "rotate half"),
    (lambda x: _rope_variant(x, sign=-1.0), "rotates the wrong way"),
    (lambda x: _rope_variant(x, offset=1), "positions start at 1"),
    (lambda x: _rope_variant(x, exponent=1.0), "frequencies are wrong"),
    (lambda x, base=10000.0: apply_rope(x), r"and base=500 is wrong: the base argument is ignored"),
    (lambda x: apply_rope(x), r"raised TypeError on x of shape \(2, 6, 8\) and base=500: .*\n   Hint: keep the exercise's signature"),
    (lambda x: x, "largest difference"),
    (lambda x: x + torch.sin(torch.arange(x.shape[-2]))[:, None], "largest difference"),
])
def test_apply_rope_rejects_wrong_versions(fn, words):
    with pytest.raises(CheckFailed, match=words):
        check_apply_rope(fn)


def test_rope_along_the_wrong_axis_is_named():
    def first_axis(x):
        return apply_rope(x.transpose(0, -2)).transpose(0, -2) if x.dim() > 2 else apply_rope(x)
    with pytest.raises(CheckFailed, match="wrong axis"):
        check_apply_rope(first_axis)
