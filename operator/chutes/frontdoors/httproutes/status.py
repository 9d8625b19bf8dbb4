"""The status of tenants and templates (the seed declared it and never wrote it): a ``Ready`` condition,
the managed route counts, the last sync time; the routes using a template."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from chutes import conditions as c
from chutes import kube
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import references
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.problems import Problem, step

STATUS_DELAY = 0.25  # seconds: one tenant status write for a burst of route changes


async def check_tenant(ctx: Context, body: Mapping[str, Any]) -> str:
    """Raise a Problem unless the credentials reach the tenant's tunnel (and zone); the readiness message."""
    try:
        tenant = d.tenant_from_body(body)
    except d.TenantError as exc:
        raise Problem(c.TENANT_INVALID, str(exc), None) from None
    core = await references.core_for(ctx, tenant)
    tunnel = await step(f"reading tunnel {tenant.tunnel_id}", core.get_tunnel(tenant.account_id, tenant.tunnel_id))
    if tunnel is None or tunnel.deleted:
        raise Problem(c.TENANT_INVALID, f"tunnel {tenant.tunnel_id} not found in account {tenant.account_id}", None)
    message = f"the token reaches tunnel {tunnel.name} ({tunnel.id})"
    if tenant.zone_id:
        zone = await step(f"reading zone {tenant.zone_id}", core.get_zone(tenant.zone_id))
        message += f" and zone {zone.name}"
    return message


def summary(states: list[s.RouteState]) -> dict[str, int]:
    published = [st for st in states if st.published]
    return {
        "managedHTTPRoutes": len(published),
        "hostnameRoutes": sum(1 for st in published if st.get("hostname_route_id")),
        "accessApplications": sum(1 for st in published if st.get("access_app_id")),
        "accessPolicies": sum(1 for st in published if st.get("access_policy_ids")),
        "serviceTokens": sum(1 for st in published if st.get("service_token_id")),
    }


async def write_tenant_status(ctx: Context, body: Mapping[str, Any], *, synced: bool,
                              recheck: bool = True) -> Problem | None:
    """Check the tenant, count its routes, write status; the problem found, if any (not raised). Without
    `recheck` (a refresh of the route counts), a tenant checked for this generation keeps its Ready condition
    and is not read from Cloudflare again (its create, spec changes and resync timer check it)."""
    meta = body["metadata"]
    current = dict(body.get("status") or {})
    problem: Problem | None = None
    known = c.find(current.get("conditions"), c.READY)
    conditions: list[c.Condition] | Any
    if recheck or known is None or known.get("observedGeneration") != meta.get("generation"):
        ready: c.Status = "True"
        try:
            reason, message = c.RECONCILED, await check_tenant(ctx, body)
        except Problem as found:
            problem, ready, reason, message = found, "False", found.reason, found.message
        conditions = c.set_condition(current.get("conditions"), c.READY, ready, reason, message,
                                     meta.get("generation"))
    else:
        conditions = current.get("conditions")
    states = await s.list_states(ctx.api, ctx.operator_namespace, tenant=meta["name"])
    status: dict[str, Any] = {
        "observedGeneration": meta.get("generation"),
        "conditions": conditions,
        "summary": summary(states),
    }
    if synced or not current.get("lastSyncTime"):
        status["lastSyncTime"] = c.now()
    if any(current.get(key) != value for key, value in status.items()):
        await kube.patch_custom_status(ctx.api, a.GROUP, a.VERSION, a.TENANT_PLURAL, meta["name"],
                                       meta["namespace"], status)
    return problem


async def write_template_status(ctx: Context, body: Mapping[str, Any], users: list[d.RouteRef]) -> None:
    meta = body["metadata"]
    current = dict(body.get("status") or {})
    names = sorted(ref.ref for ref in users)
    message = f"used by {len(names)} HTTPRoute(s)"
    status: dict[str, Any] = {
        "observedGeneration": meta.get("generation"),
        "usedByHTTPRoutes": names,
        "conditions": c.set_condition(current.get("conditions"), c.READY, "True", c.RECONCILED, message,
                                      meta.get("generation")),
    }
    if any(current.get(key) != value for key, value in status.items()):
        await kube.patch_custom_status(ctx.api, a.GROUP, a.VERSION, a.TEMPLATE_PLURAL, meta["name"],
                                       meta["namespace"], status)


def tenant_status_soon(ctx: Context, tenant: str, namespace: str) -> None:
    """Refresh the route counts of the tenant a route resolves to, once for a burst of route changes."""

    fresh = dataclasses.replace(ctx, lookups=None)  # read when it runs, not as a batch read it

    async def refresh() -> None:
        body = await references.find_in_namespaces(fresh, a.TENANT_PLURAL, tenant, namespace)
        if body is not None:
            await write_tenant_status(fresh, body, synced=False, recheck=False)

    ctx.runtime.soon(("tenant-status", f"{namespace}/{tenant}"), STATUS_DELAY, refresh)
