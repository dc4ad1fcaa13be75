"""Give the lessons in solutions/ nbgrader's cell metadata, so nbgrader can use them as its source notebooks.

    python3 tools/nbgrader_metadata.py                 # every lesson (writes only what changed)
    python3 tools/nbgrader_metadata.py 03_attention    # some lessons
    python3 tools/nbgrader_metadata.py --check         # write nothing; exit 1 if a lesson is out of date

Everything is derived from the cells' contents, so running it again changes nothing, and a new
lesson gets its metadata by running it once:

=============================================  ===========================================  ==================
cell                                           nbgrader metadata                            ``grade_id``
=============================================  ===========================================  ==================
an exercise: a code cell with                  solution cell (the learner writes in it),    the exercise's
``### BEGIN SOLUTION``                         not graded itself                            name: ``softmax``
its check: the code cell right after it,       autograded test cell, locked, ``points: 1``  the check's name:
ending ``softmax = check_softmax(softmax)``    (a ``points`` value set by hand is kept)     ``check_softmax``
a markdown cell with ``### BEGIN SOLUTION``    manually graded answer, ``points: 1``        ``answer-<cell id>``
every other cell (prose, demos, plots)         read-only: locked                            ``cell-<cell id>``
=============================================  ===========================================  ==================

A check cell scores its points when it runs without an error and without output on stderr. Under
nbgrader the checks run with ``TRANSFORMER_COURSE_GRADING=1`` (``tools/nbgrader_course.py`` writes
the setting into the course's ``nbgrader_config.py``): an exercise that is not done, or wrong, then
prints its message to stderr, which nbgrader scores 0 points, instead of falling back silently.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from build_notebooks import BEGIN, ROOT, BuildError, dumps, read_solution, select_lessons, shown

SCHEMA_VERSION = 3
DEFAULT_POINTS = 1
# the last line of a check cell: `softmax = check_softmax(softmax)`
CHECK_LINE = re.compile(r"^(?P<name>[A-Za-z_]\w*) = (?P<check>check_\w+)\((?P=name)\)$")
CELL_ID = re.compile(r"^[A-Za-z0-9_-]+$")          # what nbgrader accepts in a grade_id


class MetadataError(BuildError):
    """A lesson's cells do not follow the exercise/check pattern nbgrader's metadata is derived from."""


def source_of(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def has_solution(cell: dict) -> bool:
    return any(line.strip() == BEGIN for line in source_of(cell).splitlines())


def check_call(cell: dict) -> re.Match | None:
    """``name = check_name(name)`` on the last non-blank line of a code cell, else None."""
    if cell["cell_type"] != "code":
        return None
    lines = [line.strip() for line in source_of(cell).splitlines() if line.strip()]
    return CHECK_LINE.match(lines[-1]) if lines else None


def nbgrader(grade_id: str, *, solution=False, grade=False, locked=False, points=None) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": SCHEMA_VERSION,
            "solution": solution}
    if grade:
        meta["points"] = points
    return meta


def kept_points(cell: dict) -> float | int:
    """The points of a test cell: a positive number an instructor set by hand, else the default."""
    points = cell.get("metadata", {}).get("nbgrader", {}).get("points")
    ok = isinstance(points, (int, float)) and not isinstance(points, bool) and points > 0
    return points if ok else DEFAULT_POINTS


def lesson_metadata(nb: dict, where: str) -> list[dict]:
    """The nbgrader metadata of every cell of a lesson, in order. ``where`` names the lesson in errors."""
    cells = nb["cells"]
    out: list[dict | None] = [None] * len(cells)

    def name(i):
        start = source_of(cells[i]).strip().splitlines()[0][:50] if source_of(cells[i]).strip() else ""
        return f"{where}, cell {i} ({cells[i]['cell_type']}, starting {start!r})"

    def cell_id(i):
        cid = cells[i].get("id")
        if not isinstance(cid, str) or not CELL_ID.match(cid):
            raise MetadataError(f"{name(i)} has no usable cell id ({cid!r}): open and save the lesson in "
                                f"JupyterLab, which gives every cell an id (nbformat 4.5)")
        return cid

    for i, cell in enumerate(cells):
        if out[i] is not None:
            continue
        if cell["cell_type"] == "markdown" and has_solution(cell):
            out[i] = nbgrader(f"answer-{cell_id(i)}", solution=True, grade=True, points=kept_points(cell))
        elif cell["cell_type"] == "code" and has_solution(cell):
            match = check_call(cells[i + 1]) if i + 1 < len(cells) else None
            if match is None:
                raise MetadataError(f"{name(i)} is an exercise, but the next cell is not its check: follow it "
                                    f"with a code cell ending `name = check_name(name)` (CONTRIBUTING.md, Exercises)")
            exercise = match["name"]
            if not re.search(rf"^\s*(def|class) {exercise}\(", source_of(cell), re.M):
                raise MetadataError(f"{name(i)} is followed by the check of `{exercise}`, but does not define "
                                    f"`def {exercise}(` (or `class {exercise}(`): one exercise per cell, checked "
                                    f"right after it")
            out[i] = nbgrader(exercise, solution=True)
            out[i + 1] = nbgrader(match["check"], grade=True, locked=True, points=kept_points(cells[i + 1]))
        else:
            out[i] = nbgrader(f"cell-{cell_id(i)}", locked=True)
    seen: dict[str, int] = {}
    for i, meta in enumerate(out):
        if meta["grade_id"] in seen:
            raise MetadataError(f"{name(i)}: its grade_id {meta['grade_id']!r} is also the one of cell "
                                f"{seen[meta['grade_id']]} (an exercise checked twice, or a cell id copied?)")
        seen[meta["grade_id"]] = i
    return out


def with_metadata(nb: dict, where: str) -> dict:
    """``nb`` (changed in place and returned) with every cell's ``metadata.nbgrader`` set."""
    for cell, meta in zip(nb["cells"], lesson_metadata(nb, where)):
        cell.setdefault("metadata", {})["nbgrader"] = meta
    return nb


def update(folder: Path, names: list[str] | None = None, check: bool = False, log=print) -> int:
    """Write the metadata into the lessons of ``folder``; 0 on success, 1 when ``check`` finds a lesson out of date."""
    paths = select_lessons(folder, names)
    stale = []
    for path in paths:
        current = path.read_bytes()
        data = dumps(with_metadata(read_solution(path), shown(path)))
        if data == current:
            continue
        stale.append(path)
        if not check:
            path.write_bytes(data)
            log(f"wrote nbgrader metadata into {shown(path)}")
    if check and stale:
        for path in stale:
            log(f"out of date: {shown(path)}")
        log("run `python3 tools/nbgrader_metadata.py` to write nbgrader's metadata into the lessons")
        return 1
    log(f"{len(paths) - len(stale) if check else len(stale)} of {len(paths)} lessons "
        + ("have current nbgrader metadata" if check else "updated, the others were up to date"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson names (default: all), e.g. 03_attention")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a lesson is out of date")
    parser.add_argument("--folder", type=Path, default=ROOT / "solutions", help="the lessons' folder (default: solutions/)")
    args = parser.parse_args(argv)
    try:
        return update(args.folder, args.lessons, check=args.check)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
