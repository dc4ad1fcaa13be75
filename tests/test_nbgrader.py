"""nbgrader can use solutions/ as its source notebooks, tested with the real nbgrader (issue 15).

* ``tools/nbgrader_metadata.py`` derives every cell's nbgrader metadata from its contents (an
  exercise is a solution cell, its check an autograded test cell with points, every other cell is
  locked), refuses lessons that break the exercise/check pattern, and changes nothing else;
* the exercise build carries that metadata into notebooks/;
* under ``TRANSFORMER_COURSE_GRADING=1`` (what the course's ``nbgrader_config.py`` sets for the
  autograder) a check whose exercise is not done or wrong writes its message to stderr, which
  nbgrader scores 0, and returns the reference, so later exercises are graded on their own;
* with nbgrader 0.9.6 (requirements-instructors.txt): ``generate_assignment`` accepts every lesson
  and releases notebooks *equivalent* to our build (see :func:`test_nbgrader_releases_what_our_build_writes`),
  and ``autograde`` gives a solved submission full marks, an unsolved one zero, and a mixed one
  exactly the points of its solved exercises. Autograding executes notebooks, so it runs on three
  lessons only (GRADED); generating runs on all of them.

Without nbgrader those tests are skipped with the reason; in CI (CI=true) a missing nbgrader fails.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import build_notebooks as bn
import nbgrader_course as nc
import nbgrader_metadata as nm
from conftest import ROOT, lesson_paths
from transformer_lib import checks
from transformer_lib.checks import CheckFailed, is_reference

HAVE_NBGRADER = importlib.util.find_spec("nbgrader") is not None
INSTALL = "pip install -r requirements-instructors.txt"
needs_nbgrader = pytest.mark.skipif(not HAVE_NBGRADER, reason=f"nbgrader is not installed ({INSTALL}; CI installs it)")
LESSONS = lesson_paths(ROOT / "solutions")
GRADED = ("00_start_here", "03_attention")      # autograded, three times each: one exercise, and four that build on each other
CHECKS = sorted((getattr(checks, name) for name in dir(checks) if name.startswith("check_")),
                key=lambda c: c.__name__)


def ids(check):
    return check.__name__


def cell(cell_type: str, source: str, cid: str, **metadata) -> dict:
    out = {"cell_type": cell_type, "id": cid, "metadata": metadata, "source": source}
    if cell_type == "code":
        out.update(execution_count=None, outputs=[])
    return out


def notebook(*cells) -> dict:
    return {"cells": list(cells), "metadata": {"kernelspec": {"name": "python3", "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


EXERCISE = "def f(x):\n    '''doc'''\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION"
CHECK = "from transformer_lib.checks import check_f\n\nf = check_f(f)"


def lesson() -> dict:
    return notebook(cell("markdown", "# 01 · A", "intro"), cell("code", "x = 1", "demo"),
                    cell("code", EXERCISE, "ex"), cell("code", CHECK, "chk"),
                    cell("markdown", "Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION", "why"))


def meta(grade_id, solution=False, grade=False, locked=False, points=None) -> dict:
    out = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution}
    return {**out, "points": points} if grade else out


def without_nbgrader(nb: dict) -> dict:
    nb = copy.deepcopy(nb)
    for c in nb["cells"]:
        c["metadata"].pop("nbgrader", None)
    return nb


# ---------------------------------------------------------------------------------- the metadata tool

def test_the_metadata_is_derived_from_the_cells():
    got = [c["metadata"]["nbgrader"] for c in nm.with_metadata(lesson(), "x")["cells"]]
    assert got == [meta("cell-intro", locked=True), meta("cell-demo", locked=True),
                   meta("f", solution=True),                                     # the exercise: the learner writes here
                   meta("check_f", grade=True, locked=True, points=1),           # its check: autograded
                   meta("answer-why", solution=True, grade=True, points=1)]      # a written answer: graded by hand


@pytest.mark.parametrize("points, kept", [(3, 3), (0.5, 0.5), (0, 1), (True, 1), ("2", 1), (None, 1)])
def test_points_set_by_hand_are_kept_and_nonsense_is_replaced(points, kept):
    nb = lesson()
    nb["cells"][3]["metadata"]["nbgrader"] = {"points": points}
    assert nm.with_metadata(nb, "x")["cells"][3]["metadata"]["nbgrader"]["points"] == kept


@pytest.mark.parametrize("change, message", [
    (lambda cells: cells.pop(3), "cell 2 .* is an exercise, but the next cell is not its check"),
    (lambda cells: cells.insert(3, cell("code", "print(f(1))", "between")), "cell 2 .* the next cell is not its check"),
    (lambda cells: cells.__setitem__(3, cell("code", "g = check_g(g)", "chk")), "cell 2 .* does not define `def g\\(`"),
    (lambda cells: cells[1].pop("id"), "cell 1 .* has no usable cell id"),
    (lambda cells: cells[1].__setitem__("id", "intro"), "cell 1 .*'cell-intro' is also the one of cell 0"),
    (lambda cells: cells.extend(copy.deepcopy(cells[2:4])), "cell 5 .*'f' is also the one of cell 2"),
])
def test_a_lesson_that_breaks_the_pattern_is_refused_naming_the_cell(change, message):
    nb = lesson()
    change(nb["cells"])
    with pytest.raises(nm.MetadataError, match=rf"solutions/01_a.ipynb, {message}"):
        nm.with_metadata(nb, "solutions/01_a.ipynb")


@pytest.fixture(scope="module")
def lessons(tmp_path_factory) -> Path:
    """Copies of all lessons with their nbgrader metadata written by the tool (solutions/ is left alone)."""
    folder = tmp_path_factory.mktemp("lessons")
    for path in LESSONS:
        shutil.copyfile(path, folder / path.name)
    assert nm.update(folder, log=lambda *a: None) == 0
    return folder


def test_the_tool_adds_only_metadata_to_every_lesson_and_a_second_run_changes_nothing(lessons):
    messages = []
    assert nm.update(lessons, check=True, log=messages.append) == 0, messages
    before = {p.name: p.read_bytes() for p in lesson_paths(lessons)}
    nm.update(lessons, log=messages.append)
    assert {p.name: p.read_bytes() for p in lesson_paths(lessons)} == before
    for path in LESSONS:
        written = json.loads((lessons / path.name).read_text())
        assert without_nbgrader(written) == without_nbgrader(json.loads(path.read_text()))
        cells = written["cells"]
        assert all("nbgrader" in c["metadata"] for c in cells)
        exercises = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and nm.has_solution(c)]
        graded = [i for i, c in enumerate(cells) if c["metadata"]["nbgrader"]["grade"]]
        assert exercises and graded == [i + 1 for i in exercises], path.name
        for i in exercises:
            name = cells[i]["metadata"]["nbgrader"]["grade_id"]
            assert cells[i]["metadata"]["nbgrader"] == meta(name, solution=True)
            assert nm.source_of(cells[i + 1]).endswith(f"{name} = check_{name}({name})"), path.name
            assert cells[i + 1]["metadata"]["nbgrader"] == meta(f"check_{name}", grade=True, locked=True, points=1)
        assert all(c["metadata"]["nbgrader"]["locked"] for i, c in enumerate(cells) if i not in exercises)


def test_check_mode_names_the_lessons_out_of_date_and_the_command(tmp_path, capsys):
    stale = json.loads(LESSONS[0].read_text(encoding="utf-8"))
    for cell in stale["cells"]:
        cell["metadata"].pop("nbgrader", None)                  # as if the tool had never run
    (tmp_path / LESSONS[0].name).write_text(json.dumps(stale, indent=1, ensure_ascii=False), encoding="utf-8")
    assert nm.main(["--check", "--folder", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"out of date: {tmp_path.name}/{LESSONS[0].name}" in out and "tools/nbgrader_metadata.py" in out
    assert nm.main(["--folder", str(tmp_path)]) == 0
    assert nm.main(["--check", "--folder", str(tmp_path)]) == 0


def test_the_lessons_carry_the_metadata_the_tool_writes():
    """Keeps it true: a lesson changed without running the tool fails here."""
    messages = []
    assert nm.update(ROOT / "solutions", check=True, log=messages.append) == 0, "\n".join(messages)


# ---------------------------------------------------------------------------------- the exercise build

def test_the_exercise_build_keeps_each_cells_nbgrader_metadata():
    solution = nm.with_metadata(lesson(), "x")
    built = bn.exercise_notebook(solution, "01_a.ipynb")
    assert built["cells"][0]["id"] == "exercise-version" and "nbgrader" not in built["cells"][0]["metadata"]
    assert [c["metadata"]["nbgrader"] for c in built["cells"][1:]] == \
        [c["metadata"]["nbgrader"] for c in solution["cells"]]
    assert bn.render(bn.exercise_notebook(solution, "01_a.ipynb")) == bn.render(built)        # reproducible


@pytest.mark.parametrize("source, markdown", [
    ("x = 1  # BEGIN SOLUTION\ny = 2", False),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    # END SOLUTION here\n    ### END SOLUTION", False),
    ("Write your answer between `### BEGIN SOLUTION` and `### END SOLUTION`.", True),
])
def test_a_line_that_mentions_a_marker_is_refused_since_nbgrader_would_take_it_for_one(source, markdown):
    with pytest.raises(bn.MarkerError, match="mentions a solution marker without being one; nbgrader would take it"):
        bn.strip_solution(source, "solutions/01_a.ipynb, cell 3", markdown=markdown)


# ---------------------------------------------------------------------------------- the grading switch

def stub(*args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


def returns_none(*args, **kwargs):
    return None


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_under_grading_an_untouched_stub_says_zero_points_on_stderr_and_goes_on(check, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFORMER_COURSE_GRADING", "1")
    got = check(stub)
    assert got is check.reference and is_reference(got)
    out, err = capsys.readouterr()
    assert err.startswith(f"⏳ {check.exercise_name} is not implemented\n") and "0 points" in err
    assert out == ""


# exercises that act on their arguments (gradients averaged in place, a training step): their check
# first says what did not happen to the model, before what came back
IN_PLACE = {"check_average_gradients", "check_train_step"}


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_under_grading_a_wrong_answer_says_why_and_zero_points_on_stderr_and_goes_on(check, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFORMER_COURSE_GRADING", "1")
    assert check(returns_none) is check.reference
    out, err = capsys.readouterr()
    assert err.startswith(f"❌ {check.exercise_name}: ") and "0 points" in err
    assert "None" in err or check.__name__ in IN_PLACE
    assert out == ""


@pytest.mark.parametrize("check", CHECKS, ids=ids)
def test_under_grading_a_correct_answer_prints_nothing_on_stderr(check, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFORMER_COURSE_GRADING", "1")
    assert check(check.reference) is check.reference
    out, err = capsys.readouterr()
    assert err == "" and f"✅ {check.exercise_name} is correct" in out


@pytest.mark.parametrize("value", [None, "", "0"])
def test_with_the_switch_off_the_learner_sees_what_they_always_saw(value, capsys, monkeypatch):
    if value is None:
        monkeypatch.delenv("TRANSFORMER_COURSE_GRADING", raising=False)
    else:
        monkeypatch.setenv("TRANSFORMER_COURSE_GRADING", value)
    assert checks.check_softmax(stub) is checks.check_softmax.reference
    out, err = capsys.readouterr()
    assert "⏳ softmax is not implemented yet: replace `raise NotImplementedError()`" in out and err == ""
    with pytest.raises(CheckFailed, match="returned None"):
        checks.check_softmax(returns_none)


# ---------------------------------------------------------------------------------- the real nbgrader

def test_nbgrader_is_installed_where_ci_runs_the_tests():
    """The nbgrader tests below skip without nbgrader; CI must not skip them silently."""
    if os.environ.get("CI") and not HAVE_NBGRADER:
        pytest.fail(f"nbgrader is missing: CI must install it before the tests ({INSTALL}, see .ci/run)")


def test_the_instructors_requirements_are_pinned_exactly_and_agree_with_the_learners():
    def pins(path):
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        return {re.split(r"[=;<>]", line)[0].lower().replace("_", "-"): line for line in lines
                if line and not line.startswith("-")}
    instructors, learners = pins(ROOT / "requirements-instructors.txt"), pins(ROOT / "requirements.txt")
    assert instructors["nbgrader"] == "nbgrader==0.9.6"
    for name, line in instructors.items():
        assert re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][^;\s]*", line), line
        assert name not in learners or learners[name] == line, f"{line} disagrees with requirements.txt"


def nbgrader(course: Path, *args: str, smoke: bool = False) -> subprocess.CompletedProcess:
    """Run the nbgrader command line in ``course`` as an instructor would (in this environment; nbgrader
    runs `alembic` from PATH). Kernels inherit PYTHONPATH, so they import this checkout's transformer_lib.
    ``smoke``: training cells run a few steps (TRANSFORMER_COURSE_SMOKE=1, as in the exercise-notebook
    test); no grade depends on them, and lesson 03's recall training would triple the test's time."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if smoke:
        env["TRANSFORMER_COURSE_SMOKE"] = "1"
    env.pop("TRANSFORMER_COURSE_GRADING", None)          # the course's nbgrader_config.py must set it
    done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def course(lessons, tmp_path_factory) -> Path:
    """An nbgrader course with every lesson as an assignment, made by tools/nbgrader_course.py, released."""
    if not HAVE_NBGRADER:
        pytest.skip(f"nbgrader is not installed ({INSTALL}; CI installs it)")
    course = tmp_path_factory.mktemp("course")
    assert nc.make_course(course, solutions=lessons, log=lambda *a: None) == [p.stem for p in LESSONS]
    nbgrader(course, "generate_assignment", "*")     # checks every cell's metadata (CheckCellMetadata)
    return course


