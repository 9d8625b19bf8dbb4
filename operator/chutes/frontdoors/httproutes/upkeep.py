"""Level-based upkeep: re-reconcile the routes a template or tenant change concerns, the periodic forced
resync (drift repair), the cleanup of a route deleted or no longer enabled (its watch event; the orphan sweep,
:mod:`orphans`, for what the events missed). No finalizer is needed on HTTPRoutes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from chutes import conditions as c
from chutes import kube
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes import status
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.httproutes.reconcile import reconcile_route
from chutes.frontdoors.httproutes.report import RouteReport
from chutes.frontdoors.httproutes.unpublish import Unpublish, teardown
from chutes.frontdoors.problems import EventSink, Post, Problem
from chutes.observability import metrics

logger = logging.getLogger(__name__)


async def read_route(ctx: Context, namespace: str, name: str) -> dict[str, Any] | None:
    return await kube.get_custom(ctx.api, a.ROUTE_GROUP, a.ROUTE_VERSION, a.ROUTE_PLURAL, name, namespace)


def is_live(route: Mapping[str, Any] | None) -> bool:
    """Enabled and not being deleted."""
    if route is None:
        return False
    meta = route["metadata"]
    return a.is_enabled(meta.get("annotations")) and not meta.get("deletionTimestamp")


async def reconcile_refs(ctx: Context, refs: Iterable[d.RouteRef], post: Post, *, force: bool) -> dict[str, int]:
    """Reconcile the routes (read afresh), a few at a time; a route's problem is in its own conditions and
    Events and does not stop the others. Returns how many ended in which outcome. The routes' tenants and templates
    are read once for the batch."""
    outcomes: dict[str, int] = {}
    ctx = dataclasses.replace(ctx, lookups={})
    gate = asyncio.Semaphore(ctx.runtime.parallel)

    async def one(ref: d.RouteRef) -> None:
        async with gate, ctx.runtime.lock(ref.namespace, ref.name):
            route = await read_route(ctx, ref.namespace, ref.name)  # read under the lock: the latest outcome
            if route is None:
                return
            try:
                outcome = await reconcile_route(ctx, route, EventSink(route, post), force=force)
            except Problem as problem:
                outcome = problem.reason
                logger.info("HTTPRoute %s: %s: %s", ref.ref, problem.reason, problem.message)
            except Exception:
                outcome = "Error"
                logger.exception("HTTPRoute %s: reconcile failed", ref.ref)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

    await asyncio.gather(*(one(ref) for ref in sorted(set(refs))))
    return outcomes


async def route_gone(ctx: Context, namespace: str, name: str, post: Post,
                     route: Mapping[str, Any] | None = None, fallback: Mapping[str, Any] | None = None,
                     refusal: tuple[str, str] | None = None, *, unpublish: Unpublish = teardown) -> bool:
    """Remove what the route published (deleted or no longer enabled), from its claims; False when there was nothing.
    Events go to the route, else to `fallback` (its tenant). `refusal` (reason, message): why a route not deleted is
    not published (a malformed ``enabled``): its only condition, with a Warning when new. `unpublish`: how
    (:func:`unpublish.teardown`; the sweep, whose verdict removed the Cloudflare objects, passes its ``settle``).

    Hand-over: each hostname whose claim the teardown released goes to the routes waiting for it, reconciled at
    once; they publish objects of their own (nothing of this route's is left to them)."""
    source = a.source(namespace, name)
    async with ctx.runtime.lock(namespace, name):
        current = await read_route(ctx, namespace, name)
        if is_live(current):
            return False  # enabled again meanwhile: its reconcile takes it from here
        st = await s.read(ctx.api, ctx.operator_namespace, namespace, name)
        held = await ctx.claims.list(kind="hostname", source=source)
        events = EventSink(current or route or fallback, post)
        released: list[str] = []
        if st is not None or held:
            body = current or route
            hint = d.route_ref(body) if body is not None else None
            hostnames = [st.hostname if st is not None else "", *(claim.key for claim in held)]
            async with ctx.runtime.hostnames(*hostnames):
                released = await unpublish(ctx, namespace, name, st, events, tenant_name=hint.tenant if hint else "",
                                           held=held)
            metrics.HOSTNAMES.forget("httproutes", source)
        if current is not None and current["metadata"].get("deletionTimestamp"):
            await _drop_legacy_finalizer(ctx, current)
        elif current is not None:  # no longer ours: no result annotations or conditions left behind
            report = RouteReport(current)
            report.clear()
            if refusal is not None:
                if RouteReport(current).is_new(*refusal):
                    events.warning(*refusal)
                report.condition("False", *refusal)
            await report.flush(ctx.api)
        if st is None and not held:
            return False
    if st is not None:
        status.tenant_status_soon(ctx, st.tenant, namespace)
    for hostname in released:
        waiting = [ref for ref in ctx.claimants(hostname) if ref.key != (namespace, name)]
        if waiting:  # routes that were refused this hostname may have it now
            names = ", ".join(f"HTTPRoute {ref.ref}" for ref in sorted(waiting))
            events.normal(c.HOSTNAME_HANDED_OVER, f"{hostname}: this route's objects are removed and its claim "
                          f"released; {names} may publish it now")
            await reconcile_refs(ctx, waiting, post, force=False)
    return True


async def _drop_legacy_finalizer(ctx: Context, route: Mapping[str, Any]) -> None:
    """The seed's kopf put ``kopf.zalando.org/KopfFinalizerMarker`` on every route it managed; with the seed
    gone nobody would remove it and the route could never be deleted. Once our cleanup is done, it goes."""
    meta = route["metadata"]
    ours = a.LEGACY_FINALIZER in (meta.get("finalizers") or []) and a.ENABLED in (meta.get("annotations") or {})
    if ours and await kube.remove_finalizer(ctx.api, a.ROUTE_GROUP, a.ROUTE_VERSION, a.ROUTE_PLURAL, meta["name"],
                                            meta["namespace"], a.LEGACY_FINALIZER):
        logger.info("HTTPRoute %s/%s: removed the seed operator's finalizer %s", meta["namespace"],
                    meta["name"], a.LEGACY_FINALIZER)


def tenant_users(ctx: Context, tenant: Mapping[str, Any]) -> list[d.RouteRef]:
    """Routes naming the tenant that may resolve to it: same namespace, or any namespace when the tenant
    lives in the operator namespace (the route's own namespace is looked in first)."""
    meta = tenant["metadata"]
    return [ref for ref in ctx.users_of_tenant(meta["name"])
            if ref.namespace == meta.get("namespace") or meta.get("namespace") == ctx.operator_namespace]


def template_users(ctx: Context, template: Mapping[str, Any]) -> list[d.RouteRef]:
    meta = template["metadata"]
    return [ref for ref in ctx.users_of_template(meta["name"])
            if ref.namespace == meta.get("namespace") or meta.get("namespace") == ctx.operator_namespace]
