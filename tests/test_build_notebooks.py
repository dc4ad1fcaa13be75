"""The exercise build: markers, clearing, reproducibility, and never destroying a learner's work."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import build_notebooks as bn
from conftest import ROOT


def code_cell(source: str, outputs=None) -> dict:
    return {"cell_type": "code", "execution_count": 3, "id": "c1", "metadata": {"tags": ["x"], "execution": {"t": 1}},
            "outputs": outputs or [{"output_type": "stream", "name": "stdout", "text": "hi\n"}], "source": source}


def notebook(*cells) -> dict:
    return {"cells": list(cells), "metadata": {"kernelspec": {"name": "python3"}, "widgets": {"big": 1}},
            "nbformat": 4, "nbformat_minor": 5}


def write(path: Path, nb: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))


def test_marked_region_becomes_not_implemented_at_its_indentation():
    src = "def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n"
    assert bn.strip_solution(src, "here") == "def f(x):\n    '''doc'''\n    # YOUR CODE HERE\n    raise NotImplementedError()"


def test_several_regions_and_markdown_answers():
    src = "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc = 3\n### BEGIN SOLUTION\nd = 4\n### END SOLUTION"
    assert bn.strip_solution(src, "x") == "a = 1\n# YOUR CODE HERE\nraise NotImplementedError()\nc = 3\n# YOUR CODE HERE\nraise NotImplementedError()"
    assert bn.strip_solution("Q?\n### BEGIN SOLUTION\nsecret\n### END SOLUTION", "x", markdown=True) == "Q?\nYOUR ANSWER HERE"


@pytest.mark.parametrize("src, problem", [
    ("### BEGIN SOLUTION\nx\n### BEGIN SOLUTION\ny\n### END SOLUTION", "nested"),
    ("x = 1\n### END SOLUTION", "without"),
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
])
def test_unbalanced_or_nested_markers_are_refused_naming_notebook_and_cell(tmp_path, src, problem):
    write(tmp_path / "solutions" / "05_x.ipynb", notebook(code_cell("print(1)"), code_cell(src)))
    with pytest.raises(bn.MarkerError, match=rf"solutions/05_x.ipynb, cell 1 .*{problem}"):
        bn.build(tmp_path / "solutions", tmp_path / "notebooks", log=lambda *a: None)
    assert not (tmp_path / "notebooks" / "05_x.ipynb").exists()


def test_outputs_counts_and_volatile_metadata_are_cleared():
    nb = bn.exercise_notebook(notebook(code_cell("x = 1")), "01_a.ipynb")
    cell = nb["cells"][1]
    assert cell["outputs"] == [] and cell["execution_count"] is None
    assert cell["metadata"] == {"tags": ["x"]}
    assert "widgets" not in nb["metadata"]
    assert "solutions/01_a.ipynb" in "".join(nb["cells"][0]["source"])  # the header links the solution


def test_build_is_byte_for_byte_reproducible(tmp_path):
    write(tmp_path / "solutions" / "01_a.ipynb", notebook(code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")))
    assert bn.build(tmp_path / "solutions", tmp_path / "n1", log=lambda *a: None) == 0
    assert bn.build(tmp_path / "solutions", tmp_path / "n2", log=lambda *a: None) == 0
    assert (tmp_path / "n1" / "01_a.ipynb").read_bytes() == (tmp_path / "n2" / "01_a.ipynb").read_bytes()
    assert bn.build(tmp_path / "solutions", tmp_path / "n1", check=True, log=lambda *a: None) == 0


def test_edited_exercise_notebook_stops_the_build_unless_forced(tmp_path):
    sol, out = tmp_path / "solutions", tmp_path / "notebooks"
    write(sol / "01_a.ipynb", notebook(code_cell("x = 1")))
    write(sol / "02_b.ipynb", notebook(code_cell("y = 1")))
    bn.build(sol, out, log=lambda *a: None)
    learner_work = out / "01_a.ipynb"
    learner_work.write_text(learner_work.read_text().replace("x = 1", "x = 1  # my notes"))
    write(sol / "01_a.ipynb", notebook(code_cell("x = 2")))   # the instructor changes the lesson
    write(sol / "02_b.ipynb", notebook(code_cell("y = 2")))
    messages = []
    assert bn.build(sol, out, log=messages.append) == 1
    assert any("notebooks/01_a.ipynb" in m for m in messages)
    assert "my notes" in learner_work.read_text()              # untouched
    assert "y = 1" in (out / "02_b.ipynb").read_text()         # and nothing else was written either
    assert bn.build(sol, out, force=True, log=messages.append) == 0
    assert "x = 2" in learner_work.read_text()
    backups = list((out / ".backup").glob("01_a-*.ipynb"))
    assert len(backups) == 1 and "my notes" in backups[0].read_text()


def test_unknown_notebook_in_the_way_is_not_overwritten(tmp_path):
    sol, out = tmp_path / "solutions", tmp_path / "notebooks"
    write(sol / "01_a.ipynb", notebook(code_cell("x = 1")))
    write(out / "01_a.ipynb", notebook(code_cell("learner's own")))   # no manifest entry
    assert bn.build(sol, out, log=lambda *a: None) == 1
    assert "learner's own" in (out / "01_a.ipynb").read_text()


def test_check_mode_reports_out_of_date(tmp_path):
    sol, out = tmp_path / "solutions", tmp_path / "notebooks"
    write(sol / "01_a.ipynb", notebook(code_cell("x = 1")))
    assert bn.build(sol, out, check=True, log=lambda *a: None) == 1
    bn.build(sol, out, log=lambda *a: None)
    write(sol / "01_a.ipynb", notebook(code_cell("x = 3")))
    messages = []
    assert bn.build(sol, out, check=True, log=messages.append) == 1
    assert any("out of date: notebooks/01_a.ipynb" in m for m in messages)
    assert "x = 1" in (out / "01_a.ipynb").read_text()    # check mode writes nothing


def test_every_solution_notebook_builds_with_balanced_markers():
    for path in bn.lesson_paths(ROOT / "solutions"):
        nb = bn.exercise_notebook(json.loads(path.read_text()), path.name)
        text = json.dumps(nb)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, path.name


def edit(path: Path, note: str) -> None:
    path.write_text(path.read_text().replace('"x = ', f'"# {note}\\nx = ', 1))


def test_two_forced_rebuilds_within_one_second_keep_both_backups(tmp_path, monkeypatch):
    sol, out = tmp_path / "solutions", tmp_path / "notebooks"
    write(sol / "01_a.ipynb", notebook(code_cell("x = 1")))
    bn.build(sol, out, log=lambda *a: None)
    monkeypatch.setattr(bn.time, "strftime", lambda fmt: "20260101-120000")   # the same second twice
    for version, note in ((2, "first notes"), (3, "second notes")):
        edit(out / "01_a.ipynb", note)
        write(sol / "01_a.ipynb", notebook(code_cell(f"x = {version}")))
        assert bn.build(sol, out, force=True, log=lambda *a: None) == 0
    backups = sorted((out / ".backup").glob("01_a-*.ipynb"))
    assert [p.name for p in backups] == ["01_a-20260101-120000-2.ipynb", "01_a-20260101-120000.ipynb"]
    texts = sorted(p.read_text() for p in backups)
    assert any("first notes" in t for t in texts) and any("second notes" in t for t in texts)


def test_backups_are_git_ignored():
    assert "notebooks/.backup/" in (ROOT / ".gitignore").read_text().splitlines()


def test_a_broken_solution_notebook_is_named_not_a_raw_json_error(tmp_path):
    sol, out = tmp_path / "solutions", tmp_path / "notebooks"
    write(sol / "01_a.ipynb", notebook(code_cell("x = 1")))
    (sol / "02_b.ipynb").write_text(json.dumps(notebook(code_cell("y = 1")))[:40])   # cut off while saving
    with pytest.raises(bn.BuildError, match=r"^solutions/02_b.ipynb is not valid JSON \(line 1, column \d+: .*git checkout"):
        bn.build(sol, out, log=lambda *a: None)
    assert not out.exists()                                                      # nothing was written
    (sol / "02_b.ipynb").write_text("[1, 2]")
    with pytest.raises(bn.BuildError, match=r"^solutions/02_b.ipynb is JSON but not a notebook"):
        bn.build(sol, out, log=lambda *a: None)


def test_a_broken_manifest_is_named_and_the_way_out_given(tmp_path):
    sol, out = tmp_path / "solutions", tmp_path / "notebooks"
    write(sol / "01_a.ipynb", notebook(code_cell("x = 1")))
    bn.build(sol, out, log=lambda *a: None)
    (out / bn.MANIFEST).write_text('{"01_a.ipynb": "12')
    with pytest.raises(bn.BuildError, match=r"^notebooks/.build-manifest.json is not valid JSON .*Delete it"):
        bn.build(sol, out, check=True, log=lambda *a: None)


def test_main_reports_a_broken_file_in_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "01_a.ipynb").write_text("{")
    monkeypatch.setattr(bn, "ROOT", tmp_path)
    assert bn.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: solutions/01_a.ipynb is not valid JSON") and "Traceback" not in err


@pytest.mark.parametrize("name", ["Untitled.ipynb", "Untitled1.ipynb", "04_multi_head_attention-Copy1.ipynb",
                                  "3_x.ipynb", "03_Attention.ipynb", "03_attention.ipynb.bak"])
def test_a_learners_extra_notebook_is_not_a_lesson(tmp_path, name):
    sol, out = tmp_path / "solutions", tmp_path / "notebooks"
    write(sol / "01_a.ipynb", notebook(code_cell("x = 1")))
    write(sol / name, notebook(code_cell("my scratch")))
    write(sol / ".ipynb_checkpoints" / "01_a-checkpoint.ipynb", notebook(code_cell("x = 0")))
    assert bn.lesson_paths(sol) == [sol / "01_a.ipynb"]
    assert bn.build(sol, out, log=lambda *a: None) == 0
    assert sorted(p.name for p in out.glob("*.ipynb")) == ["01_a.ipynb"]
