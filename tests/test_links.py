"""Every relative link in the README, the guides and the lessons leads somewhere, and every
image has alt text."""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import ROOT

LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HREF = re.compile(r"""<(?:a|img)\s[^>]*?(?:href|src)=["']([^"']+)["']""")
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
NOTEBOOKS = sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "notebooks").glob("*.ipynb"))


def markdown_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text()


def links(text: str):
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks are not links
    for bang, alt, target in LINK.findall(text):
        yield bool(bang), alt, target
    for target in HREF.findall(text):
        yield False, None, target


@pytest.mark.parametrize("path", DOCS + NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in DOCS + NOTEBOOKS])
def test_relative_links_resolve_and_images_have_alt_text(path):
    broken = []
    for is_image, alt, target in links(markdown_of(path)):
        if is_image and not alt.strip():
            broken.append(f"image without alt text: {target}")
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            assert target.startswith(("https://", "http://", "mailto:", "#")), target
            continue
        file_part = unquote(target.split("#", 1)[0])
        if file_part and not (path.parent / file_part).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


def test_readme_links_every_lesson_and_its_exercise_version():
    readme = (ROOT / "README.md").read_text()
    for lesson in sorted((ROOT / "solutions").glob("*.ipynb")):
        assert f"(solutions/{lesson.name})" in readme and f"(notebooks/{lesson.name})" in readme, lesson.name


def test_lesson_00_map_and_table_list_every_lesson():
    """Lesson 00's table and its course map name every lesson in solutions/, in order."""
    from transformer_lib.plotting.course import LESSONS as MAP

    lessons = sorted(p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assert [num for num, _ in MAP] == [name[:2] for name in lessons]
    start = json.loads((ROOT / "solutions" / "00_start_here.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in start["cells"] if c["cell_type"] == "markdown")
    for name in lessons:
        assert re.search(rf"^\| {name[:2]} \| \[[^\]]+\]\({name}\.ipynb\)", text, re.MULTILINE), name
