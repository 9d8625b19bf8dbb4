"""The *read* step: the source's objects from Kubernetes, then what the server holds for it (one search by its
comment, one per wanted hostname, each filtered exactly: the server matches substrings, ignoring case).

Kubernetes is read before the server, so an entry is never judged on an older view of its source than the
server's view of the entry.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio import client

from chutes import kube
from chutes.frontdoors.hosts import desired as d
from chutes.frontdoors.hosts.decide import Found
from chutes.hosts_core.backend import HostsBackend

__all__ = ["find", "read_sources"]


async def read_sources(api: client.ApiClient, source: d.Source) -> list[dict[str, Any]]:
    """The objects of `source` that exist (a HostMapping; the IngressRoute and IngressRouteTCP of the name)."""
    if source.family == "HostMapping":
        found = await kube.get_custom(api, d.GROUP, d.VERSION, d.PLURAL, source.name, source.namespace)
        return [found] if found is not None else []
    bodies = []
    for plural in d.ROUTE_PLURALS.values():
        body = await kube.get_custom(api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, plural, source.name, source.namespace)
        if body is not None:
            bodies.append(body)
    return bodies


async def find(backend: HostsBackend, source: d.Source, hostnames: list[str]) -> Found:
    """Every entry carrying `source`'s comment, and every entry named like each of `hostnames`."""
    names = sorted({hostname.lower() for hostname in hostnames})
    results = await asyncio.gather(backend.search(source.comment), *(backend.search(name) for name in names))
    ours = tuple(entry for entry in results[0] if entry.comment == source.comment)
    named = {name: tuple(e for e in entries if e.hostname.lower() == name)
             for name, entries in zip(names, results[1:], strict=True)}
    return Found(ours, named)
