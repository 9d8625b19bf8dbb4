"""Unpublishing a route (deleted, disabled, withdrawn), from its claims in the ledger (never from the ids of its state,
hints only), in the front-door shape (:func:`teardown`): read its claims, decide their deletes (each hostname's
routing first: rule, the route's own DNS records; then Access, then the token: :func:`decide.decide_leaving`), admit
them (the write policy and dry-run), make them through the core (:class:`claiming.Withdrawer`: each claim released
once nothing it records is left), say them (one Event per hostname); then the token Secret and the state.
:func:`settle` is the sweep's side of a route the events missed (the Cloudflare objects are its verdict's). A
state naming objects at a hostname the route holds no claim on (an earlier version's, the seed's) gets the claim
first, bootstrapped from it; a hostname another source holds is theirs: nothing of it is touched.
Callers hold the hostname lock (:meth:`context.Runtime.hostnames`): a teardown and another route's publish of the
same hostname never interleave in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from chutes import conditions as c
from chutes import kube
from chutes.claims import Claim, ClaimStore
from chutes.cloudflare_core import CloudflareCore
from chutes.frontdoors import changes, claiming
from chutes.frontdoors.changes import Change
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import decide, ledger, references
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.problems import EventSink
from chutes.frontdoors.teardown import Out
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
    """Take down what the route published, in the front-door shape: read its hostname claims, decide their deletes
    (:func:`decide.decide_leaving`), admit them (the write policy and dry-run), make them (each claim released once
    nothing it records is left); then, with all of them released, its token Secret and its state. Returns the
    hostnames released (other routes may take them now). Raises a Problem (claims and state kept: the sweep retries)
    when Cloudflare fails. `tenant_name`: the route's tenant when it has no state; `held`: the route's hostname
    claims, when the caller listed them already.

    A tenant that no longer exists leaves the Cloudflare objects, their claims and the state in place (nothing
    can reach the objects without its token); claims that record nothing are released all the same. Under a
    write policy that never deletes, the objects and their claims stay, and the Secret and state go."""
    source = a.source(namespace, name)
    claims = held if held is not None else await ctx.claims.list(kind="hostname", source=source)
    released = await _release_empty(ctx, claims)
    claims = [claim for claim in claims if claim.entries]
    legacy = ledger.unrecorded(st, claims)  # an earlier version's (the seed's) objects, at a hostname with no claim
    if not claims and not legacy:
        await forget(ctx, st)
        return released
    tenant = await references.reachable_tenant(ctx, st.tenant if st is not None and st.tenant else tenant_name,
                                               namespace, name, events)
    if tenant is None:
        return released
    core = await references.core_for(ctx, tenant)
    store = ledger.store_for(ctx, core)
    if legacy and st is not None:
        claims += await ledger.legacy_claim(core, store, st, source, tenant.account_id)
    admitted = changes.admit(decide.decide_leaving(claims).changes, core.policy, dry_run=core.dry_run)
    for line in admitted.lines() if core.dry_run else ():
        logger.info("dry-run: %s: %s", source, line)
    withdrawer = claiming.Withdrawer(core, store, account_id=tenant.account_id,
                                     zone_id=(st.get("zone_id") if st is not None else "") or None)

    async def run(change: Change[Out]) -> None:
        claim = change.payload.claim
        assert claim is not None
        done = await withdrawer.take(claim, change.payload.obj, last=change.payload.last)
        if done is not None:
            announce(claim.key, done, events)

    await changes.apply(admitted, run, logger)
    kept = 0
    for claim in claims:
        done = withdrawer.done.get(claim.key)
        if (done is not None and done.released) or not await _still_held(store, claim):  # (released meanwhile:
            released.append(claim.key)  # by the sweep's verdict)
        else:
            kept += 1
    if not core.dry_run and (not kept or not claiming.enforced(core)):  # a policy that keeps the objects keeps
        await forget(ctx, st)  # their proof in the claims; the Kubernetes side completes all the same
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
    done = [*released, *await _release_empty(ctx, claims)]
    kept_by_policy = core is not None and not core.dry_run and not claiming.enforced(core)
    if st is not None and proven and (kept_by_policy or not any(claim.entries for claim in claims)):
        await forget(ctx, st)
        metrics.orphan_removed("httproutes", "httproute")
        logger.info("Removed what HTTPRoute %s/%s had published (orphan sweep)", namespace, name)
    return sorted(set(done))


async def _still_held(store: ClaimStore, claim: Claim) -> bool:
    found = await store.get("hostname", claim.key)
    return found is not None and found.source == claim.source


async def _release_empty(ctx: Context, claims: list[Claim]) -> list[str]:
    """Release the claims that record nothing (a publish that stopped before its first write); their hostnames."""
    for claim in claims:
        if not claim.entries:
            await ctx.claims.release(claim)
    return [claim.key for claim in claims if not claim.entries]


async def delete_token_secret(ctx: Context, namespace: str, name: str) -> None:
    """Delete a route's service-token Secret when it carries our label; one of that name without it stays."""
    try:
        await kube.delete_namespaced(ctx.api, "Secret", namespace, name, {a.MANAGED_BY_LABEL: a.MANAGED_BY})
    except kube.NotOurs as exc:
        logger.warning("Left in place: %s", exc)


async def forget(ctx: Context, st: s.RouteState | None) -> None:
    """The Kubernetes side of a route torn down (or of a hostname another holds): its token Secret and its state."""
    if st is None:
        return
    secret = st.get("service_token_secret_name")
    if secret:
        await delete_token_secret(ctx, st.route_namespace, secret)
    await s.delete(ctx.api, ctx.operator_namespace, st.route_namespace, st.route_name)
