"""Which of your exercises pass, fail, or are not started yet?

    python course.py progress               # every lesson in notebooks/
    python course.py progress 03 04         # some lessons (number or name)

Each exercise notebook is run top to bottom in a fresh kernel, from an in-memory copy: your
files are never changed. Training loops run only a few steps (TRANSFORMER_COURSE_SMOKE=1),
since only the exercises are checked. Every check reports its result, and a table per lesson
shows ✅ pass, ❌ fail (with the first line of the check's diagnosis) and ⏳ not started.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECK_CALL = re.compile(r"^\s*\w+\s*=\s*check_(\w+)\s*\(", re.MULTILINE)  # name = check_name(name)
SYMBOLS = {"pass": "✅", "fail": "❌", "todo": "⏳", "not run": "❔"}
WORDS = {"pass": "passes", "fail": "fails", "todo": "not started", "not run": "not reached"}


@dataclass
class Result:
    exercise: str
    status: str          # pass | fail | todo | not run
    message: str = ""


def exercises_in(nb) -> list[str]:
    """The exercises a notebook checks, in order: one ``name = check_<name>(name)`` line each."""
    names = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            names += CHECK_CALL.findall(cell.source)
    return names


def run_notebook(path: Path, timeout: int = 600) -> tuple[list[Result], str]:
    """Execute a copy of one notebook; return one result per exercise and an error note, if any."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    expected = exercises_in(nb)
    note = ""
    with tempfile.TemporaryDirectory(prefix="course-progress-") as tmp:
        log = Path(tmp) / "checks.jsonl"
        env = {"TRANSFORMER_COURSE_PROGRESS": str(log), "TRANSFORMER_COURSE_SMOKE": "1", "MPLBACKEND": "Agg"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": tmp}}).execute()
        except Exception as e:  # a crashed kernel or a cell over the time limit: report, go on
            note = f"stopped early: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    results = []
    for i, name in enumerate(expected):
        if i < len(records) and records[i]["check"] == name:
            results.append(Result(name, records[i]["status"], records[i].get("message", "")))
        else:
            results.append(Result(name, "not run"))
    return results, note


def select(paths: list[Path], wanted: list[str]) -> list[Path]:
    if not wanted:
        return paths
    chosen = [p for p in paths if any(p.stem == w or p.stem.startswith(w.zfill(2) + "_") for w in wanted)]
    if not chosen:
        raise SystemExit(f"no lesson matches {wanted}; lessons: {', '.join(p.stem for p in paths)}")
    return chosen


def report(lesson: str, results: list[Result], note: str, out=print) -> None:
    done = sum(r.status == "pass" for r in results)
    out(f"\n{lesson}: {done} of {len(results)} exercises pass")
    width = max((len(r.exercise) for r in results), default=0)
    for r in results:
        line = f"  {SYMBOLS[r.status]} {r.exercise.ljust(width)}  {WORDS[r.status]}"
        if r.status == "fail" and r.message:
            line += f": {r.message[:160]}"
        out(line)
    if note:
        out(f"  (the notebook {note})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    parser.add_argument("--dir", type=Path, default=ROOT / "notebooks", help="folder of exercise notebooks")
    args = parser.parse_args(argv)
    paths = select(sorted(args.dir.glob("[0-9][0-9]_*.ipynb")), args.lessons)
    print(f"Running {len(paths)} lesson(s) from {args.dir} in the background (your files are not changed)...")
    totals = {s: 0 for s in SYMBOLS}
    start = time.perf_counter()
    for path in paths:
        results, note = run_notebook(path)
        report(path.stem, results, note)
        for r in results:
            totals[r.status] += 1
    n = sum(totals.values())
    print(f"\nIn all: {totals['pass']} of {n} exercises pass, {totals['fail']} fail, "
          f"{totals['todo']} not started" + (f", {totals['not run']} not reached" if totals["not run"] else "")
          + f" ({time.perf_counter() - start:.0f} s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
