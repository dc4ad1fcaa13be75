"""Run lessons in solutions/ top to bottom and store their outputs (for instructors).

    python course.py execute                  # every lesson
    python course.py execute 03_attention     # one lesson

Run it after editing a lesson, then `python course.py notebooks` to rebuild the exercise
versions. Each lesson runs in a fresh kernel of this environment, the way the tests run it, so
the stored outputs are exactly what nbval compares against. No timing metadata or widget
state is stored, so re-running an unchanged lesson leaves its file unchanged.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from build_notebooks import lesson_paths

ROOT = Path(__file__).resolve().parent.parent
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def execute(path: Path, timeout: int = 1200) -> float:
    """Execute one notebook in place; return the seconds it took."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = KERNELSPEC
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            store_widget_state=True, resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson names, e.g. 03_attention (default: all)")
    args = parser.parse_args(argv)
    paths = lesson_paths(ROOT / "solutions")        # the lessons only, never a learner's Untitled.ipynb
    if args.lessons:
        wanted = {n.removesuffix(".ipynb") for n in args.lessons}
        paths = [p for p in paths if p.stem in wanted]
        if len(paths) != len(wanted):
            print(f"unknown lesson among {sorted(wanted)}", file=sys.stderr)
            return 2
    for path in paths:
        print(f"executing solutions/{path.name} ...", flush=True)
        print(f"  done in {execute(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
