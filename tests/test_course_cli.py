"""`course.py`: JupyterLab serves the whole course and opens lesson 00, idle kernels are culled,
nothing is written outside the course folder, and set-up without a network says what to do."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import build_notebooks as bn
import course
from conftest import ROOT
from lab_server import LabServer


HIDING = ("JUPYTER", "IPYTHON", "MPLCONFIG", "XDG_")      # settings that would send a write elsewhere than HOME


def fresh_home(tmp_path: Path) -> dict:
    """This process's environment with an empty HOME and no folder settings that would hide a write."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(HIDING)}
    return {**env, "HOME": str(home), "USERPROFILE": str(home)}


def written(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


def course_copy(tmp_path: Path) -> Path:
    work = tmp_path / "course"
    for folder in ("notebooks", "solutions"):
        shutil.copytree(ROOT / folder, work / folder)
    return work


def test_lab_serves_the_course_root_and_opens_lesson_00():
    cmd = course.lab_command("python", ROOT, port=8899, token="t", open_browser=False)
    assert cmd[:4] == ["python", "-m", "jupyter", "lab"]
    assert f"--ServerApp.root_dir={ROOT.resolve()}" in cmd                  # not notebooks/: ../solutions opens
    assert "--LabApp.default_url=/lab/tree/notebooks/00_start_here.ipynb" in cmd
    assert not any(a.endswith(".ipynb") and not a.startswith("--") for a in cmd)   # no file argument
    assert {"--ServerApp.port=8899", "--IdentityProvider.token=t", "--no-browser"} <= set(cmd)
    assert "--LanguageServerManager.autodetect=False" in cmd                 # jupyter-lsp would run npm


def test_idle_kernels_are_culled_by_lab_and_on_binder_with_one_set_of_settings():
    settings = course.server_settings()
    cull = settings["MappingKernelManager"]
    assert cull["cull_idle_timeout"] == 600 and cull["cull_interval"] == 60
    assert cull["cull_connected"] is True and cull["cull_busy"] is False     # an open tab does not keep it; training is never cut
    cmd = course.lab_command("python")
    for name, value in cull.items():
        assert f"--MappingKernelManager.{name}={value}" in cmd
    faster = course.lab_command("python", overrides={"MappingKernelManager": {"cull_idle_timeout": 10}})
    assert "--MappingKernelManager.cull_idle_timeout=10" in faster and "--MappingKernelManager.cull_interval=60" in faster


@pytest.mark.skipif(os.name == "nt" or shutil.which("bash") is None, reason="Binder's postBuild is a bash script")
def test_binder_installs_the_same_server_settings(tmp_path):
    """binder/postBuild copies the very file `course.py lab` reads into Jupyter's config folder."""
    fake_pip = tmp_path / "bin" / "pip"
    fake_pip.parent.mkdir()
    fake_pip.write_text("#!/bin/sh\nexit 0\n")
    fake_pip.chmod(0o755)
    config_dir = tmp_path / "jupyter-config"
    path = os.pathsep.join([str(fake_pip.parent), str(Path(sys.executable).parent), os.environ["PATH"]])
    subprocess.run(["bash", "binder/postBuild"], cwd=ROOT, check=True,
                   env={**os.environ, "PATH": path, "JUPYTER_CONFIG_DIR": str(config_dir)})
    assert json.loads((config_dir / "jupyter_server_config.json").read_text()) == course.server_settings()


def test_every_command_runs_with_the_course_folders(monkeypatch):
    monkeypatch.delenv("TRANSFORMER_COURSE_THREADS", raising=False)     # else `test` adds "-n 1"
    calls = []
    monkeypatch.setattr(course, "setup", lambda: Path("/venv/bin/python"))
    monkeypatch.setattr(course.subprocess, "call", lambda cmd, env=None, **kw: calls.append((cmd, env)) or 0)
    monkeypatch.chdir(ROOT)
    for command in ("lab", "test", "notebooks", "execute", "progress", "bench"):
        assert course.main([command, "--x"]) == 0
    assert calls[0][0] == course.lab_command(Path("/venv/bin/python"), extra=["--x"])
    home = str(ROOT / course.COURSE_HOME)
    for cmd, env in calls:
        assert cmd[-1] == "--x"
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"):
            assert env[name].startswith(home), (cmd, name)


def test_lab_writes_nothing_outside_the_course_and_solutions_open_from_an_exercise(tmp_path):
    """JupyterLab as `course.py lab` starts it, with an empty HOME: lesson 00 is where `/` leads, a
    solution is inside the served folder, a kernel runs matplotlib and the library, and HOME stays
    empty (before: ~/.local/share/jupyter/runtime, ~/.npm/_logs, ~/.ipython, ~/.cache/matplotlib)."""
    env = fresh_home(tmp_path)
    work = course_copy(tmp_path)
    quick_cull = {"MappingKernelManager": {"cull_idle_timeout": 3, "cull_interval": 1}}
    with LabServer(work, base_env=env, overrides=quick_cull) as lab:
        assert lab.redirect_of("/").startswith("/lab/tree/notebooks/00_start_here.ipynb")
        solution = lab.request("GET", "/api/contents/solutions/03_attention.ipynb?content=0")
        assert solution["type"] == "notebook" and solution["path"] == "solutions/03_attention.ipynb"
        kernel = lab.open_notebook("notebooks/00_start_here.ipynb")
        with lab.connect(kernel) as tab:
            outputs = tab.execute("import io, os\nimport matplotlib.pyplot as plt\nimport transformer_lib\n"
                                  "fig = plt.figure()\nfig.text(0.5, 0.5, 'x')\nfig.savefig(io.BytesIO())\n"
                                  "print(os.getcwd())")
            assert not [o for o in outputs if o["output_type"] == "error"], outputs
            assert any(o.get("text", "").strip() == str(work / "notebooks") for o in outputs), outputs
            # the tab stays open, the kernel idle: it is culled all the same (cull_connected)
            deadline = time.monotonic() + 60
            while lab.kernels() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert lab.kernels() == []
    assert written(Path(env["HOME"])) == []
    home = work / course.COURSE_HOME
    assert (home / "ipython").is_dir() and (home / "matplotlib").is_dir() and (home / "jupyter-data" / "runtime").is_dir()


# `test` runs lesson 00 with nbval, executing every cell (--nbval-lax: its outputs are compared by
# the suite itself, not here: this test is about where the kernel writes)
@pytest.mark.parametrize("argv", [["progress", "00"], ["test", "-n", "0", "-q", "--nbval-lax", "solutions/00_start_here.ipynb"]],
                         ids=["progress", "test"])
def test_progress_and_test_write_nothing_outside_the_course(tmp_path, monkeypatch, argv):
    env = fresh_home(tmp_path)
    for name in [k for k in os.environ if k.startswith(HIDING)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", env["HOME"])
    monkeypatch.setenv("USERPROFILE", env["HOME"])
    monkeypatch.setattr(course, "setup", lambda: Path(sys.executable))
    monkeypatch.chdir(ROOT)
    assert course.main(argv) == 0
    assert written(Path(env["HOME"])) == []


@pytest.fixture
def failing_pip(monkeypatch, tmp_path):
    """set-up with a virtual environment in place but every pip install failing."""
    def pip_fails(cmd, **kwargs):
        raise SystemExit(1)
    monkeypatch.setattr(course, "venv_python", lambda: Path(sys.executable))
    monkeypatch.setattr(course, "STAMP", tmp_path / "stamp")
    monkeypatch.setattr(course, "run", pip_fails)
    for name in ("HTTPS_PROXY", "https_proxy", "PIP_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_setup_without_a_network_says_what_is_wrong_and_what_to_try(failing_pip, tmp_path):
    asked = []
    failing_pip.setattr(course, "reachable", lambda host, port=443, timeout=3.0: asked.append((host, port)) and False)
    with pytest.raises(SystemExit) as stop:
        course.setup()
    message = str(stop.value.code)
    assert message.startswith("[course] pip cannot reach pypi.org, where the course's packages come from")
    assert "HTTPS_PROXY" in message and "python3 course.py setup" in message and "\n" not in message
    assert ("pypi.org", 443) in asked
    assert not (tmp_path / "stamp").exists()                 # the next run tries again


def test_setup_failing_behind_a_proxy_or_a_mirror_names_it(failing_pip):
    failing_pip.setattr(course, "reachable", lambda host, port=443, timeout=3.0: False)
    failing_pip.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    with pytest.raises(SystemExit, match=r"through the proxy http://proxy.example:3128: check that address"):
        course.setup()
    failing_pip.delenv("HTTPS_PROXY")
    failing_pip.setenv("PIP_INDEX_URL", "http://mirror.example:8080/simple")
    with pytest.raises(SystemExit, match=r"cannot reach mirror.example"):
        course.setup()
    failing_pip.setattr(course, "reachable", lambda host, port=443, timeout=3.0: True)
    with pytest.raises(SystemExit, match=r"could not install the course's packages \(its message is above\)"):
        course.setup()


BINDER_LINK = re.compile(r"https?://mybinder\.org/v2/[^\s)\"'>\]]*")


def binder_links_off_the_setting(text: str) -> list[str]:
    """Binder launch links in ``text`` that are not ``course.binder_url(<an existing notebook>)``."""
    wrong = []
    for link in BINDER_LINK.findall(text):
        notebook = link.partition("urlpath=lab/tree/")[2]
        if not notebook or not (ROOT / notebook).exists() or link != course.binder_url(notebook):
            wrong.append(link)
    return wrong


def test_the_binder_badge_target_is_one_setting_and_every_link_agrees():
    readme = (ROOT / "README.md").read_text()
    assert f"[![Launch on Binder](https://mybinder.org/badge_logo.svg)]({course.binder_url()})" in readme
    assert course.binder_url() == f"https://mybinder.org/v2/gh/{course.BINDER_REPO}/HEAD?urlpath=lab/tree/notebooks/00_start_here.ipynb"
    lessons = bn.lesson_paths(ROOT / "solutions") + bn.lesson_paths(ROOT / "notebooks")
    for path in [ROOT / "README.md", ROOT / "CONTRIBUTING.md"] + lessons:
        text = path.read_text()
        if path.suffix == ".ipynb":   # the lesson's markdown: its header and any other cell
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
        assert not binder_links_off_the_setting(text), f"{path.name}: Binder links must be course.binder_url(...)"
    # the check itself: another repository, or a lesson that does not exist, is caught
    other = course.binder_url(repo="someone/fork")
    assert binder_links_off_the_setting(f"[launch]({other})") == [other]
    missing = course.binder_url("notebooks/99_none.ipynb")
    assert binder_links_off_the_setting(f"<a href='{missing}'>") == [missing]


@pytest.mark.parametrize("threads, cpus, rest, expected", [
    ("1", 2, [], []),                                        # pyproject's two workers, one thread each
    ("2", 2, ["-q"], ["-q", "-n", "1"]),                     # two threads per kernel: one worker
    ("2", 4, [], []),
    ("4", 2, [], ["-n", "1"]),
    ("1", 1, [], ["-n", "1"]),
    ("abc", 2, [], []),                                      # a typo counts as one thread
    ("2", 2, ["-n", "0"], ["-n", "0"]),                      # the caller's choice wins
    ("2", 2, ["-n0"], ["-n0"]),
    ("2", 2, ["--numprocesses=2"], ["--numprocesses=2"]),
])
def test_course_test_runs_no_more_threads_than_cores(threads, cpus, rest, expected):
    environ = {"TRANSFORMER_COURSE_THREADS": threads}
    assert course.pytest_arguments(rest, environ, cpus=cpus) == expected
