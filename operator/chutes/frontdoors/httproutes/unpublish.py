"""Removing what a route published, from its claims in the ledger (never from the ids of its state ConfigMap,
which are hints only): for each hostname claim of the route, routing first (tunnel rule, then the route's own
DNS records), then the Access application, then the service token (:func:`claiming.tear_down_hostname`), and the
claim is released once nothing it records is left. The state ConfigMap (the seed-compatible record of the past)
and the token Secret go after every claim of the route is released; until then the sweep judges the claims
(:func:`settle` is its side of a route the events missed: the Cloudflare objects are the sweep's verdict's).

A route whose state names objects at a hostname it holds no claim on (published by an earlier version, or by the
seed) gets the claim first, bootstrapped from the state (:func:`ledger.bootstrap`); a hostname claimed by another
source is that source's: nothing of it is touched. Callers hold the hostname lock
(:meth:`context.Runtime.hostnames`), so a teardown and another route's publish of the same hostname never
interleave in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from chutes import conditions as c
from chutes import kube
from chutes.claims import Claim
from chutes.cloudflare_core import CloudflareCore
from chutes.frontdoors import claiming
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import ledger, references
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.problems import EventSink
from chutes.observability import metrics

logger = logging.getLogger(__name__)


class Unpublish(Protocol):
    """How :func:`chutes.frontdoors.httproutes.upkeep.route_gone` removes what a route published: :func:`teardown`
    or :func:`settle`. Returns the hostnames released."""

    async def __call__(self, ctx: Context, namespace: str, name: str, st: s.RouteState | None, events: EventSink, *,
                       tenant_name: str = "", held: list[Claim] | None = None) -> list[str]: ...


def announce(hostname: str, done: claiming.Teardown, events: EventSink) -> None:
    """Events for one teardown: what was removed (Normal), what was left and why (Warning)."""
    if done.removed:
        events.normal(c.UNPUBLISHED, f"{hostname}: {'; '.join(done.removed)}")
    for left in done.left:
        events.warning(c.HOSTNAME_CONFLICT, f"{hostname}: left in place: {left}")


async def teardown(ctx: Context, namespace: str, name: str, st: s.RouteState | None, events: EventSink, *,
                   tenant_name: str = "", held: list[Claim] | None = None) -> list[str]:
    """Tear down every hostname claim of the route; then, with all of them released, its token Secret and its
    state. Returns the hostnames released (other routes may take them now). Raises a Problem (claims and state
    kept: the sweep retries) when Cloudflare fails. `tenant_name`: the route's tenant when it has no state;
    `held`: the route's hostname claims, when the caller listed them already.

    A tenant that no longer exists leaves the Cloudflare objects, their claims and the state in place (nothing
    can reach the objects without its token); claims that record nothing are released all the same. Under a
    write policy that never deletes, the objects and their claims stay, and the Secret and state go."""
    source = a.source(namespace, name)
    claims = held if held is not None else await ctx.claims.list(kind="hostname", source=source)
    released: list[str] = []
    for claim in claims:
        if not claim.entries:  # a publish that stopped before its first write: nothing to remove
            await ctx.claims.release(claim)
            released.append(claim.key)
    claims = [claim for claim in claims if claim.entries]
    # Published by an earlier version or the seed: the state names objects at a hostname the route holds no
    # claim with entries on.
    legacy = st is not None and ledger.hints(st, st.hostname) and all(claim.key != st.hostname for claim in claims)
    if not claims and not legacy:
        await _forget(ctx, st)
        return released
    tenant = await references.reachable_tenant(ctx, st.tenant if st is not None and st.tenant else tenant_name,
                                               namespace, name, events)
    if tenant is None:
        return released
    core = await references.core_for(ctx, tenant)
    store = ledger.store_for(ctx, core)
    if legacy and st is not None:
        found = await ledger.legacy_claim(core, store, st, source, tenant.account_id)
        claims += [found] if found is not None else []
    zone_id = (st.get("zone_id") if st is not None else "") or None
    kept = 0
    for claim in claims:
        done = await claiming.tear_down_hostname(core, store, claim, account_id=tenant.account_id, zone_id=zone_id)
        announce(claim.key, done, events)
        if done.released:
            released.append(claim.key)
        else:
            kept += 1
    if not core.dry_run and (not kept or not claiming.enforced(core)):  # a policy that keeps the objects keeps
        await _forget(ctx, st)  # their proof in the claims; the Kubernetes side completes all the same
    return sorted(set(released))


async def settle(ctx: Context, namespace: str, name: str, st: s.RouteState | None, events: EventSink, *,
                 tenant_name: str = "", held: list[Claim] | None = None, core: CloudflareCore | None = None,
                 proven: bool = True, released: Sequence[str] = ()) -> list[str]:
    """The orphan sweep's :func:`teardown` of a route the events missed, once the pass's verdict has removed what it
    could of the Cloudflare objects its claims record (within the cap) and released the claims left with nothing
    (`released`: their hostnames). Claims that record nothing are released; the token Secret and the state go when
    what the state names was `proven` (recorded in a claim before the pass judged, or another source's) and no claim
    records anything any more, or `core` never deletes (a write policy: objects and claims stay; not dry-run)."""
    claims = held if held is not None else await ctx.claims.list(kind="hostname", source=a.source(namespace, name))
    done = list(released)
    for claim in claims:
        if not claim.entries:
            await ctx.claims.release(claim)
            done.append(claim.key)
    kept_by_policy = core is not None and not core.dry_run and not claiming.enforced(core)
    if st is not None and proven and (kept_by_policy or not any(claim.entries for claim in claims)):
        await _forget(ctx, st)
        metrics.orphan_removed("httproutes", "httproute")
        logger.info("Removed what HTTPRoute %s/%s had published (orphan sweep)", namespace, name)
    return sorted(set(done))


async def delete_token_secret(ctx: Context, namespace: str, name: str) -> None:
    """Delete a route's service-token Secret when it carries our label; one of that name without it stays."""
    try:
        await kube.delete_namespaced(ctx.api, "Secret", namespace, name, {a.MANAGED_BY_LABEL: a.MANAGED_BY})
    except kube.NotOurs as exc:
        logger.warning("Left in place: %s", exc)


async def _forget(ctx: Context, st: s.RouteState | None) -> None:
    """The Kubernetes side of a route torn down: its token Secret and its state ConfigMap."""
    if st is None:
        return
    secret = st.get("service_token_secret_name")
    if secret:
        await delete_token_secret(ctx, st.route_namespace, secret)
    await s.delete(ctx.api, ctx.operator_namespace, st.route_namespace, st.route_name)
