"""The exercise notebooks: in sync with solutions/, and runnable to the end before any exercise is done.

The solution notebooks themselves are executed by nbval (``pytest`` collects ``solutions/``).
"""
from __future__ import annotations

import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

import build_notebooks as bn
from conftest import ROOT

SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
NOT_IMPLEMENTED = "is not implemented yet"


def test_there_are_lessons_and_each_has_an_exercise_twin():
    assert SOLUTIONS, "no lessons in solutions/"
    twins = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert twins == {p.name for p in SOLUTIONS}


def test_notebooks_are_in_sync_with_solutions():
    """notebooks/ must be exactly what `python course.py notebooks` writes (CI is strict; on a
    learner's machine, notebooks the learner has edited are not held against the course)."""
    manifest = json.loads((ROOT / "notebooks" / bn.MANIFEST).read_text())
    stale, edited = [], []
    for path in SOLUTIONS:
        expected = bn.render(bn.exercise_notebook(json.loads(path.read_text()), path.name))
        target = ROOT / "notebooks" / path.name
        current = target.read_bytes() if target.exists() else b""
        if current == expected and manifest.get(path.name) == bn.sha256(expected):
            continue
        if not os.environ.get("CI") and target.exists() and manifest.get(path.name) == bn.sha256(expected) \
                and bn.sha256(current) != manifest.get(path.name):
            edited.append(path.name)       # built from the current lesson, then edited by the learner
        else:
            stale.append(path.name)
    assert not stale, f"notebooks/ is out of date for {stale}: run `python course.py notebooks`"
    if edited:
        pytest.skip(f"your edited exercise notebooks are not compared: {edited}")


def exercise_count(solution: dict) -> int:
    return sum(1 for c in solution["cells"] if c["cell_type"] == "code" and bn.BEGIN in "".join(c["source"]))


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_unsolved_exercise_notebook_runs_to_the_end(path, tmp_path, monkeypatch):
    """Restart & Run All on a fresh exercise notebook: no error, one "not implemented yet" per
    exercise, and every later cell runs on the library's reference. Training loops run a few
    steps only (TRANSFORMER_COURSE_SMOKE=1) to keep the suite fast."""
    solution = json.loads(path.read_text())
    nb = nbformat.reads(bn.render(bn.exercise_notebook(solution, path.name)).decode(), as_version=4)
    monkeypatch.setenv("TRANSFORMER_COURSE_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    texts, errors = [], []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append(f"{out.ename}: {out.evalue}")
            texts.append(out.get("text", "") if out.output_type == "stream" else "")
    assert not errors
    n = exercise_count(solution)
    assert "".join(texts).count(NOT_IMPLEMENTED) == n, f"expected {n} 'not implemented yet' messages"
