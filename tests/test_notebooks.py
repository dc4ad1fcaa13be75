"""The exercise notebooks: in sync with solutions/, and runnable to the end before any exercise is done.

The solution notebooks themselves are executed by nbval (``pytest`` collects ``solutions/``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

import build_notebooks as bn
from conftest import ROOT

SOLUTIONS = bn.lesson_paths(ROOT / "solutions")     # the lessons: NN_name.ipynb, nothing else
NOT_IMPLEMENTED = "is not implemented yet"
REFERENCE_LABEL = "(library reference)"
LEARNER_FILES = ["Untitled.ipynb", "04_multi_head_attention-Copy1.ipynb", ".ipynb_checkpoints/00_start_here-checkpoint.ipynb"]


def lessons_without_twin(root) -> list[str]:
    return [p.name for p in bn.lesson_paths(root / "solutions") if not (root / "notebooks" / p.name).exists()]


def not_lessons(root) -> list[str]:
    """Notebooks in solutions/ or notebooks/ that are no lesson (a learner's own, or a stray file)."""
    lessons = {p.name for p in bn.lesson_paths(root / "solutions")}
    return [f"{folder}/{p.name}" for folder in ("solutions", "notebooks")
            for p in sorted((root / folder).glob("*.ipynb")) if p.name not in lessons]


def test_there_are_lessons_and_each_has_an_exercise_twin():
    assert SOLUTIONS, "no lessons in solutions/"
    assert not lessons_without_twin(ROOT), "run `python course.py notebooks`"


def test_a_learners_own_notebooks_do_not_count_as_lessons(tmp_path):
    for folder in ("solutions", "notebooks"):
        for name in ["00_start_here.ipynb"] + LEARNER_FILES:
            (tmp_path / folder / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / name).write_text("{}")
    assert lessons_without_twin(tmp_path) == []
    assert not_lessons(tmp_path) == [f"{f}/{n}" for f in ("solutions", "notebooks")
                                     for n in ("04_multi_head_attention-Copy1.ipynb", "Untitled.ipynb")]


def test_the_course_holds_no_notebook_that_is_not_a_lesson():
    """In CI the folders hold the course's own files only: a stray notebook there is an error. On a
    learner's machine, their own notebooks are theirs: listed, never judged."""
    extra = not_lessons(ROOT)
    if extra and not os.environ.get("CI"):
        pytest.skip(f"your own notebooks are not part of the course and are not tested: {extra}")
    assert not extra, f"notebooks that are not lessons (NN_name.ipynb with a twin): {extra}"


def test_nbval_leaves_a_learners_notebook_in_solutions_alone(tmp_path):
    """`course.py test` collects the lessons in solutions/ with nbval, and no other notebook there."""
    for path in ("pyproject.toml", "tests/conftest.py", "tests/sanitize.cfg", "tools/build_notebooks.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / path, tmp_path / path)
    (tmp_path / "solutions").mkdir()
    shutil.copy(SOLUTIONS[0], tmp_path / "solutions")
    for name in LEARNER_FILES:
        (tmp_path / "solutions" / name).parent.mkdir(exist_ok=True)
        shutil.copy(SOLUTIONS[0], tmp_path / "solutions" / name)
    found = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stdout + found.stderr
    collected = {line.split("::")[0] for line in found.stdout.splitlines() if "::" in line}
    assert collected == {f"solutions/{SOLUTIONS[0].name}"}, found.stdout
    assert "deselected" in found.stdout       # Untitled and the copy (pytest never enters .ipynb_checkpoints)


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
    texts, errors, unlabelled = [], [], []
    for index, cell in enumerate(nb.cells):
        cell_text = ""
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                errors.append(f"{out.ename}: {out.evalue}")
            cell_text += out.get("text", "") if out.output_type == "stream" else ""
        texts.append(cell_text)
        # a cell comparing an exercise's result must say it came from the reference, never "your ..."
        if cell.cell_type == "code" and "yours(" in cell.source and REFERENCE_LABEL not in cell_text:
            unlabelled.append(index)
        if NOT_IMPLEMENTED not in cell_text and re.search(r"\byour\b|\byours\b", cell_text, flags=re.IGNORECASE):
            unlabelled.append(index)
    assert not errors
    n = exercise_count(solution)
    assert "".join(texts).count(NOT_IMPLEMENTED) == n, f"expected {n} 'not implemented yet' messages"
    assert not unlabelled, f"cells {unlabelled} print a result of the library's reference without '{REFERENCE_LABEL}'"
