"""``chutes plan`` for the router-hosts door: when it is planned, its settings, and when its routes have settled.

The door is planned (on an in-process :class:`RouterHostsSandbox`, with a default ingress IP) when the manifests
hold a HostMapping, an IngressRoute or an IngressRouteTCP, or the starting state holds router-hosts entries or
such objects; ``--[no-]router-hosts`` decides otherwise. A HostMapping says how it went in its status (the plan's
generic outcome). Traefik routes have no status: the routes of one namespace/name have settled when the server
and their host-ids annotations show what the door wants for them (the door's own pure ``wants_of_routes``): every
wanted hostname held by an entry of theirs or by a foreign one (a conflict), no entry of theirs beyond, and each
annotation naming exactly the entries of theirs its route asks for. Routes that are gone have settled once no
entry of theirs is left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chutes import conditions as c
from chutes.frontdoors.hosts import desired as d
from chutes.hosts_core.models import HostEntry
from chutes.sandbox import manifests
from chutes.sandbox.outcomes import Source
from chutes.sandbox.routerhosts import RouterHostsServer

__all__ = ["DEFAULT_INGRESS_IP", "KINDS", "HostsRehearsal", "planned", "route_outcomes"]

MAPPING: manifests.Kind = (f"{d.GROUP}/{d.VERSION}", "HostMapping")
ROUTES: tuple[manifests.Kind, ...] = tuple((f"{d.TRAEFIK_GROUP}/{d.TRAEFIK_VERSION}", kind) for kind in d.ROUTE_PLURALS)
KINDS: tuple[manifests.Kind, ...] = (MAPPING, *ROUTES)
ROUTE_KINDS = frozenset(kind for _, kind in ROUTES)
DEFAULT_INGRESS_IP = "192.0.2.10"  # TEST-NET-1 (RFC 5737): plainly not a real address
WRITES = frozenset({"AddHost", "UpdateHost", "DeleteHost"})


def planned(docs: Iterable[Mapping[str, Any]], entries: Sequence[Any], saved: Mapping[str, Any] | None) -> bool:
    """Whether these manifests (or the starting state) involve the router-hosts door."""
    objects = [*docs, *((saved or {}).get("objects") or ())]
    return bool(entries) or any((o.get("apiVersion"), o.get("kind")) in KINDS for o in objects)


def _owned(source: d.Source, entries: Iterable[HostEntry]) -> set[str]:
    return {e.hostname.lower() for e in entries if source.owns(e.comment, e.tags)}


def route_outcomes(bodies: Sequence[Mapping[str, Any]], namespace: str, name: str, entries: Sequence[HostEntry],
                   ingress_ip: str) -> list[Source]:
    """The outcome of each route of one namespace/name (`bodies`: those that exist), given the server's entries."""
    source = d.Source("routes", namespace, name)
    ours = _owned(source, entries)
    if not bodies:
        return [] if not ours else [Source("IngressRoute", namespace, name, None, "Deleting",
                                           f"removing its entries: {', '.join(sorted(ours))}", settled=False)]
    wants = d.wants_of_routes(bodies, namespace, name, ingress_ip)
    wanted = {hostname.lower() for hostname in wants.specs}
    foreign = {e.hostname.lower() for e in entries if not source.owns(e.comment, e.tags)} & wanted
    converged = wants.block or (ours <= wanted and wanted <= ours | foreign)
    problems = [*wants.problems, *((c.HOSTNAME_CONFLICT, f"held by another entry: {hostname}")
                                   for hostname in sorted(foreign - ours))]
    found: list[Source] = []
    for body in bodies:
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        ids, _ = d.parse_host_ids(annotations.get(d.HOST_IDS_ANNOTATION))
        asked = {hostname.lower() for hostname in d.route_hostnames(body)}
        registered = {hostname.lower() for hostname in ids}
        settled = wants.block or (converged and registered == asked & ours)
        kind = str(body.get("kind"))
        if problems:
            reason, _ = problems[0]
            found.append(Source(kind, namespace, name, False, reason, "; ".join(m for _, m in problems), settled))
        elif not asked:
            why = "opts out" if d.IGNORE_LABEL in ((body.get("metadata") or {}).get("labels") or {}) else "no host"
            found.append(Source(kind, namespace, name, None, settled=settled, detail=f"nothing registered ({why})"))
        else:
            found.append(Source(kind, namespace, name, True, settled=settled,
                                detail=f"registered at {ingress_ip}: {', '.join(sorted(registered))}"))
    return found


@dataclass
class HostsRehearsal:
    """The router-hosts side of one plan: the emulator and the ingress IP the installation registers routes at."""

    server: RouterHostsServer
    ingress_ip: str = DEFAULT_INGRESS_IP

    def settings(self) -> dict[str, Any]:
        """The door on, on the emulator (real mutual TLS)."""
        return {"router_hosts_address": self.server.address, "router_hosts_tls_ca": self.server.ca,
                "router_hosts_tls_cert": self.server.cert, "router_hosts_tls_key": self.server.key,
                "default_ingress_ip": self.ingress_ip}

    def writes(self) -> int:
        return sum(1 for record in self.server.requests if record.rpc in WRITES)

    async def outcomes(self, api: Any, table: Mapping[manifests.Kind, manifests.Resource]) -> list[Source]:
        """The outcome of the routes of every namespace/name that has a route or an entry of routes."""
        entries = self.server.entries()
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for api_version, kind in ROUTES:
            for body in await manifests.list_all(api, api_version, kind, table):
                meta = body["metadata"]
                groups.setdefault((meta["namespace"], meta["name"]), []).append(body)
        for entry in entries:
            source = d.source_of_comment(entry.comment)
            if source is not None and source.family == "routes" and source.owns(entry.comment, entry.tags):
                groups.setdefault((source.namespace, source.name), [])
        found: list[Source] = []
        for (namespace, name), bodies in sorted(groups.items()):
            found += route_outcomes(bodies, namespace, name, entries, self.ingress_ip)
        return found
