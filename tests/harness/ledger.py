"""The Kubernetes emulator for the ledger's tests (claims, tunnel Leases): one per test module, with the
ledger namespace, and kubernetes_asyncio clients on it under the test's own token (these calls are not
the operator's, so the chart's RBAC check does not count them)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from chutes.sandbox.kubernetes import KubeSandbox

LEDGER = "chutes-system"


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeSandbox]:
    with KubeSandbox(namespaces=["default", LEDGER]) as sandbox:
        yield sandbox


async def connect(sandbox: KubeSandbox) -> client.ApiClient:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=sandbox.kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration=configuration)


@pytest.fixture()
async def api(cluster: KubeSandbox) -> AsyncIterator[client.ApiClient]:
    instance = await connect(cluster)
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture()
async def other_api(cluster: KubeSandbox) -> AsyncIterator[client.ApiClient]:
    """A second client (its own connection pool), for truly concurrent requests."""
    instance = await connect(cluster)
    try:
        yield instance
    finally:
        await instance.close()


@dataclass(frozen=True)
class FakeClaim:
    """A claim as the sweep's verdict reads it (:class:`chutes.sweep.verdict.ClaimView`), for pure tests."""

    kind: str
    key: str
    source: str
    entries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"claim-{self.kind}-{self.key}"