def release(course: Path, name: str) -> dict:
    return json.loads((course / "release" / name / f"{name}.ipynb").read_text())


def comparable(nb: dict) -> list[tuple]:
    """What "equivalent" compares, cell by cell: type, id, source, outputs, execution count, tags, and
    the nbgrader metadata without the two keys generate_assignment adds (``checksum``, ``cell_type``)."""
    return [(c["cell_type"], c["id"], nm.source_of(c), c.get("outputs"), c.get("execution_count"),
             c["metadata"].get("tags"),
             {k: v for k, v in c["metadata"]["nbgrader"].items() if k not in ("checksum", "cell_type")})
            for c in nb["cells"]]


@needs_nbgrader
def test_nbgrader_releases_what_our_build_writes(course, lessons):
    """Equivalent means: our exercise notebook is nbgrader's release plus our header cell (its first
    cell, ``exercise-version``, without nbgrader metadata), with every other cell equal in type, id,
    source (stubs included), cleared outputs, tags and nbgrader metadata (:func:`comparable`). Not
    compared: the metadata nbgrader alone writes (``deletable``/``editable`` locks, checksums), and what
    our build drops (jupytext's ``lines_to_next_cell``)."""
    for path in lesson_paths(lessons):
        ours = json.loads(bn.render(bn.exercise_notebook(json.loads(path.read_text()), path.name)))
        header, *cells = ours["cells"]
        assert header["id"] == "exercise-version" and "nbgrader" not in header["metadata"]
        theirs = release(course, path.stem)
        assert comparable({"cells": cells}) == comparable(theirs), path.name
        assert ours["metadata"]["kernelspec"] == theirs["metadata"]["kernelspec"]
        stubs = [c for c in theirs["cells"] if c["metadata"]["nbgrader"]["solution"]]
        assert stubs and all(re.search(r"^( {4,})# YOUR CODE HERE\n\1raise NotImplementedError\(\)", nm.source_of(c), re.M)
                             for c in stubs)                  # a function's body, or a method's (lesson 11)


