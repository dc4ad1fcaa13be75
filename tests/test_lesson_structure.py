"""Every lesson follows the course's recipe (CONTRIBUTING.md): goals, set-up cell, exercises each
followed by its check, a picture, a summary with folded answers, and a small file."""
from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT

LESSONS = sorted((ROOT / "solutions").glob("*.ipynb"))
CHECK_LINE = re.compile(r"^\s*(\w+)\s*=\s*check_(\w+)\s*\(\s*(\w+)\s*\)", re.MULTILINE)
MAX_BYTES = 1_200_000


def load(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        cell["text"] = "".join(cell["source"])
    return nb


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_follows_the_recipe(path):
    nb = load(path)
    cells = nb["cells"]
    markdown = "\n".join(c["text"] for c in cells if c["cell_type"] == "markdown")
    code = [c for c in cells if c["cell_type"] == "code"]
    number = path.stem[:2]
    assert cells[0]["cell_type"] == "markdown" and cells[0]["text"].startswith(f"# {number} · ")
    assert "In this lesson you will" in markdown
    assert "setup_notebook()" in code[0]["text"], "the first code cell calls setup_notebook()"
    assert "## Summary" in markdown and "Check your understanding" in markdown
    assert "<details>" in markdown and "Answer" in markdown
    assert any("image/png" in out.get("data", {}) for c in code for out in c["outputs"]), "no picture"
    assert path.stat().st_size <= MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_exercise_is_a_function_followed_by_its_check(path):
    """A function, or a class (lesson 11's nn.Modules), and right after it the line `name = check_...(name)`."""
    cells = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    exercises = [i for i, c in enumerate(cells) if "### BEGIN SOLUTION" in c["text"]]
    assert len(exercises) >= (1 if path.stem.startswith("00") else 2)
    for i in exercises:
        text = cells[i]["text"]
        assert re.search(r"^(def|class) \w+\(", text, re.MULTILINE), f"cell {i}: an exercise is a function or a class"
        name = re.search(r"^(?:def|class) (\w+)\(", text, re.MULTILINE).group(1)
        check = CHECK_LINE.search(cells[i + 1]["text"]) if i + 1 < len(cells) else None
        assert check, f"exercise {name}: the next code cell must be `{name} = check_{name}({name})`"
        assert check.group(1) == check.group(2) == check.group(3) == name, f"exercise {name}: check line {check.group(0)!r}"
    all_checks = sum(len(CHECK_LINE.findall(c["text"])) for c in cells)
    assert all_checks == len(exercises), "one check line per exercise"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_no_cell_relies_on_a_trailing_semicolon(path):
    """nbval ignores `;` output suppression, so a cell ending with `;` would differ under test."""
    for c in load(path)["cells"]:
        if c["cell_type"] == "code":
            last = [l for l in c["text"].rstrip().splitlines() if l.strip() and not l.strip().startswith("#")]
            assert not (last and last[-1].rstrip().endswith(";")), c["text"][:60]


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_exercise_has_a_hint_in_two_steps(path):
    """Above every exercise: first the idea (what to compute, which shape, which pitfall), folded;
    then the code, folded separately, so a learner can stop after the first."""
    cells = load(path)["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or "### BEGIN SOLUTION" not in cell["text"]:
            continue
        j = i - 1
        while cells[j]["cell_type"] != "markdown":
            j -= 1
        hints = re.findall(r"<details><summary>(.*?)</summary>(.*?)</details>", cells[j]["text"], flags=re.S)
        titles = [title for title, _ in hints]
        assert titles[-2:] == ["Hint 1: the idea", "Hint 2: the code"], f"cell {i}: hints {titles}"
        idea, code = (body.strip() for _, body in hints[-2:])
        assert len(idea) > 80 and idea not in code, f"cell {i}: the first hint must explain, not repeat the code"


QUOTED_LINE = re.compile(r"`(\w+\.py)`: (.*)")


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_library_lines_quoted_in_the_prose_are_the_librarys(path):
    """Prose that quotes `file.py`: `a line` (lesson 07's dropout table) quotes transformer_lib as it is:
    every code span after the file name on that line occurs in the file, so a change there fails here."""
    stale = []
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            for found in QUOTED_LINE.finditer(line):
                name, rest = found.groups()
                if not (ROOT / "transformer_lib" / name).exists():
                    continue
                source = (ROOT / "transformer_lib" / name).read_text()
                stale += [f"{name}: {span}" for span in re.findall(r"`([^`]+)`", rest.split("|")[0])
                          if span not in source]
    assert not stale, f"the prose quotes lines that transformer_lib no longer has: {stale}"
