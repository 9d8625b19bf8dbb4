"""The HTTPRoute front door's orphan sweep through Cloudflare (after the state-based cleanup of
:mod:`sweep`): what every HTTPRoute and state ConfigMap claims, from fresh listings, and one pass over a
tenant's account, zone(s) and tunnel.

It finds what the state-based cleanup cannot: objects whose state ConfigMap is gone too (deleted by hand, a
crash between two writes). A hostname is claimed by every enabled route asking for it (whatever its
reconcile's outcome) and by every state ConfigMap holding it, unless the hostname rules refuse it to the
route's namespace; the Access application and service token names of a claimed hostname are claimed with
it (whether the route wants them is its own reconcile's business).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from chutes import kube
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import lookups
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.lookups import Context
from chutes.frontdoors.httproutes.problems import Problem
from chutes.sweep import engine
from chutes.sweep.plan import Claims, DoorNames

logger = logging.getLogger(__name__)

NAMES = DoorNames(door="httproutes", kinds=frozenset({a.ROUTE_KIND}), app_prefix=a.NAME_PREFIX,
                  token_prefix=a.NAME_PREFIX)


class Rules(Protocol):
    def allows(self, namespace: str, hostname: str) -> bool: ...


def route_claims(routes: Iterable[Mapping[str, Any]], states: Iterable[s.RouteState], owner_id: str,
                 rules: Rules | None = None, namespaces: Iterable[str] = ()) -> Claims:
    """What `routes` and `states` claim; `namespaces`: the namespaces served (none: all)."""
    hostnames: set[str] = set()

    def claim(namespace: str, hostname: str) -> None:
        if hostname and (rules is None or rules.allows(namespace, hostname)):
            hostnames.add(hostname)

    for route in routes:
        meta = route.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        if not a.is_enabled(annotations):
            continue
        try:
            hostname = a.parse_hostname(a.HOSTNAME, annotations.get(a.HOSTNAME, ""))
        except a.ValueProblem:
            continue
        claim(str(meta.get("namespace") or ""), hostname)
    for st in states:
        claim(st.route_namespace, st.hostname.strip().rstrip(".").lower())
    served = frozenset(namespaces)
    return Claims(
        hostnames=frozenset(hostnames),
        app_names=frozenset(a.app_name(h, owner_id) for h in hostnames),
        token_names=frozenset(a.token_name(h, owner_id) for h in hostnames),
        namespaces=served or None,
    )


async def load_claims(ctx: Context, owner_id: str, namespaces: tuple[str, ...]) -> Claims:
    if namespaces:
        routes = [route for namespace in namespaces
                  for route in await kube.list_custom(ctx.api, a.ROUTE_GROUP, a.ROUTE_VERSION, a.ROUTE_PLURAL,
                                                      namespace)]
    else:
        routes = await kube.list_custom(ctx.api, a.ROUTE_GROUP, a.ROUTE_VERSION, a.ROUTE_PLURAL)
    states = await s.list_states(ctx.api, ctx.operator_namespace)
    return route_claims(routes, states, owner_id, ctx.rules, namespaces)


async def sweep_tenant(ctx: Context, body: Mapping[str, Any], cap: int,
                       namespaces: tuple[str, ...] = ()) -> engine.SweepReport | None:
    """One pass over the tenant's account, zone (every zone of the account when it names none) and tunnel;
    None when the tenant or its token is unusable (nothing is swept)."""
    where = f"{a.TENANT_KIND} {body['metadata'].get('namespace')}/{body['metadata']['name']}"
    try:
        tenant = d.tenant_from_body(body)
        core = await lookups.core_for(ctx, tenant)
    except (d.TenantError, Problem) as problem:
        logger.info("Orphan sweep of %s skipped: %s", where, problem)
        return None
    scope = engine.Scope(NAMES, tenant.account_id, (tenant.zone_id,) if tenant.zone_id else None,
                         (tenant.tunnel_id,), label=where)

    async def claims() -> Claims:
        return await load_claims(ctx, core.owner_id, namespaces)

    return await engine.sweep(core, scope, claims, cap)
