"""JupyterLab started exactly as ``python3 course.py lab`` starts it, driven through its REST and
websocket API as a browser tab would drive it.

The browser test, the test that nothing is written outside the course, and
``benchmarks/memory_walk.py`` all use it, so what they check is what a learner gets::

    with LabServer(root) as lab:                          # course.lab_command + course.course_env
        kernel = lab.open_notebook("notebooks/00_start_here.ipynb")   # a session, as a tab opens one
        with lab.connect(kernel) as tab:
            outputs = tab.execute("print(1 + 1)")
        print(lab.memory())                               # RSS of the server and all its kernels
"""
from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import course  # noqa: E402  (the course's own entry point: its launch code is what we start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """One JupyterLab server on a free port with a fresh token, serving ``root``.

    Args:
        root: the course folder to serve (a copy in the tests).
        python: the interpreter of the course's environment.
        overrides: Jupyter Server settings on top of the course's, e.g. a shorter cull time-out.
        base_env: the environment before ``course.course_env`` adds the course's folders
            (default: this process's).
        log: where the server's own output goes (default: ``root/.course-home/jupyter-lab.log``).
    """

    def __init__(self, root: Path = ROOT, python=sys.executable, overrides: dict | None = None,
                 base_env: dict | None = None, log: Path | None = None):
        self.root, self.python, self.overrides, self.base_env = Path(root), python, overrides, base_env
        self.log_path = Path(log) if log else self.root / course.COURSE_HOME / "jupyter-lab.log"
        self.port, self.token, self.process = free_port(), secrets.token_hex(16), None
        self.env = course.course_env(self.root, base=base_env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return course.lab_command(self.python, self.root, port=self.port, token=self.token,
                                  open_browser=False, overrides=self.overrides)

    def __enter__(self) -> "LabServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 180) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command(), cwd=self.root, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.request("GET", "/api/status")
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterLab did not start; its log ({self.log_path}) ends:\n"
                           + self.log_path.read_text()[-3000:])

    def stop(self) -> None:
        if self.process is None:
            return
        kernels = self.descendants()
        self.process.terminate()                 # the server shuts its kernels down on SIGTERM
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for p in kernels:                        # any kernel the server could not stop in time
            try:
                p.kill()
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._log.close()
        self.process = None

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        """One REST call with the token; the decoded JSON answer (None for an empty one)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def redirect_of(self, path: str) -> str:
        """Where the server sends a browser that asks for ``path`` (the Location of its redirect)."""
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None
        opener = urllib.request.build_opener(NoRedirect)
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"token {self.token}"})
        try:
            opener.open(req, timeout=30)
        except urllib.error.HTTPError as e:
            if 300 <= e.code < 400:
                return e.headers["Location"]
            raise
        return path

    def open_notebook(self, path: str) -> str:
        """Open ``path`` (relative to the root) as a tab does: a session with a new kernel; its id."""
        session = self.request("POST", "/api/sessions", {"path": path, "name": Path(path).name,
                                                        "type": "notebook", "kernel": {"name": "python3"}})
        return session["kernel"]["id"]

    def kernels(self) -> list[dict]:
        return self.request("GET", "/api/kernels")

    def connect(self, kernel_id: str) -> "KernelTab":
        return KernelTab(self, kernel_id)

    def descendants(self) -> list:
        import psutil

        try:
            server = psutil.Process(self.process.pid)
            return [server] + server.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def memory(self) -> int:
        """Resident memory (RSS, bytes) of the server and every process it started (its kernels)."""
        import psutil

        total = 0
        for p in self.descendants():
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total


class KernelTab:
    """A websocket to one kernel, as an open notebook tab holds it; ``execute`` runs a cell."""

    def __init__(self, lab: LabServer, kernel_id: str):
        import websocket   # websocket-client, a dependency of jupyter_server

        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{lab.port}/api/kernels/{kernel_id}/channels?session_id={self.session}",
            header=[f"Authorization: token {lab.token}"], timeout=60)

    def __enter__(self) -> "KernelTab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - the server may have closed it (a culled kernel)
            pass

    def execute(self, code: str, timeout: float = 900) -> list[dict]:
        """Run ``code`` like Shift+Enter; return its outputs (stream, display, result and error
        messages' content, each with its ``output_type``) once the kernel is idle again."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "learner",
                       "session": self.session, "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
            "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": False}}))
        outputs, replied, idle = [], False, False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"the cell did not finish within {timeout} s: {code[:80]!r}")
            self.ws.settimeout(remaining)
            raw = self.ws.recv()
            if not isinstance(raw, str):     # a message with binary buffers (a widget's): not an output
                continue
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "execute_reply":
                replied = True
            elif kind == "status":
                idle = msg["content"]["execution_state"] == "idle"
            elif kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"output_type": kind, **msg["content"]})
        return outputs
