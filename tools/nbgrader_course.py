"""Set up an nbgrader course directory whose assignments are the course's lessons.

    python3 tools/nbgrader_course.py ~/transformer-class                 # every lesson
    python3 tools/nbgrader_course.py ~/transformer-class 03_attention    # some lessons

Each lesson becomes one assignment: ``solutions/03_attention.ipynb`` is copied to
``<course>/source/03_attention/03_attention.ipynb``, nbgrader's source notebook (run it again after
changing a lesson: the copies are replaced). The course directory also gets the course's
``nbgrader_config.py``, unless it has one (then the lines it must contain are printed). Then, in the
course directory, with nbgrader installed (``pip install -r requirements-instructors.txt``):

    nbgrader generate_assignment 03_attention     # release/03_attention/03_attention.ipynb
    nbgrader autograde 03_attention               # grades submitted/<student>/03_attention/

A lesson must carry nbgrader's metadata first (``python3 tools/nbgrader_metadata.py``, see there).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from build_notebooks import ROOT, BuildError, dumps, read_solution, select_lessons, shown
from nbgrader_metadata import with_metadata

GRADING_LINE = ("c.Execute.extra_arguments = [\"--IPKernelApp.exec_lines=import os; "
                "os.environ['TRANSFORMER_COURSE_GRADING'] = '1'\"]")
CONFIG = f'''"""nbgrader settings for the course "Build a Transformer, step by step" (tools/nbgrader_course.py)."""
c = get_config()  # noqa: F821 - nbgrader defines it

# The autograder's kernels run the checks in grading mode: an exercise that is not done, or wrong,
# prints its message to stderr, which nbgrader scores 0 points, and the rest of the notebook goes on
# with the library's reference, so each later exercise is graded on its own.
{GRADING_LINE}
# Training lessons have cells that run for minutes on a CPU (nbgrader's default allows 30 s a cell).
c.Execute.timeout = 900
'''


def make_course(course: Path, names: list[str] | None = None, solutions: Path = ROOT / "solutions",
                log=print) -> list[str]:
    """Copy the lessons into ``course``'s ``source/`` and write its config; return the assignments' names."""
    paths = select_lessons(solutions, names)
    stale = [shown(p) for p in paths if dumps(with_metadata(read_solution(p), shown(p))) != p.read_bytes()]
    if stale:
        raise BuildError(f"{', '.join(stale)} lack(s) current nbgrader metadata: run "
                         f"`python3 tools/nbgrader_metadata.py` first")
    for path in paths:
        target = course / "source" / path.stem
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)
        log(f"source/{path.stem}/{path.name}")
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG, encoding="utf-8")
        log(f"wrote {config.name}")
    elif GRADING_LINE not in config.read_text(encoding="utf-8"):
        log(f"{config} exists and does not set grading mode; add these lines to it:\n\n{CONFIG}")
    return [p.stem for p in paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("course", type=Path, help="the nbgrader course directory (created if missing)")
    parser.add_argument("lessons", nargs="*", help="lesson names (default: all), e.g. 03_attention")
    args = parser.parse_args(argv)
    try:
        make_course(args.course, args.lessons)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
