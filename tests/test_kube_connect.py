"""Our Kubernetes client reads the environment's proxy settings once, not before every request.

kubernetes_asyncio's HTTP session trusts the environment: aiohttp then looks the proxy variables up and reads
``~/.netrc`` before each request, in an executor thread (7% of the CPU of a busy test, measured with py-spy).
:func:`chutes.kube.connect` looks the proxy up once and gives it to the client instead: the proxy the environment
names is still the one used, and ``NO_PROXY`` still excludes the API server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import aiohttp.client
import aiohttp.helpers
import pytest
from kubernetes_asyncio import client

from chutes import kube
from chutes.sandbox.kubernetes import KubeSandbox

ENV_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                       "ALL_PROXY", "all_proxy")


@pytest.fixture()
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeSandbox]:
    for name in ENV_PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with KubeSandbox(namespaces=["default"]) as sandbox:
        monkeypatch.setenv("KUBECONFIG", sandbox.operator_kubeconfig)
        yield sandbox


@pytest.fixture()
def env_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every lookup aiohttp makes of the environment's proxies and of netrc, by name."""
    seen: list[str] = []

    def counted(name: str, real: Any) -> Any:
        def lookup(*args: Any, **kwargs: Any) -> Any:
            seen.append(name)
            return real(*args, **kwargs)
        return lookup

    monkeypatch.setattr(aiohttp.client, "get_env_proxy_for_url",
                        counted("proxy", aiohttp.client.get_env_proxy_for_url))
    monkeypatch.setattr(aiohttp.client, "netrc_from_env", counted("netrc", aiohttp.client.netrc_from_env))
    monkeypatch.setattr(aiohttp.helpers, "netrc_from_env", counted("netrc", aiohttp.helpers.netrc_from_env))
    return seen


async def test_requests_do_not_look_the_environment_up_again(cluster: KubeSandbox, env_lookups: list[str]) -> None:
    api = await kube.connect()
    try:
        core = client.CoreV1Api(api)
        for _ in range(3):
            namespaces = await core.list_namespace()
            assert "default" in [n.metadata.name for n in namespaces.items]
        assert api.rest_client.pool_manager.trust_env is False
    finally:
        await api.close()
    assert env_lookups == []


async def test_the_environments_proxy_is_still_used_unless_no_proxy_excludes_the_server(
        cluster: KubeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # the discard port: nothing listens there
    api = await kube.connect()
    try:
        assert api.configuration.proxy == "http://127.0.0.1:9"
        with pytest.raises(aiohttp.ClientError):  # the request went to the proxy, which is not there
            await client.CoreV1Api(api).list_namespace()
    finally:
        await api.close()

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    api = await kube.connect()
    try:
        assert api.configuration.proxy is None
        assert (await client.CoreV1Api(api).list_namespace()).items
    finally:
        await api.close()


@pytest.mark.parametrize(("environment", "url", "proxy"), [
    ({"HTTPS_PROXY": "http://proxy.corp:3128"}, "https://10.0.0.1:6443", "http://proxy.corp:3128"),
    ({"HTTPS_PROXY": "http://proxy.corp:3128"}, "http://10.0.0.1:8080", None),  # no HTTP_PROXY
    ({"HTTP_PROXY": "http://proxy.corp:3128"}, "http://10.0.0.1:8080/api", "http://proxy.corp:3128"),
    ({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "10.0.0.1"}, "https://10.0.0.1:6443", None),
    ({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": ".cluster.local"},
     "https://kubernetes.default.svc.cluster.local", None),
    ({"HTTPS_PROXY": "https://proxy.corp:3128"}, "https://10.0.0.1:6443", None),  # aiohttp ignores it too
    ({}, "https://10.0.0.1:6443", None),
    ({"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "::1"}, "https://[::1]:6443", None),
    ({"HTTPS_PROXY": "http://proxy.corp:3128"}, "https://[fd00::1]", "http://proxy.corp:3128"),
])
def test_the_proxy_is_the_one_aiohttp_would_find(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str],
                                                 url: str, proxy: str | None) -> None:
    for name in ENV_PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert kube.env_proxy(url) == proxy
