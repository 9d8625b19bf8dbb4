"""The HTTPRoute door's orphan sweep, one pass per tenant (the first as soon as the tenant is seen): what every
HTTPRoute wants (fresh listings; an enabled route, the hostname its annotations ask for unless the hostname rules
refuse it), judged by this installation's claims and DNS markers (:mod:`chutes.sweep.verdict`) over the tenant's
account and zone(s), within the one deletion cap. Only the verdict deletes in Cloudflare. The state ConfigMaps of
routes the events missed (deleted or disabled while no operator watched) are evidence, not a sweep of their own:
what a state names and no claim records yet is recorded in one first (:func:`_prove`); once no claim of the route
records anything, the rest is settled (:func:`unpublish.settle`: state, token Secret, hand-over).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from chutes import kube
from chutes.authorization import HostnameRules
from chutes.claim import split_source
from chutes.cloudflare_core import CloudflareCore
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import ledger, references, unpublish, upkeep
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.problems import Post, Problem
from chutes.sweep import engine
from chutes.sweep.verdict import CLAIM, Deletion, DoorNames, Wants

logger = logging.getLogger(__name__)

NAMES = DoorNames(door="httproutes", kinds=frozenset({a.ROUTE_KIND}))


def route_wants(routes: Iterable[Mapping[str, Any]], rules: HostnameRules | None = None,
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


async def sweep_tenant(ctx: Context, body: Mapping[str, Any], cap: int, post: Post,
                       namespaces: tuple[str, ...] = ()) -> engine.SweepReport | None:
    """One pass over the tenant's account, zone (every zone of the account when it names none) and tunnel, and the
    states of its routes the events missed; the report is None when the tenant or its token is unusable (nothing
    is judged; the states of routes that hold no claim are settled all the same)."""
    where = f"{a.TENANT_KIND} {body['metadata'].get('namespace')}/{body['metadata']['name']}"
    tenant: d.Tenant | None = None
    core: CloudflareCore | None = None
    try:
        tenant = d.tenant_from_body(body)
        core = await references.core_for(ctx, tenant)
    except (d.TenantError, Problem) as problem:
        logger.info("Orphan sweep of %s skipped: %s", where, problem)
    missed = [st for st in await s.list_states(ctx.api, ctx.operator_namespace, tenant=body["metadata"]["name"])
              if (not namespaces or st.route_namespace in namespaces)
              and not upkeep.is_live(await upkeep.read_route(ctx, st.route_namespace, st.route_name))]
    report = None
    proven = {st.name: await _prove(ctx, core, tenant.account_id if tenant else "", st) for st in missed}
    if tenant is not None and core is not None:
        scope = engine.Scope(NAMES, tenant.account_id, (tenant.zone_id,) if tenant.zone_id else None, label=where)

        async def wants() -> Wants:
            return await load_wants(ctx, namespaces)

        report = await engine.sweep(core, scope, wants, cap, ctx.claims,
                                    functools.partial(_still_orphans, ctx, namespaces))
    for st in missed:
        source = a.source(st.route_namespace, st.route_name)
        released = [deletion.name for deletion in (report.deleted if report else ())
                    if deletion.object == CLAIM and deletion.source == source]
        settle = functools.partial(unpublish.settle, core=core, proven=proven[st.name], released=released)
        try:
            await upkeep.route_gone(ctx, st.route_namespace, st.route_name, post, fallback=body, unpublish=settle)
        except Problem as problem:
            logger.warning("Orphan sweep of HTTPRoute %s/%s: %s", st.route_namespace, st.route_name, problem.message)
    return report


@contextlib.asynccontextmanager
async def _still_orphans(ctx: Context, namespaces: tuple[str, ...], deletions: Sequence[Deletion],
                         claims: Mapping[str, Any]) -> AsyncIterator[Sequence[Deletion]]:
    """The sweep's guard (:data:`chutes.sweep.engine.Guard`): the locks of the routes whose claims the deletions
    belong to (sorted: two sweeps cannot deadlock), held through the deletions, and the routes listed again under
    them: a route that asks again for a hostname the pass judged an orphan (edited back meanwhile) keeps what its
    claim records; its own pass, waiting on its lock, finds it in place. Deletes nothing when the listing fails."""
    sources = sorted({claims[d.claim].source if d.claim in claims else d.source for d in deletions
                      if d.claim in claims or d.source.startswith(f"{a.ROUTE_KIND}/")})
    async with contextlib.AsyncExitStack() as stack:
        for source in sources:
            try:
                _kind, namespace, name = split_source(source)
            except ValueError:  # not a route's name: no pass of a route to wait for
                continue
            await stack.enter_async_context(ctx.runtime.lock(namespace, name))
        try:
            wants = await load_wants(ctx, namespaces)
        except Exception as error:  # a partial desired state must never drive deletions
            logger.warning("Orphan sweep: the routes could not be listed again before the deletions: %s", error)
            yield []
            return
        asked = {name for name, claim in claims.items() if wants.wanted(claim.source, claim.key)}
        yield [d for d in deletions if d.claim not in asked
               and (d.claim or d.object == CLAIM or not wants.wanted(d.source, d.name))]


async def _prove(ctx: Context, core: CloudflareCore | None, account_id: str, st: s.RouteState) -> bool:
    """Whether what the state names is the verdict's to judge: nothing, or its hostname is recorded in a claim of
    the route, or gets one now (bootstrapped from the state), or another source holds it (nothing there is the
    route's). False, keeping the state for a later pass, when that could not be done (no usable tenant, a failure;
    dry-run, which writes no claim)."""
    if not ledger.hints(st, st.hostname):
        return True
    source = a.source(st.route_namespace, st.route_name)
    async with ctx.runtime.lock(st.route_namespace, st.route_name), ctx.runtime.hostnames(st.hostname):
        held = await ctx.claims.list(kind="hostname", source=source)
        if any(claim.key == st.hostname and claim.entries for claim in held):
            return True
        if core is None or core.dry_run:
            return False
        try:
            await ledger.legacy_claim(core, ctx.claims, st, source, account_id)
        except Problem as problem:
            logger.warning("Orphan sweep of HTTPRoute %s/%s: recording what its state names: %s",
                           st.route_namespace, st.route_name, problem.message)
            return False
    return True
