"""A route's claims in the ledger (:mod:`chutes.claims`), read-only under dry-run (:class:`chutes.claims.DryRunClaims`).

**One hostname, one holder**, across every front door: the source whose claim exists holds the hostname until its
own teardown is complete. When the claim is free and several enabled routes ask at once, the door prefers the route
whose state says it published the hostname, else the oldest (:func:`references.hostname_winner`).

**Bootstrap.** A claim with no entries, for a route whose state ConfigMap (written only by this operator or the
seed, where tenants cannot write) names objects at that hostname, records an object only when it exists and its name
and natural key are exactly what the route would create: the Access application ``cfzt-{hostname}`` for that
domain, the token of that name, a path-less rule at the hostname in the tunnel the state names routing to the
route's service (from a completed state, or with a DNS record there marked for the route). DNS records the state
lists are adopted (:meth:`CloudflareCore.adopt_dns_record`: never a record of another owner or source).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chutes import conditions as c
from chutes.claims import Claim, ClaimLost, ClaimStore, HeldElsewhere, claims_for, utc_now
from chutes.cloudflare_core import CloudflareCore, marks
from chutes.frontdoors import claiming
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import references
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.problems import Problem, step
from chutes.frontdoors.retries import CONFLICT_RETRY, LOST_RETRY

logger = logging.getLogger(__name__)


def store_for(ctx: Context, core: CloudflareCore) -> ClaimStore:
    """The ledger as this core may use it: read-only under dry-run (:class:`chutes.claims.DryRunClaims`)."""
    return claims_for(ctx.claims, dry_run=core.dry_run)


async def hold(ctx: Context, claims: ClaimStore, route: Mapping[str, Any], hostname: str,
               previous: s.RouteState | None) -> Claim:
    """The route's claim on `hostname` (acquired now, or held already). Another holder, or (the claim being free)
    another enabled route the door prefers (of a namespace the hostname rules let publish it) is a conflict."""
    me = d.route_ref(route)
    source = a.source(me.namespace, me.name)
    others = [ref for ref in ctx.claimants(hostname) if ref.key != me.key and ctx.rules.allows(ref.namespace, hostname)]
    if others and await claims.get("hostname", hostname) is None:
        winner = await references.hostname_winner(ctx, me, others, hostname, previous)
        if winner.key != me.key:
            raise Problem(c.HOSTNAME_CONFLICT, claiming.holder_message("hostname", hostname, f"HTTPRoute/{winner.ref}"),
                          CONFLICT_RETRY)
    return await claiming.hold(claims, "hostname", hostname, source)


def hints(st: s.RouteState | None, hostname: str) -> bool:
    """Whether the state names objects at `hostname` that a claim with no entries may be bootstrapped from."""
    if st is None or st.hostname != hostname:
        return False
    return any(st.get(key) for key in ("access_app_id", "service_token_id", "hostname_route_id", "cname_record_id",
                                       "dns_record_id"))


def adoptable_ids(st: s.RouteState | None, hostname: str) -> tuple[str, ...]:
    """DNS record ids the route's state says were created for it at `hostname` (by us or by the seed)."""
    if st is None or st.hostname != hostname:
        return ()
    return tuple(i for i in (st.get("cname_record_id"), st.get("dns_record_id")) if i)


async def _marked(core: CloudflareCore, zone_id: str, hostname: str, source: str) -> bool:
    """Whether a DNS record at `hostname` is marked for `source` (one name-filtered listing)."""
    if not zone_id:
        return False
    records = await step(f"checking DNS for {hostname}", core.dns_records_named(zone_id, hostname))
    return any(marks(record.comment, core.owner_id, source) for record in records)


