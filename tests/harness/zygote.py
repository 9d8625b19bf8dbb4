"""``chutes run`` processes forked from a zygote: a process that has imported what ``chutes run`` imports (≈2 s of
CPU for a fresh interpreter) forks one child per start, which then runs ``chutes.cli.main`` with exactly the
environment and arguments a fresh ``chutes run`` would get. A child is a process of its own (its own pid, signals,
exit status, stderr); only the imports are shared. Used by :class:`harness.replicas.Replica`, whose replicas are
started again and again (kills at every write, the soak). The zygote's side: :mod:`harness.zygote_main`."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from harness.processes import REPO

MAIN = Path(__file__).with_name("zygote_main.py")


class Forked:
    """A child of the zygote, with the parts of :class:`subprocess.Popen` a replica uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._exited = threading.Event()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"chutes (pid {self.pid})", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # exited, its status not read yet
                os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()


class Zygote:
    """The zygote process and a thread reading its answers."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CHUTES_", "CF_"))}
        env["PYTHONPATH"] = str(REPO / "operator")
        self._process = subprocess.Popen([sys.executable, str(MAIN)], env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self._process.stdin is not None and self._process.stdout is not None
        self._requests: IO[bytes] = self._process.stdin
        self._answers: IO[bytes] = self._process.stdout
        self._lock = threading.Lock()  # one request at a time: pids come back in request order
        self._pids: list[int] = []
        self._pid_ready = threading.Condition()
        self._children: dict[int, Forked] = {}
        self._early: dict[int, int] = {}  # exits read before the child's Forked was made
        threading.Thread(target=self._read, name="zygote-answers", daemon=True).start()

    def spawn(self, argv: list[str], env: dict[str, str], stderr: Path | None, timeout: float = 60.0) -> Forked:
        """A child running ``chutes <argv>`` with environment `env`, its stderr appended to `stderr`."""
        request = {"argv": argv, "env": env, "stderr": str(stderr) if stderr else None}
        with self._lock:
            self._requests.write(json.dumps(request).encode() + b"\n")
            self._requests.flush()
            deadline = time.monotonic() + timeout
            with self._pid_ready:
                while not self._pids:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the chutes zygote did not fork a child")
                    self._pid_ready.wait(0.1)
                pid = self._pids.pop(0)
                child = Forked(pid)
                self._children[pid] = child
                if pid in self._early:
                    child._exit(self._early.pop(pid))
        return child

    def _read(self) -> None:
        for line in self._answers:
            answer: dict[str, Any] = json.loads(line)
            with self._pid_ready:
                if "pid" in answer:
                    self._pids.append(int(answer["pid"]))
                    self._pid_ready.notify_all()
                else:
                    pid, code = int(answer["exited"]), int(answer["code"])
                    child = self._children.pop(pid, None)
                    if child is None:
                        self._early[pid] = code
                    else:
                        child._exit(code)

    def close(self) -> None:
        if self._process.poll() is None:
            self._requests.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()


_zygote: Zygote | None = None
_made = threading.Lock()


def zygote() -> Zygote:
    """This process's zygote, started on first use and closed at exit (or by :func:`close`)."""
    global _zygote
    with _made:
        if _zygote is None or _zygote._process.poll() is not None:
            _zygote = Zygote()
            atexit.register(_zygote.close)
        return _zygote


def close() -> None:
    """End this process's zygote, if it has one (and so count its CPU time in this process's children's)."""
    with _made:
        if _zygote is not None:
            _zygote.close()
