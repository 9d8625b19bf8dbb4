"""The orphan sweep of the router-hosts door: entries proven ours (our provenance comment, and for routes the
``traefik`` and ``ingress`` tags) whose source objects are all gone, in the namespaces this installation watches.

A pass lists the server's entries first, then the sources (so an entry is never judged on an older view of its
source), judges (pure: :func:`orphans`, :func:`within_cap`), and hands the orphans' sources to the door's
ordinary reconcile, which reads the source again and removes what it proves its own. A failed listing skips the
pass: nothing is judged on a partial view. At most ``CHUTES_SWEEP_MAX_DELETIONS`` entries a pass; the rest
wait for the next one and a Warning Event ``SweepCapReached`` says so.

The comment names a namespace and a name, not an installation: two installations sharing one router-hosts
server must watch disjoint namespaces (as for DNS records, see the README).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from chutes import kube
from chutes.frontdoors.hosts import desired as d
from chutes.hosts_core.models import HostEntry

__all__ = ["list_sources", "orphans", "within_cap"]


def orphans(entries: Iterable[HostEntry], live: set[d.Source],
            watched: Callable[[str], bool]) -> dict[d.Source, list[HostEntry]]:
    """The entries proven a source's whose objects are all gone, by source (pure)."""
    found: dict[d.Source, list[HostEntry]] = {}
    for entry in entries:
        source = d.source_of_comment(entry.comment)
        if source is None or source in live or not watched(source.namespace):
            continue
        if source.owns(entry.comment, entry.tags):
            found.setdefault(source, []).append(entry)
    return found


def within_cap(found: Mapping[d.Source, Sequence[HostEntry]],
               cap: int) -> tuple[list[d.Source], list[d.Source]]:
    """The sources to clean now (their entries, together, at most `cap`) and those that wait (pure)."""
    now: list[d.Source] = []
    later: list[d.Source] = []
    budget = cap
    for source in sorted(found):
        count = len(found[source])
        if count <= budget:
            now.append(source)
            budget -= count
        else:
            later.append(source)
    return now, later


async def _listing(api: client.ApiClient, group: str, version: str, plural: str,
                   namespaces: Sequence[str]) -> list[dict[str, Any]]:
    try:
        if not namespaces:
            return await kube.list_custom(api, group, version, plural)
        return [item for ns in namespaces for item in await kube.list_custom(api, group, version, plural, ns)]
    except ApiException as exc:
        if exc.status == kube.NOT_FOUND:  # the kind is not served (no Traefik CRDs): none exist
            return []
        raise


async def list_sources(api: client.ApiClient, namespaces: Sequence[str]) -> set[d.Source]:
    """Every source with at least one object, in `namespaces` (all when empty)."""
    live: set[d.Source] = set()
    for item in await _listing(api, d.GROUP, d.VERSION, d.PLURAL, namespaces):
        live.add(d.mapping_source(item.get("metadata") or {}))
    for plural in d.ROUTE_PLURALS.values():
        for item in await _listing(api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, plural, namespaces):
            meta = item.get("metadata") or {}
            live.add(d.Source("routes", str(meta.get("namespace")), str(meta.get("name"))))
    return live
