"""Which of your exercises pass, fail, or are not started yet?

    python course.py progress                 # every lesson in notebooks/
    python course.py progress 03 04           # some lessons (number or name)
    python course.py progress --timeout 300   # allow a cell up to 300 s (default 120 s)

Each exercise notebook is run top to bottom in a fresh kernel, from an in-memory copy: your
files are never changed. Training loops run only a few steps (TRANSFORMER_COURSE_SMOKE=1),
since only the exercises are checked. Every check reports its result, and a table per lesson
shows ✅ pass, ❌ fail (with the first line of the check's diagnosis), ❗ an error in the
exercise's cells (cell, line and message), ⏳ not started and ❔ not reached. A cell that runs
longer than the time-out (an endless loop?) is stopped and named, and a notebook that cannot be
read is named; either way the other lessons are still run. Only the lessons count: notebooks
named ``NN_name.ipynb``; your own extra notebooks (``Untitled.ipynb``, copies) are left alone.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from build_notebooks import lesson_paths

ROOT = Path(__file__).resolve().parent.parent
CHECK_CALL = re.compile(r"^\s*\w+\s*=\s*check_(\w+)\s*\(", re.MULTILINE)  # name = check_name(name)
SYMBOLS = {"pass": "✅", "fail": "❌", "error": "❗", "todo": "⏳", "not run": "❔"}
WORDS = {"pass": "passes", "fail": "fails", "error": "has an error", "todo": "not started", "not run": "not reached"}
DEFAULT_TIMEOUT = 120
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CELL_LINE = re.compile(r"Cell In\[\d+\], line (\d+)")
QUIET = logging.getLogger("course.progress")      # nbclient's own log lines would repeat what we report
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


@dataclass
class Result:
    exercise: str
    status: str          # pass | fail | error | todo | not run
    message: str = ""


class Unreadable(Exception):
    """The notebook file cannot be read as a notebook; the message says why and what to do."""


def checks_in(nb) -> list[tuple[int, str]]:
    """(cell index, exercise name) of every check, in order: one ``name = check_<name>(name)`` line each."""
    return [(i, name) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for name in CHECK_CALL.findall(cell.source)]


def exercises_in(nb) -> list[str]:
    """The exercises a notebook checks, in order."""
    return [name for _, name in checks_in(nb)]


def read_notebook(path: Path):
    """The notebook at ``path``, or :class:`Unreadable` naming the file and the way out."""
    import nbformat

    rebuild = (f"Repair it, or get the unsolved version back with `python3 course.py notebooks --force {path.stem}` "
               f"(which first copies your file to notebooks/.backup/).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise Unreadable(f"{path.name} cannot be read: it is not valid JSON (line {e.lineno}, column {e.colno}: "
                         f"{e.msg}), perhaps cut off while saving. {rebuild}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise Unreadable(f"{path.name} cannot be read ({type(e).__name__}: {e}). {rebuild}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise Unreadable(f"{path.name} cannot be read: it is JSON but not a notebook (no list of cells). {rebuild}")
    try:
        return nbformat.reads(json.dumps(data), as_version=4, capture_validation_error={})
    except Exception as e:  # noqa: BLE001 - any other way a notebook can be broken
        raise Unreadable(f"{path.name} cannot be read as a notebook ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}). {rebuild}") from None


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def cell_error(nb, index: int) -> str:
    """'cell 24 (`def softmax(x):`), line 3: SyntaxError: ...' for the first error output of a cell, or ''."""
    cell = nb.cells[index]
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            lines = CELL_LINE.findall(ANSI.sub("", "\n".join(out.get("traceback", []))))
            where = f", line {lines[-1]}" if lines else ""
            evalue = re.sub(r" \(\d+\.py, line \d+\)$", "", out.get("evalue", ""))  # the kernel's file name means nothing to you
            return f"cell {index + 1} (`{first_line(cell.source)[:50]}`){where}: {out.get('ename')}: {evalue}"
    return ""


def definition_cells(nb, name: str, before: int, after: int) -> list[int]:
    """Indices of the code cells between ``after`` and ``before`` that define the function ``name``."""
    define = re.compile(rf"^\s*def {name}\s*\(", re.MULTILINE)
    return [i for i in range(after + 1, before) if nb.cells[i].cell_type == "code" and define.search(nb.cells[i].source)]


def classify(nb, records: dict[int, list[dict]], stopped_at: int | None, why: str) -> list[Result]:
    """One result per check cell. ``records`` holds what the checks recorded, by the cell that ran
    them, so each result is matched to its exercise by cell and name, never by position. An error
    in the cells that define the exercise comes first (the check then tested something other than
    your code), then what its check recorded, then an error in the check cell itself."""
    results, previous = [], {}
    for index, name in checks_in(nb):
        defines = definition_cells(nb, name, before=index, after=previous.get(name, -1))
        previous[name] = index
        record = next((r for r in records.get(index, []) if r.get("check") == name), None)
        error = next((e for e in (cell_error(nb, i) for i in defines) if e), "")
        if stopped_at is not None and stopped_at in defines + [index]:
            results.append(Result(name, "error", f"cell {stopped_at + 1} {why}"))
        elif error:
            results.append(Result(name, "error", error))
        elif record:
            results.append(Result(name, record["status"], record.get("message", "")))
        else:
            error = cell_error(nb, index)
            results.append(Result(name, "error", error) if error else Result(name, "not run"))
    return results


def run_notebook(path: Path, timeout: int = DEFAULT_TIMEOUT) -> tuple[list[Result], str]:
    """Execute a copy of one notebook; return one result per exercise and a note on how it
    stopped early, if it did. Raises :class:`Unreadable` for a file that is not a notebook."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    nb = read_notebook(path)
    note, why, stopped_at = "", "", None
    running = {"index": None}
    records: dict[int, list[dict]] = {}

    with tempfile.TemporaryDirectory(prefix="course-progress-") as tmp:
        log = Path(tmp) / "checks.jsonl"

        def remember(cell, cell_index):
            running["index"] = cell_index

        def collect(cell, cell_index, execute_reply):
            """What the checks in this cell recorded: the lines added to the log while it ran."""
            if log.exists():
                lines = log.read_text(encoding="utf-8").splitlines()
                seen = sum(len(r) for r in records.values())
                records[cell_index] = [json.loads(line) for line in lines[seen:]]

        env = {"TRANSFORMER_COURSE_PROGRESS": str(log), "TRANSFORMER_COURSE_SMOKE": "1", "MPLBACKEND": "Agg"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        kernel_log = open(Path(tmp) / "kernel.log", "w")   # the kernel's own start-up and shutdown messages
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True, log=QUIET,
                           on_cell_execute=remember, on_cell_executed=collect, resources={"metadata": {"path": tmp}}).execute(
                               stdout=kernel_log, stderr=kernel_log)
        except CellTimeoutError:
            stopped_at = running["index"]
            why = (f"ran longer than {timeout} s and was stopped (an endless loop? run it in JupyterLab to see; "
                   f"allow more time with --timeout)")
            note = (f"stopped at cell {stopped_at + 1} (`{first_line(nb.cells[stopped_at].source)[:50]}`), "
                    f"which {why}")
        except DeadKernelError:
            where = f"at cell {running['index'] + 1}" if running["index"] is not None else "before the first cell"
            note = f"stopped {where}: its kernel died (out of memory?); run the lesson in JupyterLab to see where"
        except Exception as e:  # noqa: BLE001 - anything else that ends the run: report, go on
            note = f"stopped early: {type(e).__name__}: {first_line(str(e))}"
        finally:
            kernel_log.close()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    results = classify(nb, records, stopped_at, why)
    if stopped_at is not None and any(r.message.startswith(f"cell {stopped_at + 1} ran") for r in results):
        note = f"stopped at cell {stopped_at + 1}: the cells after it were not run"
    return results, note


