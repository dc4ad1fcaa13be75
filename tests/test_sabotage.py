"""A training lesson must fail its test when training is broken.

Since trained results are not compared digit by digit (the output contract, CONTRIBUTING.md), the
assertions in the lessons' cells are what stands between a broken training run and a green test.
This test proves they do: it runs each training lesson with every learning-rate scheduler
sabotaged to a learning rate of 0 (the model never learns; its loops stop after 20 steps, since
the weights cannot move anyway), and expects the lesson to stop with
the AssertionError of its first trained-result check (``assert_trained``), not earlier (an
exercise check) and not never.
"""
from __future__ import annotations

import ast
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from conftest import ROOT

SCHEDULER = re.compile(r"\b(lr_scheduler|OneCycleLR|LambdaLR)\(")
LESSONS = [p for p in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
           if SCHEDULER.search(p.read_text(encoding="utf-8")) and "assert_trained(" in p.read_text(encoding="utf-8")]

SABOTAGE = '''\
# The sabotage of tests/test_sabotage.py: every learning-rate scheduler now sets the rate to 0.
import torch.optim.lr_scheduler as _schedulers


def _zero_learning_rate(self, *args, **kwargs):
    return [0.0 for _ in self.optimizer.param_groups]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


for _cls in [_schedulers.LRScheduler, *_subclasses(_schedulers.LRScheduler)]:
    _cls.get_lr = _zero_learning_rate
    if hasattr(_cls, "_get_closed_form_lr"):
        _cls._get_closed_form_lr = _zero_learning_rate
'''


def assertion_messages(nb) -> list[str]:
    """The fixed beginnings of the messages of the lesson's ``assert_trained(...)`` calls."""
    messages = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "assert_trained" and len(node.args) == 2:
                message = node.args[1]
                if isinstance(message, ast.JoinedStr):                  # an f-string: its first literal part
                    message = message.values[0]
                if isinstance(message, ast.Constant) and isinstance(message.value, str):
                    messages.append(message.value)
    return messages


def test_the_training_lessons_are_found():
    names = {p.stem[:2] for p in LESSONS}
    assert {"08", "10", "11", "12"} <= names, names


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_a_lesson_whose_training_is_sabotaged_fails_its_trained_result_check(path, monkeypatch):
    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    messages = assertion_messages(nb)
    assert messages, f"{path.name} asserts nothing about its trained results"
    nb.cells.insert(1, nbformat.v4.new_code_cell(SABOTAGE))       # right after setup_notebook()
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("TRANSFORMER_COURSE_SMOKE", raising=False)
    # At a learning rate of 0 the weights never move: after 20 steps they are what they would be
    # after the lesson's thousands, so the loops stop there (trained results are still asserted).
    monkeypatch.setenv("TRANSFORMER_COURSE_MAX_STEPS", "20")
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with pytest.raises(CellExecutionError) as failure:
        client.execute()
    error = failure.value
    assert error.ename == "AssertionError", f"{path.name} stopped on {error.ename}: {error.evalue}"
    assert any(error.evalue.startswith(m) for m in messages), \
        f"{path.name} stopped on an assertion that is not a trained-result check: {error.evalue}"
    failed = next(cell for cell in nb.cells if cell.cell_type == "code"
                  and any(o.get("output_type") == "error" for o in cell.get("outputs", [])))
    assert "assert_trained(" in failed.source
