"""The HTTPRoute front door's orphan sweep through Cloudflare (after the state-based cleanup of :mod:`upkeep`):
what every HTTPRoute wants, from fresh listings, and one pass over a tenant's account and zone(s), judged by this
installation's claims and DNS markers (:mod:`chutes.sweep.verdict`).

It finds what the state-based cleanup cannot: claims and records whose route and state ConfigMap are both gone
(deleted by hand, a crash between two writes), and hostnames a live route no longer asks for. An enabled route
wants the hostname its annotations ask for (whatever its reconcile's outcome), unless the hostname rules refuse
it to the route's namespace.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from chutes import kube
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import references
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.httproutes.problems import Problem
from chutes.sweep import engine
from chutes.sweep.verdict import DoorNames, Wants

logger = logging.getLogger(__name__)

NAMES = DoorNames(door="httproutes", kinds=frozenset({a.ROUTE_KIND}))


class Rules(Protocol):
    def allows(self, namespace: str, hostname: str) -> bool: ...


def route_wants(routes: Iterable[Mapping[str, Any]], rules: Rules | None = None,
                namespaces: Iterable[str] = ()) -> Wants:
    """What `routes` want; `namespaces`: the namespaces served (none: all)."""
    sources: dict[str, frozenset[str]] = {}
    for route in routes:
        meta = route.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        namespace = str(meta.get("namespace") or "")
        if not a.is_enabled(annotations) or meta.get("deletionTimestamp"):
            continue
        try:
            hostname = a.parse_hostname(a.HOSTNAME, annotations.get(a.HOSTNAME, ""))
        except a.ValueProblem:
            hostname = ""
        wanted = {hostname} if hostname and (rules is None or rules.allows(namespace, hostname)) else set()
        sources[a.source(namespace, str(meta.get("name") or ""))] = frozenset(wanted)
    served = frozenset(namespaces)
    return Wants(sources=sources, namespaces=served or None)


async def load_wants(ctx: Context, namespaces: tuple[str, ...]) -> Wants:
    if namespaces:
        routes = [route for namespace in namespaces
                  for route in await kube.list_custom(ctx.api, a.ROUTE_GROUP, a.ROUTE_VERSION, a.ROUTE_PLURAL,
                                                      namespace)]
    else:
        routes = await kube.list_custom(ctx.api, a.ROUTE_GROUP, a.ROUTE_VERSION, a.ROUTE_PLURAL)
    return route_wants(routes, ctx.rules, namespaces)


async def sweep_tenant(ctx: Context, body: Mapping[str, Any], cap: int,
                       namespaces: tuple[str, ...] = ()) -> engine.SweepReport | None:
    """One pass over the tenant's account, zone (every zone of the account when it names none) and tunnel;
    None when the tenant or its token is unusable (nothing is swept)."""
    where = f"{a.TENANT_KIND} {body['metadata'].get('namespace')}/{body['metadata']['name']}"
    try:
        tenant = d.tenant_from_body(body)
        core = await references.core_for(ctx, tenant)
    except (d.TenantError, Problem) as problem:
        logger.info("Orphan sweep of %s skipped: %s", where, problem)
        return None
    scope = engine.Scope(NAMES, tenant.account_id, (tenant.zone_id,) if tenant.zone_id else None, label=where)

    async def wants() -> Wants:
        return await load_wants(ctx, namespaces)

    return await engine.sweep(core, scope, wants, cap, ctx.claims)
