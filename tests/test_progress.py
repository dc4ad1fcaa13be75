"""`python course.py progress`: a table of passing, failing and unstarted exercises, files untouched."""
from __future__ import annotations

import hashlib
import shutil

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

import progress
from conftest import ROOT

SOLVED = "def normalize_rows(x):\n    return x / x.sum(dim=-1, keepdim=True)"
WRONG = "def normalize_rows(x):\n    return x / x.sum(dim=0, keepdim=True)"
TODO = "def normalize_rows(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
CHECK = "normalize_rows = check_normalize_rows(normalize_rows)"


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_progress_reports_pass_fail_and_not_started_without_touching_files(tmp_path, capsys):
    nb = new_notebook(cells=[new_code_cell("import torch\nfrom transformer_lib.checks import check_normalize_rows")]
                      + [new_code_cell(c) for c in (WRONG, CHECK, SOLVED, CHECK, TODO, CHECK)]
                      + [new_code_cell("print(normalize_rows(torch.ones(2, 2)))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "01_mixed.ipynb")
    shutil.copy(ROOT / "notebooks" / "00_start_here.ipynb", tmp_path)   # unsolved, as generated
    before = digest(tmp_path)

    assert progress.main(["--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    assert digest(tmp_path) == before                        # the learner's files are unchanged
    assert "00_start_here: 0 of 1 exercises pass" in out
    assert "01_mixed: 1 of 3 exercises pass" in out
    lines = [l for l in out.splitlines() if "normalize_rows " in l]
    assert lines[0].lstrip().startswith("⏳")                 # lesson 00: not started
    assert lines[1].lstrip().startswith("❌") and "sum of each *column*" in lines[1]
    assert lines[2].lstrip().startswith("✅")
    assert lines[3].lstrip().startswith("⏳")
    assert "In all: 1 of 4 exercises pass, 1 fail, 2 not started" in out


def test_lesson_selection_by_number_or_name():
    paths = [ROOT / "notebooks" / n for n in ("00_start_here.ipynb", "03_attention.ipynb")]
    assert progress.select(paths, ["3"]) == paths[1:]
    assert progress.select(paths, ["00_start_here"]) == paths[:1]