def exercise_ids(nb: dict) -> list[str]:
    graded = [c["metadata"]["nbgrader"] for c in nb["cells"] if "nbgrader" in c["metadata"]]    # not our header
    return [m["grade_id"] for m in graded if m["solution"]]


def mixed(solution: dict, name: str) -> dict:
    """Our build's exercise notebook, as a learner leaves it: the first exercise untouched, the second
    returning None (wrong), every later one solved."""
    nb = json.loads(bn.render(bn.exercise_notebook(solution, f"{name}.ipynb")))
    solved = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in solution["cells"]}
    for n, grade_id in enumerate(exercise_ids(nb)):
        c = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)
        if n == 1:
            c["source"], found = re.subn(r"# YOUR CODE HERE\n\s*raise NotImplementedError\(\)", "return None",
                                         nm.source_of(c))
            assert found == 1, nm.source_of(c)
        elif n >= 2:
            c["source"] = solved[grade_id]
    return nb


@pytest.fixture(scope="module")
def autograded(course, lessons):
    """Submissions of GRADED by three students, autograded: `solved` hands in the lesson itself,
    `unsolved` nbgrader's release untouched, `mixed` our build's notebook as :func:`mixed` leaves it."""
    for name in GRADED:
        solution = (lessons / f"{name}.ipynb").read_text()
        handed_in = {"solved": solution, "unsolved": json.dumps(release(course, name)),
                     "mixed": json.dumps(mixed(json.loads(solution), name))}
        for student, text in handed_in.items():
            folder = course / "submitted" / student / name
            folder.mkdir(parents=True)
            (folder / f"{name}.ipynb").write_text(text)
        nbgrader(course, "autograde", name, "--create", smoke=True)
    from nbgrader.api import Gradebook
    scores = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for name in GRADED:
            for student in ("solved", "unsolved", "mixed"):
                notebook_ = gradebook.find_submission(name, student).notebooks[0]
                scores[name, student] = {g.name: (g.score, g.max_score) for g in notebook_.grades}
    return scores


