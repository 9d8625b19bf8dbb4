"""The router-hosts emulator as a program: one JSON line, a server that answers over mutual TLS, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from chutes.hosts_core import GrpcHostsBackend, HostSpec

OPERATOR_ROOT = Path(__file__).resolve().parents[1] / "operator"


def test_the_program_prints_its_address_and_files_then_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_ROOT)}
    command = [sys.executable, "-m", "chutes.sandbox.routerhosts", "--port", "0"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert set(ready) == {"address", "ca", "cert", "key"}
        host, port = ready["address"].rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        assert all(Path(ready[name]).is_file() for name in ("ca", "cert", "key"))

        async def add_and_list() -> list[str]:
            async with GrpcHostsBackend(ready["address"], ready["ca"], ready["cert"], ready["key"]) as client:
                await client.add(HostSpec("192.0.2.7", "nas.lan", "k8s:ns/nas"))
                return [entry.hostname for entry in await client.list_all()]

        assert asyncio.run(add_and_list()) == ["nas.lan"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not Path(ready["ca"]).exists(), "the temporary certificates are removed at exit"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
