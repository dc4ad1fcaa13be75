"""Run every benchmark in this folder, one after the other (`python course.py bench`).

    python course.py bench            # all benchmarks (the lesson table takes ~15 minutes,
                                      # the memory walk through lessons 00-08 ~5 minutes)
    python course.py bench --quick    # short versions where a benchmark offers one; no lesson
                                      # table, no memory walk

Each benchmark prints ratios against the course's targets; none of them fails.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    for script in sorted(HERE.glob("*.py")):
        if script.name == "run_all.py" or (quick and script.name in ("notebooks.py", "memory_walk.py")):
            continue
        print(f"\n=== {script.name} ===", flush=True)
        args = ["--quick"] if quick and "--quick" in script.read_text() else []
        subprocess.call([sys.executable, str(script), *args])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