@needs_nbgrader
@pytest.mark.parametrize("name", GRADED)
def test_autograde_gives_solved_full_marks_unsolved_zero_and_mixed_its_solved_exercises(name, course, autograded):
    checks_ = [f"check_{e}" for e in exercise_ids(release(course, name))]
    assert set(autograded[name, "solved"]) == set(checks_)
    assert autograded[name, "solved"] == {c: (1.0, 1.0) for c in checks_}
    assert autograded[name, "unsolved"] == {c: (0.0, 1.0) for c in checks_}
    # an untouched and a wrong exercise score 0; the later ones, although they call the earlier
    # exercises' functions (03's attention calls softmax), are graded on their own
    assert autograded[name, "mixed"] == {c: (0.0 if n < 2 else 1.0, 1.0) for n, c in enumerate(checks_)}


@needs_nbgrader
@pytest.mark.parametrize("name", GRADED)
def test_every_autograded_notebook_ran_to_its_end_and_says_why_points_are_missing(name, autograded, course):
    for student in ("solved", "unsolved", "mixed"):
        nb = json.loads((course / "autograded" / student / name / f"{name}.ipynb").read_text())
        outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
        errors = [f"{o['ename']}: {o['evalue']}" for o in outputs if o["output_type"] == "error"]
        assert not errors, (student, errors)
        said = "".join("".join(o["text"]) for o in outputs if o.get("name") == "stderr")
        zeros = sum(score == 0 for score, _ in autograded[name, student].values())
        assert said.count("0 points for this exercise") == zeros, (student, said)


