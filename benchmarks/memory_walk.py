"""A learner's walk through the lessons in ONE JupyterLab server: the peak memory of the server
plus all its kernels, against the 1.5 GB target (a 2 GB Binder).

    python benchmarks/memory_walk.py                          # lessons 00-08, as below
    python benchmarks/memory_walk.py --upto 13                # further lessons too
    python benchmarks/memory_walk.py --minutes-per-lesson 5   # a faster learner
    python benchmarks/memory_walk.py --no-cull                # what happens without culling

The server is started by ``course.lab_command`` (through ``tools/lab_server.py``), exactly as
``python3 course.py lab`` starts it, on a temporary copy of the course. The walk opens the
*exercise* notebooks, since those are what a learner runs (built afresh from ``solutions/``, so a
learner's own edits do not count; unsolved, each check hands the library's reference on, so every
cell does the lesson's full work, training included). For each lesson in turn it opens a session
(a new kernel, as a notebook tab does), runs every code cell, then leaves the kernel idle with its
tab still open and moves on: nothing is shut down by hand.

Time is compressed: ``--scale`` seconds of the walk stand for one minute of the learner (default
1 s per minute, 60x faster). Jupyter's kernel culling is scaled the same way: the course culls a
kernel idle for 10 minutes (checked every minute), so the walk culls one idle for 10 s (checked
every second). The learner spends ``--minutes-per-lesson`` with each lesson (default 20 minutes:
reading, exercises), so the walk stays with a lesson 20 s, or as long as its cells take if that is
longer, before opening the next. Memory is the resident set size (RSS) of the server and all its
child processes, sampled four times a second; RSS counts the pages that the kernels share (the
torch library) once per kernel, so the figure errs on the high side. A spike shorter than a
sample can slip through, so on Linux the walk also reads each lesson kernel's own peak (VmHWM)
and estimates the peak with such spikes: the largest, over the lessons, of the total when the
lesson opened plus its kernel's own peak. The larger of the two figures is compared with the
target. Benchmarks print, they never fail: the ratio is printed, and the table is written to
benchmarks/results/memory_walk.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import build_notebooks as bn  # noqa: E402
import course  # noqa: E402
from lab_server import LabServer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "memory_walk.md"
TARGET_MB = 1536              # 1.5 GB: the whole server must fit a 2 GB Binder
MB = 1024 * 1024


def own_peak(pid: int) -> int | None:
    """The highest resident memory a process has had (VmHWM, bytes; Linux), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Sampler(threading.Thread):
    """Samples the server's total memory in the background; keeps the peak overall and per phase."""

    def __init__(self, lab: LabServer, every: float = 0.25):
        super().__init__(daemon=True)
        self.lab, self.every, self.running = lab, every, True
        self.peak = self.phase_peak = 0

    def run(self) -> None:
        while self.running:
            total = self.lab.memory()
            self.peak, self.phase_peak = max(self.peak, total), max(self.phase_peak, total)
            time.sleep(self.every)

    def next_phase(self) -> int:
        """The peak since the last call; starts a new phase."""
        peak, self.phase_peak = self.phase_peak, self.lab.memory()
        self.peak = max(self.peak, self.phase_peak)
        return max(peak, self.phase_peak)


def lessons_up_to(last: str) -> list[Path]:
    return [p for p in bn.lesson_paths(ROOT / "solutions") if int(p.name[:2]) <= int(last)]