def select(paths: list[Path], wanted: list[str]) -> list[Path]:
    if not wanted:
        return paths
    chosen = [p for p in paths if any(p.stem == w or p.stem.startswith(w.zfill(2) + "_") for w in wanted)]
    if not chosen:
        raise SystemExit(f"no lesson matches {wanted}; lessons: {', '.join(p.stem for p in paths)}")
    return chosen


def report(lesson: str, results: list[Result], note: str, out=print, seconds: float | None = None) -> None:
    done = sum(r.status == "pass" for r in results)
    took = f" ({seconds:.0f} s)" if seconds is not None else ""
    out(f"{lesson}: {done} of {len(results)} exercises pass{took}")
    width = max((len(r.exercise) for r in results), default=0)
    for r in results:
        line = f"  {SYMBOLS[r.status]} {r.exercise.ljust(width)}  {WORDS[r.status]}"
        if r.status in ("fail", "error") and r.message:
            line += f": {r.message[:200]}"
        out(line)
    if note:
        out(f"  (the notebook {note})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    parser.add_argument("--dir", type=Path, default=ROOT / "notebooks", help="folder of exercise notebooks")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"stop a cell that runs longer than this (default {DEFAULT_TIMEOUT} s)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    paths = select(lesson_paths(args.dir), args.lessons)
    print(f"Running {len(paths)} lesson(s) from {args.dir} in the background, each cell for at most "
          f"{args.timeout} s (your files are not changed)...", flush=True)
    totals = {s: 0 for s in SYMBOLS}
    unreadable = []
    start = time.perf_counter()
    for path in paths:
        print(f"\n▶ {path.stem} is running...", flush=True)
        lesson_start = time.perf_counter()
        try:
            results, note = run_notebook(path, timeout=args.timeout)
        except Unreadable as e:
            print(f"  ❗ {e}", flush=True)
            unreadable.append(path.stem)
            continue
        report(path.stem, results, note, seconds=time.perf_counter() - lesson_start)
        for r in results:
            totals[r.status] += 1
    n = sum(totals.values())
    extra = "".join(f", {totals[s]} {word}" for s, word in (("error", "with an error"), ("not run", "not reached"))
                    if totals[s])
    print(f"\nIn all: {totals['pass']} of {n} exercises pass, {totals['fail']} fail, "
          f"{totals['todo']} not started{extra} ({time.perf_counter() - start:.0f} s)."
          + (f" Could not read: {', '.join(unreadable)}." if unreadable else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