# ---------------------------------------------------------------------------------- the course directory tool

def test_the_course_tool_copies_lessons_as_assignments_and_keeps_an_instructors_config(lessons, tmp_path, capsys):
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\nc.CourseDirectory.course_id = 'mine'\n")
    assert nc.make_course(tmp_path, ["03_attention"], solutions=lessons) == ["03_attention"]
    copied = tmp_path / "source" / "03_attention" / "03_attention.ipynb"
    assert copied.read_bytes() == (lessons / "03_attention.ipynb").read_bytes()
    assert (tmp_path / "nbgrader_config.py").read_text().endswith("'mine'\n")           # not overwritten...
    assert nc.GRADING_LINE in capsys.readouterr().out                                    # ...but told what to add
    assert nc.CONFIG.count(nc.GRADING_LINE) == 1 and "c.Execute.timeout = 900" in nc.CONFIG
    with pytest.raises(SystemExit, match="no such lesson .*99_nothing"):
        nc.make_course(tmp_path, ["99_nothing"], solutions=lessons)


def test_the_course_tool_refuses_a_lesson_without_current_metadata(tmp_path):
    shutil.copyfile(LESSONS[0], tmp_path / LESSONS[0].name)      # as in solutions/: maybe without metadata
    nm.update(tmp_path, log=lambda *a: None)
    nb = json.loads((tmp_path / LESSONS[0].name).read_text())
    nb["cells"][0]["metadata"].pop("nbgrader")
    (tmp_path / LESSONS[0].name).write_text(json.dumps(nb))
    with pytest.raises(bn.BuildError, match="lack.* current nbgrader metadata: run `python3 tools/nbgrader_metadata.py`"):
        nc.make_course(tmp_path / "course", solutions=tmp_path)
    assert not (tmp_path / "course" / "source").exists()
