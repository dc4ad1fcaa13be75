"""Every lesson ends with the tip that frees its kernel's memory (a kernel keeps its lesson's
peak memory, 300-700 MB, until it is shut down; a 2 GB Binder holds only a few)."""
from __future__ import annotations

import json

import pytest

import build_notebooks as bn
from conftest import ROOT

TIP = ("**Done with this lesson?** Shut down its kernel (Kernel → Shut Down Kernel) to free its memory "
       "before you open the next one.")
LESSONS = bn.lesson_paths(ROOT / "solutions")


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_the_last_cell_of_every_lesson_says_to_shut_its_kernel_down(path):
    last = json.loads(path.read_text())["cells"][-1]
    assert last["cell_type"] == "markdown", f"{path.name}: the last cell is a {last['cell_type']} cell"
    assert TIP in "".join(last["source"]), f"{path.name}: the last cell lacks the tip {TIP!r}"