async def bootstrap(core: CloudflareCore, claims: ClaimStore, claim: Claim, st: s.RouteState, *,
                    account_id: str, service: str | None = None) -> Claim:
    """Record in `claim` (no entries yet) what the state names at its hostname, each only when it exists and is
    exactly what the route would create (see the module docstring). Entries get an intent time too, so an
    object deleted behind our back is created again. The rule is recorded (as written) only from a state that
    completed (``published``: a state written before the first write proves nothing) or with a DNS record at the
    hostname marked for the route, and only when it routes to `service`, what the route would write now (None:
    not known, e.g. the route is gone: the rule is left in place)."""
    hostname, source, owner = claim.key, claim.source, core.owner_id
    recorded: list[str] = []
    app_id = st.get("access_app_id")
    if app_id:
        app = await step(f"reading Access application {app_id}", core.get_access_app(account_id, app_id))
        name = a.app_name(hostname, owner)
        if app is not None and app.domain == hostname and app.name == name:
            claim = await claims.intend(claim, claiming.ACCESS_APP, id=app.id, account=account_id, name=name)
            recorded.append(f"Access application {name}")
            policy_id = st.get("access_policy_ids")
            if policy_id and "," not in policy_id:
                claim = await claims.intend(claim, claiming.ACCESS_POLICY, id=policy_id, app=app.id)
    token_id = st.get("service_token_id")
    if token_id:
        token = await step(f"reading service token {token_id}", core.get_service_token(account_id, token_id))
        name = a.token_name(hostname, owner)
        if token is not None and token.name == name:
            claim = await claims.intend(claim, claiming.SERVICE_TOKEN, id=token.id, account=account_id, name=name)
            recorded.append(f"service token {name}")
    tunnel = st.get("hostname_route_id")
    zone = st.get("zone_id")
    if tunnel and service and (st.published or await _marked(core, zone, hostname, source)):
        config = await step(f"reading the configuration of tunnel {tunnel}", core.get_tunnel_config(account_id,
                                                                                                     tunnel))
        rules = (config or {}).get("ingress") or []
        if any(isinstance(rule, Mapping) and str(rule.get("hostname") or "").lower() == hostname
               and not rule.get("path") and rule.get("service") == service for rule in rules):
            claim = await claims.complete(claim, claiming.TUNNEL_RULE, tunnel, since=utc_now(), tunnel=tunnel,
                                          account=account_id, service=service)
            recorded.append(f"tunnel rule in {tunnel}")
    for record_id in adoptable_ids(st, hostname) if zone else ():
        record = await step(f"adopting DNS record {record_id}", core.adopt_dns_record(zone, record_id, hostname,
                                                                                       source))
        if record is not None:
            claim = await claims.intend(claim, claiming.DNS, zone=zone, type=record.type)
            recorded.append(f"{record.type} record")
    if recorded:
        logger.info("Claim on %s of %s bootstrapped from state %s: %s", hostname, source, st.name,
                    ", ".join(recorded))
    return claim


def unrecorded(st: s.RouteState | None, claims: list[Claim]) -> bool:
    """Whether the state names objects at a hostname none of `claims` is on (an earlier version's, the seed's)."""
    return st is not None and hints(st, st.hostname) and all(claim.key != st.hostname for claim in claims)


async def legacy_claim(core: CloudflareCore, store: ClaimStore, st: s.RouteState, source: str,
                       account_id: str) -> list[Claim]:
    """The claim on the state's hostname (which the route does not hold yet), bootstrapped from the state; none
    when another source holds it (what is there is theirs)."""
    try:
        claim = await store.acquire("hostname", st.hostname, source)
    except HeldElsewhere as held:
        logger.info("%s: %s holds it: nothing of %s there is torn down", st.hostname, held.holder, source)
        return []
    except ClaimLost as lost:
        raise Problem(c.CLOUDFLARE_UNAVAILABLE, f"claiming {st.hostname}: {lost}", LOST_RETRY) from None
    if claim.entries:
        return [claim]
    try:
        return [await bootstrap(core, store, claim, st, account_id=account_id)]
    except ClaimLost:
        return []
