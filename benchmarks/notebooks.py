"""Time and memory of every lesson, against the course's targets.

    python benchmarks/notebooks.py                 # all lessons in solutions/
    python benchmarks/notebooks.py 08 12           # some lessons
    python benchmarks/notebooks.py --readme        # also update README.md's Performance table

Each lesson runs top to bottom in a fresh kernel, as a learner's "Restart & Run All" would; the
wall time, kernel start included, and the kernel's peak memory (VmHWM, Linux) are recorded. Every
lesson fixes PyTorch's CPU threads (transformer_lib.runtime.NUM_THREADS: one by default, so stored
outputs reproduce everywhere; TRANSFORMER_COURSE_THREADS overrides it): each lesson runs once per
thread count in ``--threads`` (default: 1, as shipped, and 2, a laptop's two cores). Also measured:
``import transformer_lib`` time beyond ``import torch``. The table is printed and written to
benchmarks/results/notebooks.md. Ratios above 1.00 miss the target.
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
    """Seconds allowed for a lesson (COURSE.md): 420 for the translation lesson (09), 240 for
    lesson 08 and the scaling lesson (14), 180 for the other training lessons, else 60."""
    number = int(stem[:2])
    if number == 9:
        return 420.0
    if number in (8, 14):
        return 240.0
    if number in (10, 11, 12):
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


def run_lesson(path: Path, threads: int, timeout: int = 900) -> tuple[float, float | None]:
    """Execute one notebook in a fresh kernel on ``threads`` CPU threads; return (seconds, peak MB)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()  # kernel start included, as in "Restart & Run All"
    with client.setup_kernel(env={**os.environ, "MPLBACKEND": "Agg", "TRANSFORMER_COURSE_THREADS": str(threads)}):
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


def table(rows: list[tuple[str, list[float], float | None]], threads: list[int], import_s: float) -> str:
    """Markdown table: one time column per thread count, the worst ratio, the peak memory."""
    label = lambda n: f"{n} thread" + ("s" if n > 1 else "")
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine()} with "
             f"`python benchmarks/notebooks.py --threads {' '.join(map(str, threads))}`.", "",
             "| lesson | " + " | ".join(f"run time, {label(n)}" for n in threads)
             + " | target | ratio (worst) | peak memory | target | ratio |",
             "|---|" + "---:|" * (len(threads) + 5)]
    for stem, times, peak in rows:
        target = time_target(stem)
        mem = f"{peak:.0f} MB" if peak is not None else "n/a"
        mem_ratio = f"{peak / MEMORY_TARGET_MB:.2f}" if peak is not None else "n/a"
        lines.append(f"| {stem} | " + " | ".join(f"{t:.1f} s" for t in times)
                     + f" | {target:.0f} s | {max(times) / target:.2f} | {mem} | "
                     f"{MEMORY_TARGET_MB / 1024:.1f} GB | {mem_ratio} |")
    totals = [sum(r[1][i] for r in rows) for i in range(len(threads))]
    lines.append("| **all lessons** | " + " | ".join(f"{t:.0f} s" for t in totals) + " | | | | | |")
    lines += ["", f"`import transformer_lib` after `import torch`: {import_s * 1000:.0f} ms "
                  f"(target ≤ {IMPORT_TARGET_S:.0f} s, ratio {import_s / IMPORT_TARGET_S:.2f}). "
                  "Peak memory is the largest over the runs."]
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
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="CPU thread counts to run each lesson with (default: 1 2)")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.threads):
        parser.error(f"--threads expects positive integers, got {args.threads}")
    paths = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        paths = [p for p in paths if any(p.stem == w or p.stem.startswith(w.zfill(2) + "_") for w in args.lessons)]
    rows = []
    for path in paths:
        times, peaks = [], []
        for threads in args.threads:
            print(f"running {path.stem} on {threads} thread(s) ...", end=" ", flush=True)
            seconds, peak = run_lesson(path, threads)
            times.append(seconds)
            peaks.append(peak)
            print(f"{seconds:.1f} s, {peak:.0f} MB" if peak is not None else f"{seconds:.1f} s", flush=True)
        known = [p for p in peaks if p is not None]
        rows.append((path.stem, times, max(known) if known else None))
    text = table(rows, args.threads, import_overhead())
    print("\n" + text)
    if not args.lessons:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"written to {RESULTS.relative_to(ROOT)}")
        if args.readme:
            update_readme(text)
            print("README.md updated")
    missed = [stem for stem, t, p in rows if max(t) > time_target(stem) or (p or 0) > MEMORY_TARGET_MB]
    print("all targets met" if not missed else f"targets missed: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
