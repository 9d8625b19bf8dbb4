"""ConfigMaps (the ledger's claims, the HTTPRoute states) are read raw: the server's JSON as plain dicts, without
the client's model round trip (bench/scale.py: the session door lists every hostname claim of the installation
each pass, thousands at scale, and each route reads several per reconcile; building a model of each, then a dict
of the model, cost CPU and memory for nothing). The dicts are what the server sent, timestamps included."""

from __future__ import annotations

from kubernetes_asyncio import client

from chutes import kube
from harness.ledger import LEDGER, api, cluster

__all__ = ["api", "cluster"]  # fixtures


async def test_configmaps_are_read_and_listed_as_the_server_sent_them(api: client.ApiClient) -> None:
    await client.CoreV1Api(api).create_namespaced_config_map(LEDGER, {
        "metadata": {"name": "raw", "labels": {"kind": "raw"}}, "data": {"key": "value"}})
    found = await kube.read_configmap(api, LEDGER, "raw")
    assert found is not None
    assert (found["metadata"]["name"], found["metadata"]["labels"], found["data"]) == ("raw", {"kind": "raw"},
                                                                                     {"key": "value"})
    assert found["metadata"]["creationTimestamp"].endswith("Z")  # as sent, not re-rendered from a datetime
    [listed] = await kube.list_configmaps(api, LEDGER, "kind=raw")
    assert listed["metadata"] == found["metadata"] and listed["data"] == found["data"]
    assert await kube.read_configmap(api, LEDGER, "missing") is None
    assert await kube.list_configmaps(api, LEDGER, "kind=none") == []
