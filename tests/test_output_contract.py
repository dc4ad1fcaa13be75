"""The output contract (CONTRIBUTING.md): stored outputs are compared verbatim only where they are
exact on every CPU; a value that depends on floating-point order is printed after "≈" (which the
sanitizer hides) or sits in a cell tagged ``nbval-ignore-output``, and such a cell asserts what
must hold instead. Never a skipped cell, never a whole lesson left uncompared."""
from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT

LESSONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
IGNORE_TAG = "nbval-ignore-output"
SANITIZE = ROOT / "tests" / "sanitize.cfg"


def code_cells(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            yield index, cell, source


def output_text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append("".join(out["text"]))
        elif "data" in out and "text/plain" in out["data"]:
            text = out["data"]["text/plain"]
            parts.append(text if isinstance(text, str) else "".join(text))
    return "".join(parts)


def sanitize_patterns():
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", SANITIZE.read_text(encoding="utf-8"), flags=re.MULTILINE)


def sanitize(text: str) -> str:
    for regex, replace in sanitize_patterns():
        text = re.sub(regex, replace, text)
    return text


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_every_uncompared_value_is_asserted_instead(path):
    """A cell that prints a "≈" value or is tagged nbval-ignore-output contains an assertion."""
    offenders = []
    for index, cell, source in code_cells(path):
        tags = cell.get("metadata", {}).get("tags", [])
        if (IGNORE_TAG in tags or "≈" in output_text(cell)) and not re.search(r"\bassert(_trained)?\b", source):
            offenders.append(index)
    assert not offenders, f"{path.name}: cells {offenders} hide output from nbval without asserting what must hold"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_no_cell_is_skipped_and_most_outputs_are_compared(path):
    compared, ignored = 0, 0
    for index, cell, source in code_cells(path):
        tags = cell.get("metadata", {}).get("tags", [])
        assert not {"nbval-skip", "skip"} & set(tags), f"{path.name} cell {index} is skipped"
        assert not re.search(r"#\s*(NBVAL_SKIP|NBVAL_IGNORE_OUTPUT|PYTEST_VALIDATE_IGNORE_OUTPUT)", source), \
            f"{path.name} cell {index}: use the metadata tag, not a comment the learner reads"
        if output_text(cell).strip():
            if IGNORE_TAG in tags:
                ignored += 1
            else:
                compared += 1
    assert compared >= 2 * ignored, f"{path.name}: {ignored} cells with text output are ignored, only {compared} compared"


def test_the_sanitizer_hides_approximate_values_and_nothing_else():
    assert sanitize("loss ≈0.754, accuracy ≈99.95% (≈1999 of 2000 dates), change ≈-1.2e-05") == \
        "loss ≈NUM, accuracy ≈NUM% (≈NUM of 2000 dates), change ≈NUM"
    exact = "238,351 parameters; shape (2, 5, 12); equal: True; 15.1% of the ordinary tokens"
    assert sanitize(exact) == exact
    assert sanitize("238,351 parameters, training on cuda") == "238,351 parameters, training on DEVICE"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_approximate_values_are_not_also_printed_exactly(path):
    """A value shown with "≈" must not appear a second time without it in the same line."""
    for index, cell, _ in code_cells(path):
        for line in output_text(cell).splitlines():
            approximate = r"≈\s?([-+]?\d[\d,]*\.\d+)"
            rest = re.sub(approximate, "", line)
            for value in re.findall(approximate, line):
                assert value not in rest, f"{path.name} cell {index}: {value} is printed both with and without ≈"
