"""kopf handlers for annotated HTTPRoutes, CloudflareZeroTrustTenants and -Templates: thin; the work is in
:mod:`reconcile`, :mod:`upkeep`, :mod:`orphans` and :mod:`status`. HTTPRoutes get no finalizer (nor a timer, which
would add one): a deleted or disabled route is cleaned up from its watch event, the per-tenant sweep catches what
the events missed; the per-tenant resync re-checks every route against Cloudflare (drift repair).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf

from chutes import conditions as c
from chutes.authorization import HostnameRules
from chutes.claims import operator_namespace
from chutes.frontdoors import adoption, repairs, slots
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import orphans, status, upkeep
from chutes.frontdoors.httproutes.context import Context, Runtime
from chutes.frontdoors.httproutes.reconcile import reconcile_route
from chutes.frontdoors.httproutes.report import read_conditions
from chutes.frontdoors.problems import EventSink, Problem, already_said, to_kopf
from chutes.observability import metrics
from chutes.settings import Settings
from chutes.sweep.events import announce
from chutes.sweep.timer import unless_stopped

logger = logging.getLogger(__name__)

ROUTE = (a.ROUTE_GROUP, a.ROUTE_VERSION, a.ROUTE_PLURAL)
TENANT = (a.GROUP, a.VERSION, a.TENANT_PLURAL)
TEMPLATE = (a.GROUP, a.VERSION, a.TEMPLATE_PLURAL)
ENABLED = {a.ENABLED: "true"}
RouteIndex = kopf.Index[tuple[str, str], d.RouteRef]


def context(memo: kopf.Memo, kwargs: Mapping[str, Any]) -> Context:
    """The handler's context; ``cfzt_routes`` is kopf's index of enabled routes (passed to every handler)."""
    index: RouteIndex = kwargs["cfzt_routes"]
    rules = memo.get("hostname_rules") or HostnameRules.allow_all()
    allow_adoption = bool(getattr(memo.get("config"), "allow_adoption", False))
    return Context(api=memo.kube, cores=memo.cores, runtime=memo.cfzt, index=index, claims=memo.claims, rules=rules,
                   allow_adoption=allow_adoption)


def adoption_permitted(ctx: Context, route: Mapping[str, Any]) -> bool:
    """Whether the route asks for adoption and the operator permits it for its namespace and hostname."""
    ref = d.route_ref(route)
    return adoption.permitted(adoption.source_requests(route), ref.namespace, ref.hostname, ctx.rules,
                              ctx.allow_adoption)


def inputs_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """Whether an update touched what the route asks for (not only our result annotations): its spec or an
    annotation under our prefixes (an unknown one included: it is refused)."""

    def view(essence: Mapping[str, Any] | None) -> tuple[dict[str, str], Any]:
        essence = essence or {}
        return a.checked((essence.get("metadata") or {}).get("annotations")), essence.get("spec")

    return view(old) != view(new)


def is_ready(route: Mapping[str, Any]) -> bool:
    ready = c.find(read_conditions((route.get("metadata") or {}).get("annotations") or {}), c.READY)
    return ready is not None and ready.get("status") == "True"


def index_route(body: Mapping[str, Any]) -> dict[tuple[str, str], d.RouteRef]:
    ref = d.route_ref(body)
    keys = {("hostname", ref.hostname): ref, ("tenant", ref.tenant): ref}
    if ref.template:
        keys[("template", ref.template)] = ref
    return keys


def register(registry: kopf.OperatorRegistry, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    namespace = operator_namespace(os.environ if environ is None else environ)

    @kopf.on.startup(registry=registry, id="cfzt-startup")
    async def cfzt_startup(memo: kopf.Memo, **_: Any) -> None:
        memo.cfzt = Runtime(operator_namespace=namespace)
        logger.info("HTTPRoute front door: tenants, templates and state ConfigMaps in namespace %s", namespace)

    @kopf.on.cleanup(registry=registry, id="cfzt-cleanup")
    async def cfzt_cleanup(memo: kopf.Memo, **_: Any) -> None:
        runtime: Runtime | None = memo.get("cfzt")
        if runtime is not None:
            await runtime.aclose()

    @kopf.index(*ROUTE, registry=registry, id="cfzt_routes", annotations=ENABLED)
    def cfzt_routes(body: kopf.Body, **_: Any) -> dict[tuple[str, str], d.RouteRef]:
        return index_route(body)

    # --- HTTPRoutes ---------------------------------------------------------------------------------------
    @kopf.on.resume(*ROUTE, registry=registry, id=a.RECONCILE_HANDLER_ID, annotations=ENABLED)
    @kopf.on.create(*ROUTE, registry=registry, id=a.RECONCILE_HANDLER_ID, annotations=ENABLED)
    @kopf.on.update(*ROUTE, registry=registry, id=a.RECONCILE_HANDLER_ID, annotations=ENABLED)
    async def route_reconcile(body: kopf.Body, memo: kopf.Memo, reason: str, old: Any, new: Any, **kwargs: Any) -> None:
        if reason == kopf.Reason.UPDATE and not inputs_changed(old, new) and is_ready(body):
            return  # our own result annotations, or something we do not read
        resumed = repairs.unprompted() if reason == kopf.Reason.RESUME else contextlib.nullcontext()
        try:
            with resumed:
                await reconcile_read_again(memo, kwargs, body["metadata"])
        except Problem as problem:
            raise to_kopf(problem) from None

    async def reconcile_read_again(memo: kopf.Memo, kwargs: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        """Reconcile the route as read under its lock (another handler may have run meanwhile)."""
        ctx = context(memo, kwargs)
        async with slots.of(memo).held(), ctx.runtime.lock(meta["namespace"], meta["name"]):
            route = await upkeep.read_route(ctx, meta["namespace"], meta["name"])
            if route is not None:
                async with metrics.reconcile_timer("httproutes"):
                    await reconcile_route(ctx, route, EventSink(route, kopf.event), force=False)

    @kopf.on.event(*ROUTE, registry=registry, id="cfzt-cleanup")
    async def route_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        meta = body.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        if not any(key.startswith(a.PREFIX) for key in annotations):
            return
        deleting = event.get("type") == "DELETED" or bool(meta.get("deletionTimestamp"))
        if not deleting and a.is_enabled(annotations):
            return
        ctx = context(memo, kwargs)
        problem = None if deleting else a.enabled_problem(annotations)
        try:
            async with slots.of(memo).held():
                await upkeep.route_gone(ctx, meta["namespace"], meta["name"], kopf.event, route=body,
                                        refusal=(c.INVALID_SPEC, problem) if problem else None)
        except Problem as problem:
            logger.warning("HTTPRoute %s/%s cleanup: %s (the sweep retries)", meta["namespace"], meta["name"],
                           problem.message)
            EventSink(body, kopf.event).warning(problem.reason, f"cleanup: {problem.message} (retried by the sweep)")

    # A route refused for a conflict that asks for adoption (permitted by the operator): at once, not at the
    # conflict's retry minutes later (kopf runs no update handler while the create handler waits to retry).
    @kopf.on.event(*ROUTE, registry=registry, id="cfzt-adopt", annotations=ENABLED)
    async def route_adopt(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        meta = body["metadata"]
        if event.get("type") == "DELETED" or meta.get("deletionTimestamp"):
            return
        ready = c.find(read_conditions(meta.get("annotations") or {}), c.READY)
        if adoption.retry_now(adoption_permitted(context(memo, kwargs), body), ready):
            with contextlib.suppress(Problem):  # recorded in the route's conditions and Events
                await reconcile_read_again(memo, kwargs, meta)

    # --- templates: a change re-reconciles every route using it -------------------------------------------
    @kopf.on.resume(*TEMPLATE, registry=registry, id="cfzt-status")
    async def template_resume(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        ctx = context(memo, kwargs)
        await status.write_template_status(ctx, body, upkeep.template_users(ctx, body))

    @kopf.on.create(*TEMPLATE, registry=registry, id="cfzt-users")
    @kopf.on.update(*TEMPLATE, registry=registry, id="cfzt-users", field="spec")
    async def template_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        ctx = context(memo, kwargs)
        users = upkeep.template_users(ctx, body)
        await upkeep.reconcile_refs(ctx, users, kopf.event, force=False)
        await status.write_template_status(ctx, body, users)

    @kopf.on.event(*TEMPLATE, registry=registry, id="cfzt-template-deleted")
    async def template_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        if event.get("type") == "DELETED":
            ctx = context(memo, kwargs)
            await upkeep.reconcile_refs(ctx, upkeep.template_users(ctx, body), kopf.event, force=False)

    # --- tenants: status, routes waiting for them, resync and orphan sweep ---------------------------------
    @kopf.on.resume(*TENANT, registry=registry, id="cfzt-tenant")
    @kopf.on.create(*TENANT, registry=registry, id="cfzt-tenant")
    @kopf.on.update(*TENANT, registry=registry, id="cfzt-tenant", field="spec")
    async def tenant_reconcile(body: kopf.Body, memo: kopf.Memo, reason: str, **kwargs: Any) -> None:
        ctx = context(memo, kwargs)
        problem = await status.write_tenant_status(ctx, body, synced=False)
        if reason in (kopf.Reason.CREATE, kopf.Reason.UPDATE):
            # routes waiting for this tenant, or (spec changed: tunnel, zone, account) to be moved
            await upkeep.reconcile_refs(ctx, upkeep.tenant_users(ctx, body), kopf.event,
                                       force=reason == kopf.Reason.UPDATE)
        if problem is not None:
            if not already_said((body.get("status") or {}).get("conditions"), problem):
                EventSink(body, kopf.event).warning(problem.reason, problem.message)
            raise to_kopf(problem)

    @kopf.timer(*TENANT, registry=registry, id="cfzt-resync", interval=settings.resync_interval,
                initial_delay=settings.resync_interval)
    async def tenant_resync(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        stopped: kopf.DaemonStopped = kwargs["stopped"]
        ctx = context(memo, kwargs)
        with repairs.unprompted():  # what it writes for routes published already is a drift repair
            outcomes = await unless_stopped(
                upkeep.reconcile_refs(ctx, upkeep.tenant_users(ctx, body), kopf.event, force=True), stopped.wait())
        if outcomes is None:  # the operator is stopping (its clients are about to close): the next start resumes
            return
        if outcomes:
            logger.info("Resync of tenant %s/%s: %s", body["metadata"]["namespace"], body["metadata"]["name"],
                        ", ".join(f"{count} {outcome}" for outcome, count in sorted(outcomes.items())))
        await status.write_tenant_status(ctx, body, synced=True)

    # The first pass as soon as the tenant is seen (kopf has listed the routes by then: its index): what a route
    # deleted while no operator watched had published goes at the restart (HTTPRoutes carry no finalizer).
    @kopf.timer(*TENANT, registry=registry, id="cfzt-sweep", interval=settings.sweep_interval, initial_delay=0)
    async def tenant_sweep(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        stopped: kopf.DaemonStopped = kwargs["stopped"]
        report = await unless_stopped(orphans.sweep_tenant(context(memo, kwargs), body, settings.sweep_max_deletions,
                                                           kopf.event, settings.namespaces), stopped.wait())
        announce(report, EventSink(body, kopf.event))
