"""The emulators as pytest fixtures (a plugin: tests/conftest.py loads it). ``kube``, ``cloudflare`` and
``routerhosts`` run in threads of their own, for tests of the operator in-process (OperatorThread); ``sandbox``
runs in the test's event loop, for async tests of the Cloudflare core (``core``, ``cf``); ``hosts_client`` is the
real router-hosts client (gRPC, mutual TLS) on ``routerhosts``, with fast retries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from harness.rbac_record import OperatorProfile, file_operator_calls


@pytest.fixture()
def kube(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
         operator_profiles: list[OperatorProfile]) -> Iterator[Any]:
    """The Kubernetes emulator in its own thread. ``KUBECONFIG`` (read by the operator) points at it with
    the operator's own token; tests use ``kube.kubeconfig`` (another token) for their own calls. After the
    test, the operator's calls are filed for the chart's RBAC check."""
    from chutes.sandbox.kubernetes import KubeSandbox

    namespaces = ["default", "kube-system", "kube-public", "kube-node-lease", "ns1"]
    with KubeSandbox(namespaces=namespaces) as sandbox:
        monkeypatch.setenv("KUBECONFIG", sandbox.operator_kubeconfig)
        yield sandbox
        file_operator_calls(sandbox, request.node.nodeid)


@pytest.fixture()
def cloudflare() -> Iterator[Any]:
    """The Cloudflare emulator in its own thread (``cloudflare.base_url``, ``cloudflare.token``)."""
    from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread

    with SandboxThread(SandboxConfig.default()) as sandbox:
        yield sandbox


@pytest.fixture()
async def sandbox() -> AsyncIterator[Any]:
    """The Cloudflare emulator in the test's own event loop (for async tests of the core)."""
    from chutes.sandbox.cloudflare import CloudflareSandbox, SandboxConfig

    sb = CloudflareSandbox(SandboxConfig.default())
    await sb.start(host="127.0.0.1", port=0)
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture()
async def core(sandbox: Any) -> AsyncIterator[Any]:
    """A Cloudflare core on `sandbox`, owner id `test`, with fast retries."""
    from chutes.cloudflare_core import CloudflareCore, RequestBudget

    async with CloudflareCore(
        sandbox.token, sandbox.base_url, owner_id="test", budget=RequestBudget(), backoff=0.01
    ) as instance:
        yield instance


@pytest.fixture()
async def cf(sandbox: Any) -> AsyncIterator[Any]:
    """The real Cloudflare SDK (async, no retries) talking to `sandbox`."""
    import cloudflare as sdk

    async with sdk.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0) as client:
        yield client


@pytest.fixture()
def routerhosts() -> Iterator[Any]:
    """The router-hosts emulator in its own thread: ``routerhosts.address`` and the client's TLS files
    ``routerhosts.ca``, ``.cert``, ``.key``; ``.faults``, ``.requests``, ``.snapshot()`` for the test."""
    from chutes.sandbox.routerhosts import RouterHostsSandbox

    with RouterHostsSandbox() as server:
        yield server


@pytest.fixture()
async def hosts_client(routerhosts: Any) -> AsyncIterator[Any]:
    """A GrpcHostsBackend on `routerhosts`: 5 s deadlines, 3 attempts, 10 ms backoff."""
    from chutes.hosts_core import GrpcHostsBackend

    async with GrpcHostsBackend(
        routerhosts.address, routerhosts.ca, routerhosts.cert, routerhosts.key, timeout=5.0, backoff=0.01,
        unavailable_delay=0.1,
    ) as client:
        yield client
