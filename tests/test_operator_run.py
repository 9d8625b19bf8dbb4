"""`chutes run` starts against both emulators, serves its probes, and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings
from harness.processes import REPO, chutes_command, free_port, run_env, wait_http_ok


@pytest.mark.parametrize("scope", [["-A"], ["--namespace", "ns1"]], ids=["all-namespaces", "one-namespace"])
def test_chutes_run_starts_serves_liveness_and_stops_on_sigterm(kube: Any, cloudflare: Any, scope: list[str]) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*chutes_command(), "run", *scope, "--standalone", f"--liveness=http://127.0.0.1:{port}/healthz"],
        env=run_env(kube, cloudflare), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        health = wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        assert "front_doors" in health
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "Serving front doors" in output
    assert "Traceback" not in output


def test_chutes_run_refuses_a_malformed_setting_naming_it(kube: Any, cloudflare: Any) -> None:
    env = {**run_env(kube, cloudflare), "CHUTES_RESYNC_INTERVAL": "soon"}
    result = subprocess.run([*chutes_command(), "run"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "CHUTES_RESYNC_INTERVAL" in result.stderr


def test_operator_thread_starts_and_stops_in_process(kube: Any, cloudflare: Any) -> None:
    settings = load_settings({}, standalone=True, cloudflare_base_url=cloudflare.base_url)
    with OperatorThread(settings, {}) as operator:
        assert operator.alive
    assert not operator.alive
    assert operator.error is None


def test_chutes_run_without_a_cluster_configuration_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CHUTES_", "CF_", "KUBERNETES_"))}
    env.update(KUBECONFIG=str(tmp_path / "missing"), HOME=str(tmp_path), PYTHONPATH=str(REPO / "operator"))
    result = subprocess.run([*chutes_command(), "run", "--standalone"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "could not start: no usable cluster configuration" in result.stderr
