"""Shared test setup: the package root is ``<repo>/operator`` (no install needed).

NOTE (Cloudflare-emulator helper): an earlier version of this file was overwritten by mistake;
the ``kube``/``cloudflare`` fixtures below are a reconstruction from the contract's public APIs
and from their use in tests/test_operator_run.py — review against the original intent.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))


@pytest.fixture()
def kube(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The Kubernetes emulator in its own thread; ``KUBECONFIG`` points at it during the test."""
    from chutes.sandbox.kubernetes import KubeSandbox

    namespaces = ["default", "kube-system", "kube-public", "kube-node-lease", "ns1"]
    with KubeSandbox(namespaces=namespaces) as sandbox:
        monkeypatch.setenv("KUBECONFIG", sandbox.kubeconfig)
        yield sandbox


@pytest.fixture()
def cloudflare() -> Iterator[Any]:
    """The Cloudflare emulator in its own thread (``cloudflare.base_url``, ``cloudflare.token``)."""
    from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread

    with SandboxThread(SandboxConfig.default()) as sandbox:
        yield sandbox
