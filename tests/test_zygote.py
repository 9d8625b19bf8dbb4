"""The test harness's zygote (tests/harness/zygote.py): an operator forked from it dies with it. An operator whose
test or benchmark was killed used to run on, orphaned, retrying its emulator's port, and reached the emulator of
whichever test was given that port next."""

from __future__ import annotations

import time
from pathlib import Path

from harness.processes import free_port
from harness.waiting import wait_for
from harness.zygote import Zygote


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie has ended


def test_an_operator_forked_by_the_zygote_dies_with_it(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(  # a cluster that never answers: `chutes run` keeps retrying it
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free_port()}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n")
    zygote = Zygote()
    child = None
    try:
        child = zygote.spawn(["run"], {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}, tmp_path / "log")
        time.sleep(1.0)  # what is awaited is that nothing happens: the operator still runs (retrying)
        assert child.poll() is None and _alive(child.pid), (tmp_path / "log").read_text()
        zygote._process.kill()
        wait_for("the operator gone with its zygote", lambda: not _alive(child.pid), timeout=10)
    finally:
        if child is not None and _alive(child.pid):
            child.kill()  # the defect's orphan: not left to reach the next test's emulators
        zygote.close()
