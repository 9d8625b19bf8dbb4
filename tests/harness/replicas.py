"""`chutes run` as a replica: a process of its own, killed with SIGKILL and restarted as a kubelet would (same Pod
name, same environment), its stderr kept across restarts, and every exit we did not cause counted as a crash.
Used by the kill-at-every-write runs and the soak. Each start forks the process from a zygote that has done the
imports already (:mod:`harness.zygote`): a start costs milliseconds of CPU, not the seconds of a fresh interpreter."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from harness.zygote import Forked, zygote


class Replica:
    """One `chutes run` process (`flags`, `env`); `log`: a file its stderr is appended to (None: discarded)."""

    def __init__(self, name: str, env: dict[str, str], flags: tuple[str, ...] = (), log: Path | None = None) -> None:
        self.name, self.env, self.flags, self.log = name, env, flags, log
        self.process: Forked | None = None
        self.starts = 0
        self.kills = 0
        self.crashes: list[str] = []  # exits we did not cause: "exit code N"
        self._killed = False

    def start(self) -> None:
        self.process = zygote().spawn(["run", *self.flags], self.env, self.log)
        self._killed = False
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node loss would: no cleanup of any kind."""
        if self.process is not None and self.process.poll() is None:
            self._killed = True
            self.kills += 1
            self.process.send_signal(signal.SIGKILL)

    def dead(self) -> bool:
        """Not running; an exit we did not cause is recorded as a crash (once)."""
        if self.process is None:
            return True
        code = self.process.poll()
        if code is None:
            return False
        if not self._killed:
            self.crashes.append(f"exit code {code}")
            self._killed = True  # counted once
        return True

    def revive(self) -> bool:
        """Start it again if it is dead (the kubelet's restart); True if it was."""
        if self.dead():
            self.start()
            return True
        return False

    def stop(self) -> None:
        """SIGTERM and wait (a clean stop is no crash); SIGKILL after 20 s."""
        if self.process is not None and self.process.poll() is None:
            self._killed = True
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        """Everything it wrote to stderr so far, over every restart."""
        return self.log.read_text(errors="replace") if self.log is not None and self.log.exists() else ""

