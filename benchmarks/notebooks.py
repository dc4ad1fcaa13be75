"""Time and memory of every lesson, against the course's targets.

    python benchmarks/notebooks.py                 # all lessons in solutions/
    python benchmarks/notebooks.py 08 12           # some lessons
    python benchmarks/notebooks.py --readme        # also update README.md's Performance table

Each lesson runs top to bottom in a fresh kernel, as a learner's "Restart & Run All" would
(every lesson fixes PyTorch at one CPU thread, see transformer_lib.utils.NUM_THREADS); the wall
time, kernel start included, and the kernel's peak memory (VmHWM, Linux) are recorded. Also measured: ``import transformer_lib`` time beyond ``import torch``. The table is
printed and written to benchmarks/results/notebooks.md. Ratios above 1.00 miss the target.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "notebooks.md"
START, END = "<!-- performance-table:start -->", "<!-- performance-table:end -->"
MEMORY_TARGET_MB = 1536
IMPORT_TARGET_S = 1.0


def time_target(stem: str) -> float:
    """Seconds allowed for a lesson: 240 for lesson 08, 180 for the other training lessons, else 60."""
    number = int(stem[:2])
    if number == 8:
        return 240.0
    if number in (9, 10, 11):
        return 180.0
    return 60.0


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_lesson(path: Path, timeout: int = 900) -> tuple[float, float | None]:
    """Execute one notebook in a fresh kernel; return (seconds, peak MB of the kernel)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()  # kernel start included, as in "Restart & Run All"
    with client.setup_kernel(env={**os.environ, "MPLBACKEND": "Agg"}):
        pid = client.km.provisioner.process.pid
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - start
        peak = peak_rss_mb(pid)
    return seconds, peak


def import_overhead(repeats: int = 5) -> float:
    """Median seconds of ``import transformer_lib`` after ``import torch``, each in a new process."""
    code = ("import time; import torch; t = time.perf_counter(); import transformer_lib; "
            "print(time.perf_counter() - t)")
    runs = [float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(repeats)]
    return statistics.median(runs)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(rows: list[tuple[str, float, float | None]], import_s: float) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine()} with `python benchmarks/notebooks.py`.", "",
             "| lesson | run time | target | ratio | peak memory | target | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for stem, seconds, peak in rows:
        target = time_target(stem)
        mem = f"{peak:.0f} MB" if peak is not None else "n/a"
        mem_ratio = f"{peak / MEMORY_TARGET_MB:.2f}" if peak is not None else "n/a"
        lines.append(f"| {stem} | {seconds:.1f} s | {target:.0f} s | {seconds / target:.2f} | {mem} | "
                     f"{MEMORY_TARGET_MB / 1024:.1f} GB | {mem_ratio} |")
    total = sum(s for _, s, _ in rows)
    lines.append(f"| **all lessons** | {total:.0f} s | | | | | |")
    lines += ["", f"`import transformer_lib` after `import torch`: {import_s * 1000:.0f} ms "
                  f"(target ≤ {IMPORT_TARGET_S:.0f} s, ratio {import_s / IMPORT_TARGET_S:.2f})."]
    return "\n".join(lines) + "\n"


def update_readme(text: str) -> None:
    readme = ROOT / "README.md"
    content = readme.read_text()
    if START not in content or END not in content:
        raise SystemExit(f"README.md has no {START} ... {END} section to update")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{text}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = parser.parse_args(argv)
    paths = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        paths = [p for p in paths if any(p.stem == w or p.stem.startswith(w.zfill(2) + "_") for w in args.lessons)]
    rows = []
    for path in paths:
        print(f"running {path.stem} ...", end=" ", flush=True)
        seconds, peak = run_lesson(path)
        rows.append((path.stem, seconds, peak))
        print(f"{seconds:.1f} s, {peak:.0f} MB" if peak is not None else f"{seconds:.1f} s", flush=True)
    text = table(rows, import_overhead())
    print("\n" + text)
    if not args.lessons:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"written to {RESULTS.relative_to(ROOT)}")
        if args.readme:
            update_readme(text)
            print("README.md updated")
    missed = [stem for stem, s, p in rows if s > time_target(stem) or (p or 0) > MEMORY_TARGET_MB]
    print("all targets met" if not missed else f"targets missed: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
