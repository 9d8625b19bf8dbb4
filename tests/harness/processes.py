"""The operator as a process of its own (``chutes run``), and what talking to any local server needs: a free
port, and waiting until an HTTP endpoint answers."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

from harness.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http_ok(url: str, timeout: float = 20.0) -> str:
    """The body of `url` once it answers 2xx (a refused connection or an HTTP error counts as "not yet")."""

    def answer() -> tuple[str] | None:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return (str(response.read().decode()),)
        except OSError:
            return None

    return wait_for(f"{url} to answer", answer, timeout, interval=0.1)[0]


def chutes_command() -> list[str]:
    """How to run ``chutes`` (the installed script, else the package)."""
    script = Path(sys.executable).with_name("chutes")
    return [str(script)] if script.exists() else [sys.executable, "-m", "chutes"]


def run_env(kube: Any, cloudflare: Any) -> dict[str, str]:
    """``chutes run``'s environment on the emulators (`kube`: a KubeSandbox), without ambient credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CHUTES_", "CF_"))}
    env.update(
        KUBECONFIG=kube.kubeconfig,
        CLOUDFLARE_BASE_URL=cloudflare.base_url,
        PYTHONPATH=str(REPO / "operator"),
    )
    return env
