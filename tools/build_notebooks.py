"""Write the exercise notebooks in notebooks/ from the lessons in solutions/.

    python course.py notebooks            # or: python tools/build_notebooks.py
    python course.py notebooks --check    # exit 1 if notebooks/ is out of date
    python course.py notebooks --force    # overwrite notebooks edited since the last build

In every code cell the lines between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (the
markers of nbgrader) become ``# YOUR CODE HERE`` + ``raise NotImplementedError()`` at the
marker's indentation; in a markdown cell they become ``YOUR ANSWER HERE``, exactly as nbgrader's
``generate_assignment`` writes them (a line that mentions a marker without being one is refused,
since nbgrader would take it for one). Outputs and execution counts are cleared; the cells keep
their ids, tags and nbgrader metadata (``tools/nbgrader_metadata.py``), so a learner's exercise
notebook can be autograded by nbgrader like the one nbgrader releases. The output is
byte-for-byte reproducible.

The build never silently destroys a learner's work: ``notebooks/.build-manifest.json`` records
the hash of every notebook it wrote, and a notebook whose content no longer matches (someone
edited or ran it) stops the build, which then writes nothing, unless ``--force`` is given; a
forced overwrite first copies the edited notebook to ``notebooks/.backup/`` under a name of its
own (two rebuilds within one second keep both copies).

The lessons are the notebooks in ``solutions/`` named ``NN_name.ipynb`` (two digits, then
lower-case letters, digits and ``_``). Other notebooks there or in ``notebooks/``, such as a
learner's ``Untitled.ipynb`` or ``04_multi_head_attention-Copy1.ipynb``, are not lessons: the
build, ``progress`` and the tests leave them alone.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MANIFEST = ".build-manifest.json"
LESSON_NAME = re.compile(r"^[0-9]{2}_[a-z0-9_]+\.ipynb$")


def lesson_paths(folder: Path) -> list[Path]:
    """The lesson notebooks in ``folder`` (``NN_name.ipynb``), sorted; any other notebook is not a lesson."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if LESSON_NAME.match(p.name))


def select_lessons(folder: Path, names: list[str] | None = None) -> list[Path]:
    """The lessons of ``folder`` named in ``names`` (``03_attention`` or ``03_attention.ipynb``; none: all)."""
    paths = lesson_paths(folder)
    if not names:
        return paths
    wanted = {n.removesuffix(".ipynb") + ".ipynb" for n in names}
    missing = wanted - {p.name for p in paths}
    if missing:
        raise SystemExit(f"no such lesson in {folder}: {', '.join(sorted(missing))}")
    return [p for p in paths if p.name in wanted]


class BuildError(ValueError):
    """A file the build reads is broken; the message names it and says what to do."""


class MarkerError(BuildError):
    """A solution notebook has unbalanced or nested solution markers."""


def shown(path: Path) -> str:
    """``solutions/03_attention.ipynb``: a path as the course's commands name it."""
    return f"{path.parent.name}/{path.name}"


def read_json(path: Path, fix: str):
    """The JSON in ``path``; a broken file raises :class:`BuildError` naming it, the problem and ``fix``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BuildError(f"{shown(path)} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}). {fix}") from None
    except UnicodeDecodeError as e:
        raise BuildError(f"{shown(path)} is not UTF-8 text ({e.reason} at byte {e.start}). {fix}") from None


def read_solution(path: Path) -> dict:
    fix = (f"Repair it in a text editor, or restore the lesson (e.g. `git checkout {shown(path)}`), "
           "then build again.")
    nb = read_json(path, fix)
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise BuildError(f"{shown(path)} is JSON but not a notebook (it has no list of \"cells\"). {fix}")
    return nb


def read_manifest(path: Path) -> dict:
    fix = ("Delete it and build again: without it, every exercise notebook that differs from its lesson "
           "counts as edited, so nothing is overwritten without --force, and --force backs them up first.")
    if not path.exists():
        return {}
    manifest = read_json(path, fix)
    if not isinstance(manifest, dict):
        raise BuildError(f"{shown(path)} is JSON but not a table of notebook names and hashes. {fix}")
    return manifest


def backup_path(folder: Path, stem: str) -> Path:
    """A new file name in ``folder`` for a copy of ``stem``: timestamped, never an existing file's."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"{stem}-{stamp}.ipynb", 2
    while path.exists():
        path, n = folder / f"{stem}-{stamp}-{n}.ipynb", n + 1
    return path


#: the metadata a cell keeps in the exercise version (outputs' and tools' own metadata goes)
KEPT_METADATA = ("tags", "jupyter", "nbgrader")


def header_cell(name: str) -> dict:
    return {
        "cell_type": "markdown",
        "id": "exercise-version",
        "metadata": {},     # no nbgrader metadata: autograde refuses a locked cell its source notebook lacks
        "source": [
            f"> **Exercise version.** Fill in every cell marked `# YOUR CODE HERE` and run the check below it.\n",
            f"> The worked solution, with all outputs, is [`solutions/{name}`](../solutions/{name}).\n",
            "> This file is generated by `python3 course.py notebooks`: edit the lesson in `solutions/`.",
        ],
    }


