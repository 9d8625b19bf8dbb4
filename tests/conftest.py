"""Shared test setup: the package root is ``<repo>/operator`` (no install needed), both emulators as
fixtures, and no ambient Cloudflare credentials."""

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


@pytest.fixture(autouse=True)
def _no_ambient_cloudflare_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK prefers CLOUDFLARE_EMAIL/API_KEY over a token when they are set: never let them leak in."""
    for name in ("CLOUDFLARE_EMAIL", "CLOUDFLARE_API_KEY", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
