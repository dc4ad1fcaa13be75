"""`python course.py progress`: a table of passing, failing and unstarted exercises, files untouched."""
from __future__ import annotations

import hashlib
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

import progress
from conftest import ROOT

SOLVED = "def normalize_rows(x):\n    return x / x.sum(dim=-1, keepdim=True)"
WRONG = "def normalize_rows(x):\n    return x / x.sum(dim=0, keepdim=True)"
TODO = "def normalize_rows(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
CHECK = "normalize_rows = check_normalize_rows(normalize_rows)"


def digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_progress_reports_pass_fail_and_not_started_without_touching_files(tmp_path, capfd):
    nb = new_notebook(cells=[new_code_cell("import torch\nfrom transformer_lib.checks import check_normalize_rows")]
                      + [new_code_cell(c) for c in (WRONG, CHECK, SOLVED, CHECK, TODO, CHECK)]
                      + [new_code_cell("print(normalize_rows(torch.ones(2, 2)))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "01_mixed.ipynb")
    shutil.copy(ROOT / "notebooks" / "00_start_here.ipynb", tmp_path)   # unsolved, as generated
    # a learner's own notebooks are not lessons: neither run nor reported
    shutil.copy(ROOT / "notebooks" / "00_start_here.ipynb", tmp_path / "00_start_here-Copy1.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("1/0")]), tmp_path / "Untitled.ipynb")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    shutil.copy(tmp_path / "01_mixed.ipynb", tmp_path / ".ipynb_checkpoints" / "01_mixed-checkpoint.ipynb")
    before = digest(tmp_path)

    assert progress.main(["--dir", str(tmp_path)]) == 0
    captured = capfd.readouterr()            # the kernels' own output too (file descriptor level)
    out = captured.out

    assert digest(tmp_path) == before                        # the learner's files are unchanged
    assert "00_start_here: 0 of 1 exercises pass" in out
    assert "01_mixed: 1 of 3 exercises pass" in out
    lines = [l for l in out.splitlines() if "normalize_rows " in l]
    assert lines[0].lstrip().startswith("⏳")                 # lesson 00: not started
    assert lines[1].lstrip().startswith("❌") and "sum of each *column*" in lines[1]
    assert lines[2].lstrip().startswith("✅")
    assert lines[3].lstrip().startswith("⏳")
    assert "In all: 1 of 4 exercises pass, 1 fail, 2 not started (" in out
    assert "Running 2 lesson(s)" in out and "▶ 01_mixed is running" in out
    assert "Copy1" not in out and "Untitled" not in out and "checkpoint" not in out
    assert "without encryption" not in out + captured.err          # kernel noise a learner cannot act on
    assert "WARNING" not in captured.err and "Traceback" not in captured.err


def test_lesson_selection_by_number_or_name():
    paths = [ROOT / "notebooks" / n for n in ("00_start_here.ipynb", "03_attention.ipynb")]
    assert progress.select(paths, ["3"]) == paths[1:]
    assert progress.select(paths, ["00_start_here"]) == paths[:1]


def lesson_copy(folder, name: str, **replace: str):
    """A copy of an exercise notebook with some exercise cells' sources replaced (by function name)."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        for function, source in replace.items():
            if cell.cell_type == "code" and cell.source.startswith(f"def {function}("):
                cell.source = source
    nbformat.write(nb, folder / f"{name}.ipynb")


def test_results_are_matched_by_name_and_a_syntax_error_is_reported_where_it_is(tmp_path, capsys):
    """A syntax error in lesson 03's first exercise must not shift the others' results, and it is
    reported with its cell, line and message; the same for lesson 00's only exercise."""
    lesson_copy(tmp_path, "03_attention",
                attention_scores="def attention_scores(q, k):\n    d_k = q.shape[-1]\n    return (q @ k.transpose(-2, -1)\n",
                softmax="def softmax(x):\n    return x.exp() / x.exp().sum(dim=0, keepdim=True)")
    lesson_copy(tmp_path, "00_start_here", normalize_rows="def normalize_rows(x):\n    return x / x.sum(dim=-1 keepdim=True)")

    assert progress.main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    line = {name: next(l for l in out.splitlines() if f" {name} " in l)
            for name in ("attention_scores", "softmax", "scaled_dot_product_attention", "normalize_rows")}
    assert line["attention_scores"].lstrip().startswith("❗")
    assert "has an error: cell 24 (`def attention_scores(q, k):`), line 3: SyntaxError:" in line["attention_scores"]
    assert line["softmax"].lstrip().startswith("❌") and "fails:" in line["softmax"]
    assert line["scaled_dot_product_attention"].lstrip().startswith("⏳")
    assert line["normalize_rows"].lstrip().startswith("❗")
    assert "(`def normalize_rows(x):`), line 2: SyntaxError:" in line["normalize_rows"]
    assert "In all: 0 of 5 exercises pass, 1 fail, 2 not started, 2 with an error" in out
    assert "not reached" not in out


def test_an_unreadable_notebook_is_named_and_the_other_lessons_still_run(tmp_path, capsys):
    shutil.copy(ROOT / "notebooks" / "00_start_here.ipynb", tmp_path)
    text = (ROOT / "notebooks" / "03_attention.ipynb").read_text()
    (tmp_path / "03_attention.ipynb").write_text(text[: len(text) // 2])        # cut off while saving

    assert progress.main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    assert "03_attention.ipynb cannot be read: it is not valid JSON (line" in out
    assert "course.py notebooks --force 03_attention" in out
    assert "00_start_here: 0 of 1 exercises pass" in out
    assert "Could not read: 03_attention." in out
    assert "Traceback" not in out and "NotJSONError" not in out


LOOP = "def normalize_rows(x):\n    while True:\n        pass"


def test_an_endless_loop_is_stopped_after_the_timeout_and_named(tmp_path, capsys):
    nb = new_notebook(cells=[new_code_cell("import torch\nfrom transformer_lib.checks import check_normalize_rows"),
                             new_code_cell(LOOP), new_code_cell(CHECK), new_code_cell("print('after')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "01_loop.ipynb")
    nb.cells[1].source = SOLVED
    nbformat.write(nb, tmp_path / "02_fine.ipynb")

    assert progress.main(["--dir", str(tmp_path), "--timeout", "10"]) == 0
    out = capsys.readouterr().out

    loop = next(l for l in out.splitlines() if "normalize_rows" in l)
    assert loop.lstrip().startswith("❗")
    assert "cell 3 ran longer than 10 s and was stopped (an endless loop?" in loop and "--timeout" in loop
    assert "01_loop: 0 of 1 exercises pass" in out
    assert "02_fine: 1 of 1 exercises pass" in out                  # the next lesson still runs
    assert "each cell for at most 10 s" in out


def test_timeout_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        progress.main(["--timeout", "0"])
    assert "--timeout must be a positive number of seconds, got 0" in capsys.readouterr().err