def strip_solution(source: str, where: str, markdown: bool = False) -> str:
    """Replace every marked region of one cell's source; ``where`` names the cell in errors."""
    out: list[str] = []
    inside = False
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise MarkerError(f"{where}, line {number}: nested '{BEGIN}' (the previous one has no '{END}')")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            if markdown:
                out.append(f"{indent}YOUR ANSWER HERE\n")
            else:
                out.append(f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()\n")
        elif stripped == END:
            if not inside:
                raise MarkerError(f"{where}, line {number}: '{END}' without a '{BEGIN}' before it")
            inside = False
        elif "BEGIN SOLUTION" in line or "END SOLUTION" in line:
            raise MarkerError(f"{where}, line {number}: {stripped[:60]!r} mentions a solution marker without being "
                              f"one; nbgrader would take it for one. Put '{BEGIN}' or '{END}' alone on its line, "
                              f"or reword the line")
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: '{BEGIN}' is never closed by '{END}'")
    return "".join(out).rstrip("\n")


def exercise_notebook(solution: dict, name: str) -> dict:
    """The exercise version of a solution notebook (a new dict; the input is not changed)."""
    cells = [header_cell(name)]
    for index, cell in enumerate(solution["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        where = f"solutions/{name}, cell {index} ({cell['cell_type']}, starting {source.strip()[:40]!r})"
        new = {"cell_type": cell["cell_type"], "id": cell.get("id", f"cell-{index}"),
               "metadata": {k: v for k, v in cell.get("metadata", {}).items() if k in KEPT_METADATA},
               "source": strip_solution(source, where, markdown=cell["cell_type"] == "markdown")}
        if cell["cell_type"] == "code":
            new["execution_count"] = None
            new["outputs"] = []
        if "attachments" in cell:
            new["attachments"] = cell["attachments"]
        cells.append(new)
    metadata = {k: v for k, v in solution.get("metadata", {}).items() if k in ("kernelspec", "language_info")}
    return {"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": solution.get("nbformat_minor", 5)}


def render(nb: dict) -> bytes:
    """Deterministic JSON, formatted like Jupyter writes it, each cell's source a list of lines."""
    for cell in nb["cells"]:
        src = cell["source"]
        cell["source"] = src.splitlines(keepends=True) if isinstance(src, str) else src
    return dumps(nb)


def dumps(nb: dict) -> bytes:
    """A notebook's JSON as the course stores it (indent 1, sorted keys, UTF-8, final newline)."""
    return (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(solutions: Path, notebooks: Path, force: bool = False, check: bool = False,
          names: list[str] | None = None, log=print) -> int:
    """Build; return 0 on success, 1 when ``check`` finds differences or edited notebooks block it.

    Two steps: what ``notebooks/`` should hold (the stripping core, :func:`exercise_notebook`),
    then :func:`sync`, which compares, protects edited notebooks and writes.
    """
    planned = {path.name: render(exercise_notebook(read_solution(path), path.name))
               for path in select_lessons(solutions, names)}
    return sync(planned, notebooks, force=force, check=check, log=log)


def sync(planned: dict[str, bytes], notebooks: Path, force: bool = False, check: bool = False, log=print) -> int:
    """Make ``notebooks/`` hold ``planned`` (``{file name: bytes}``) and the manifest record them.

    A notebook that differs from ``planned`` and from the hash the manifest recorded was edited
    since the last build: it stops the build (nothing is written) unless ``force``, which first
    backs it up. ``check`` writes nothing and reports what is out of date.
    """
    manifest_path = notebooks / MANIFEST
    manifest = read_manifest(manifest_path)
    changed = [name for name, data in planned.items()
               if not (notebooks / name).exists() or (notebooks / name).read_bytes() != data]
    edited = [name for name in changed
              if (notebooks / name).exists() and manifest.get(name) != sha256((notebooks / name).read_bytes())]
    new_manifest = dict(sorted({**manifest, **{name: sha256(data) for name, data in planned.items()}}.items()))
    manifest_stale = manifest != new_manifest
    if check:
        for name in changed:
            log(f"out of date: notebooks/{name}")
        if manifest_stale and not changed:
            log(f"out of date: notebooks/{MANIFEST}")
        if changed or manifest_stale:
            log("run `python course.py notebooks` to rebuild the exercise notebooks")
            return 1
        log(f"notebooks/ is in sync with solutions/ ({len(planned)} notebooks)")
        return 0
    if edited and not force:
        log("Stopped: these exercise notebooks were changed since the last build (your work?):")
        for name in edited:
            log(f"  notebooks/{name}")
        log("Nothing was written. Rebuild anyway with `python course.py notebooks --force`\n"
            "(the edited notebooks are first copied to notebooks/.backup/).")
        return 1
    notebooks.mkdir(exist_ok=True)
    for name in edited:
        (notebooks / ".backup").mkdir(exist_ok=True)
        backup = backup_path(notebooks / ".backup", Path(name).stem)
        shutil.copy2(notebooks / name, backup)
        log(f"kept your edited notebooks/{name} as {backup.relative_to(notebooks.parent)}")
    for name in changed:
        (notebooks / name).write_bytes(planned[name])
        log(f"wrote notebooks/{name}")
    manifest_path.write_text(json.dumps(new_manifest, indent=1, sort_keys=True) + "\n")
    log(f"{len(changed)} of {len(planned)} exercise notebooks written, the others were up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson names (default: all), e.g. 03_attention")
    parser.add_argument("--force", action="store_true", help="overwrite exercise notebooks edited since the last build")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if notebooks/ is out of date")
    args = parser.parse_args(argv)
    try:
        return build(ROOT / "solutions", ROOT / "notebooks", force=args.force, check=args.check, names=args.lessons)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