def course_copy(folder: Path, lessons: list[Path]) -> None:
    """The course's exercise notebooks (built from solutions/) and solutions, in ``folder``."""
    shutil.copytree(ROOT / "solutions", folder / "solutions")
    (folder / "notebooks").mkdir()
    for path in lessons:
        nb = bn.exercise_notebook(json.loads(path.read_text(encoding="utf-8")), path.name)
        (folder / "notebooks" / path.name).write_bytes(bn.render(nb))


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def walk(lessons: list[Path], minutes_per_lesson: float, scale: float, cull: bool, cell_timeout: float) -> dict:
    settings = course.server_settings()["MappingKernelManager"]
    overrides = {"MappingKernelManager": {
        "cull_idle_timeout": max(1, round(settings["cull_idle_timeout"] / 60 * scale)) if cull else 0,
        "cull_interval": max(1, round(settings["cull_interval"] / 60 * scale))}}
    rows, tabs = [], []
    with tempfile.TemporaryDirectory(prefix="course-memory-walk-") as tmp:
        work = Path(tmp)
        course_copy(work, lessons)
        with LabServer(work, overrides=overrides) as lab:
            time.sleep(2)
            idle_server = lab.memory()
            sampler = Sampler(lab)
            sampler.start()
            sampler.next_phase()
            for path in lessons:
                opened, at_open = time.monotonic(), lab.memory()
                before = {p.pid for p in lab.descendants()}
                kernel = lab.open_notebook(f"notebooks/{path.name}")
                new = [p.pid for p in lab.descendants() if p.pid not in before]
                tab = lab.connect(kernel)
                tabs.append(tab)                    # the learner's tab stays open
                errors, note = 0, ""
                for source in code_cells(work / "notebooks" / path.name):
                    try:
                        outputs = tab.execute(source, timeout=cell_timeout)
                    except TimeoutError:
                        note = f"a cell ran over {cell_timeout:.0f} s: the rest of the lesson was skipped"
                        break
                    errors += sum(o["output_type"] == "error" for o in outputs)
                ran = time.monotonic() - opened
                peaks = [own_peak(pid) for pid in new]         # read now: once idle, it may be culled
                kernel_peak = sum(peaks) if peaks and None not in peaks else None
                while time.monotonic() - opened < minutes_per_lesson * scale:
                    time.sleep(0.25)                # the learner is still reading: the kernel idles
                rows.append({"lesson": path.stem, "run_s": ran, "stay_s": time.monotonic() - opened,
                             "errors": errors, "note": note, "kernels": len(lab.kernels()),
                             "peak": sampler.next_phase(), "kernel_peak": kernel_peak,
                             "bound": at_open + kernel_peak if kernel_peak is not None else None})
                print(f"  {path.stem:<26} cells ran in {ran:6.1f} s, {rows[-1]['kernels']} kernel(s) alive "
                      f"when leaving it, peak while open {rows[-1]['peak'] / MB:6.0f} MB"
                      + (f", {errors} error output(s)" if errors else "") + (f" ({note})" if note else ""),
                      flush=True)
            sampler.running = False
            sampler.join()
            for tab in tabs:
                tab.close()
    return {"rows": rows, "peak": sampler.peak, "idle_server": idle_server, "overrides": overrides}


def load_average() -> str:
    """', load average 7.2 on 2 CPUs': other work on the machine slows the walk (Unix only)."""
    try:
        return f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end"
    except (AttributeError, OSError):
        return ""


def table(result: dict, args) -> str:
    seconds = result["overrides"]["MappingKernelManager"]["cull_idle_timeout"]
    culling = f"idle kernels culled after {seconds} s (the course's 10 minutes, scaled)" if seconds else "culling off"
    command = (f"python benchmarks/memory_walk.py --upto {args.upto} --minutes-per-lesson {args.minutes_per_lesson:g} "
               f"--scale {args.scale:g}" + (" --no-cull" if args.no_cull else ""))
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.processor() or platform.machine()}, Python "
             f"{platform.python_version()}, with `{command}`: one JupyterLab server, the exercise notebooks "
             f"opened one after another, {culling}{load_average()}.",
             "", "| lesson | cells ran in | stayed | kernels alive when leaving | its kernel's own peak | "
             "peak total while open |", "|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        own = f"{r['kernel_peak'] / MB:.0f} MB" if r["kernel_peak"] is not None else "n/a"
        lines.append(f"| {r['lesson']} | {r['run_s']:.1f} s | {r['stay_s']:.1f} s | {r['kernels']} | {own} | "
                     f"{r['peak'] / MB:.0f} MB |")
    sampled = result["peak"] / MB
    bounds = [r["bound"] / MB for r in result["rows"] if r["bound"] is not None]
    peak_mb = max([sampled] + bounds)
    spikes = (f"; with spikes between samples (the total when a lesson opened + its kernel's own peak, the "
              f"largest over the lessons) {max(bounds):.0f} MB" if bounds else "")
    lines += ["", f"Server alone: {result['idle_server'] / MB:.0f} MB. Total of server and kernels, sampled every "
              f"0.25 s: {sampled:.0f} MB at its peak{spikes}.",
              f"**Peak total memory {peak_mb:.0f} MB, target {TARGET_MB / 1024:.1f} GB, ratio {peak_mb / TARGET_MB:.2f}.**"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upto", default="08", help="the last lesson of the walk (default 08)")
    parser.add_argument("--minutes-per-lesson", type=float, default=20.0,
                        help="a learner's time with one lesson, in minutes (default 20)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="seconds of the walk per minute of the learner (default 1)")
    parser.add_argument("--no-cull", action="store_true", help="switch kernel culling off")
    parser.add_argument("--cell-timeout", type=float, default=1800.0, help="give up a cell after this (s)")
    args = parser.parse_args(argv)
    lessons = lessons_up_to(args.upto)
    cull = course.server_settings()["MappingKernelManager"]["cull_idle_timeout"] / 60
    print(f"Walking lessons {lessons[0].stem[:2]}-{lessons[-1].stem[:2]} in one JupyterLab server; 1 minute of a "
          f"learner = {args.scale:g} s here: {args.minutes_per_lesson:g} min per lesson, "
          + ("no culling" if args.no_cull else f"kernels idle for {cull:g} min culled") + "...", flush=True)
    result = walk(lessons, args.minutes_per_lesson, args.scale, not args.no_cull, args.cell_timeout)
    text = table(result, args)
    print("\n" + text)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text + "\n")
    print(f"\n(written to {RESULTS.relative_to(ROOT)}; ratio above 1.00 misses the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
