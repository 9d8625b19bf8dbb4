"""Removing what a route published, as its state ConfigMap records it. Routing (DNS record, tunnel rule)
always goes before the Access application (the seed did the opposite), so a protected hostname is never
reachable unprotected. Objects are found by natural key when the state lacks their ids.

A hostname that another enabled route has published already (it took the hostname over) is left in
Cloudflare. Callers hold the hostname lock (:meth:`lookups.Runtime.hostnames`), so a teardown and another
route's publish of the same hostname never interleave.
"""

from __future__ import annotations

import logging

from chutes import conditions as c
from chutes import kube
from chutes.cloudflare_core import CloudflareCore, CloudflareError, Conflict, DesiredRecord, DnsRecord, parse
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import lookups
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.lookups import Context
from chutes.frontdoors.httproutes.problems import FOREIGN_RETRY, EventSink, Problem, problem_from_cloudflare, step

logger = logging.getLogger(__name__)


def adoptable_ids(previous: s.RouteState | None) -> tuple[str, ...]:
    """DNS record ids the route's own state says were created for it (by us or by the seed)."""
    if previous is None:
        return ()
    return tuple(i for i in (previous.get("cname_record_id"), previous.get("dns_record_id")) if i)


async def _adopt(core: CloudflareCore, zone_id: str, name: str, source: str, ids: tuple[str, ...]) -> bool:
    adopted = False
    for record_id in ids:
        record = await step(f"adopting DNS record {record_id}", core.adopt_dns_record(zone_id, record_id, name, source))
        adopted = adopted or record is not None
    return adopted


async def ensure_record(core: CloudflareCore, zone_id: str, record: DesiredRecord,
                        adopt_ids: tuple[str, ...]) -> DnsRecord:
    """The record, adopting one the state recorded for this route when it lacks our marker (seed-made)."""
    doing = f"ensuring the {record.type} record {record.name}"
    try:
        return await core.ensure_dns_record(zone_id, record)
    except Conflict as conflict:
        if not await _adopt(core, zone_id, record.name, record.source, adopt_ids):
            raise problem_from_cloudflare(conflict, doing) from conflict
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, doing) from exc
    return await step(doing, core.ensure_dns_record(zone_id, record))


async def check_name_free(ctx: Context, core: CloudflareCore, zone_id: str, record: DesiredRecord,
                          adopt_ids: tuple[str, ...]) -> None:
    """Refuse before writing anything when a record that is not ours holds the name (one listing of the
    zone serves a burst of first publishes); a record the route's state recorded (seed-made) is adopted. With
    `record.adopt` (the route asks for adoption), a record of its type without any marker is no obstacle: the
    DNS writer takes it over."""
    blocking = await ctx.runtime.foreign.blocking(core, zone_id, record.name, record.type)
    adoptable = tuple(r.id for r in blocking if r.id in adopt_ids)
    if adoptable and await _adopt(core, zone_id, record.name, record.source, adoptable):
        ctx.runtime.foreign.forget(core, zone_id)
    others = [r for r in blocking if r.id not in adopt_ids and not taken_over(record, r)]
    if others:
        types = ", ".join(sorted({r.type for r in others}))
        raise Problem(c.HOSTNAME_CONFLICT, f"{record.name}: a {types} record not owned by this operator (owner "
                      f"{core.owner_id}) exists: left untouched", FOREIGN_RETRY)


def taken_over(record: DesiredRecord, existing: DnsRecord) -> bool:
    return record.adopt and existing.type == record.type and parse(existing.comment) is None


async def delete_record(core: CloudflareCore, zone_id: str, name: str, type_: str, source: str,
                        adopt_ids: tuple[str, ...], events: EventSink) -> None:
    doing = f"removing the {type_} record {name}"
    try:
        await core.delete_dns_record(zone_id, name, type_)
        return
    except Conflict as conflict:
        if not await _adopt(core, zone_id, name, source, adopt_ids):
            events.warning(c.HOSTNAME_CONFLICT, f"{doing}: left in place, not ours ({conflict.message})")
            return
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, doing) from exc
    await step(doing, core.delete_dns_record(zone_id, name, type_))


def record_types(st: s.RouteState) -> list[str]:
    """The DNS record types the state says the route published (a pending state: what it was about to)."""
    types: list[str] = []
    if st.get("cname_record_id") or st.get("hostname_route_id"):
        types.append("CNAME")
    if st.get("dns_record_id") or st.get("dns_record_ip"):
        try:
            types.append(d.address_type(st.get("dns_record_ip")))
        except ValueError:
            types.append("A")
    return types


async def unpublish_routing(core: CloudflareCore, account_id: str, st: s.RouteState, events: EventSink) -> bool:
    """Remove the hostname's DNS record and tunnel rule (Access stays). True when there was something."""
    hostname, zone_id = st.hostname, st.get("zone_id")
    types = record_types(st) if zone_id else []
    source = a.source(st.route_namespace, st.route_name)
    for type_ in types:
        await delete_record(core, zone_id, hostname, type_, source, adoptable_ids(st), events)
    tunnel = st.get("hostname_route_id") or (st.get("tunnel_id") if st.get("cname_record_id") else "")
    if tunnel:
        await step(f"removing the tunnel rule of {hostname}", core.remove_ingress_rule(account_id, tunnel, hostname))
    st.set(cname_record_id=None, dns_record_id=None, dns_record_ip=None, hostname_route_id=None, annotation_hash=None)
    return bool(types or tunnel)


async def remove_access(core: CloudflareCore, account_id: str, st: s.RouteState, *, lookup: bool) -> None:
    """`lookup`: the state may lack the id (a reconcile that stopped half-way): find the app by name."""
    hostname = st.hostname
    app_id = st.get("access_app_id")
    if not app_id and lookup:
        app = await step("finding the Access application", core.find_access_app(account_id, hostname,
                                                                                 a.app_name(hostname, core.owner_id)))
        app_id = app.id if app is not None else ""
    if app_id:  # its allow policy (app-scoped) goes with it
        await step(f"removing the Access application of {hostname}", core.delete_access_app(account_id, app_id))
    st.set(access_app_id=None, access_policy_ids=None)


async def remove_token(ctx: Context, core: CloudflareCore, account_id: str, st: s.RouteState, *,
                       lookup: bool) -> None:
    token_id = st.get("service_token_id")
    if not token_id and lookup:
        token = await step("finding the service token", core.find_service_token(
            account_id, a.token_name(st.hostname, core.owner_id)))
        token_id = token.id if token is not None else ""
    if token_id:
        await step(f"removing the service token of {st.hostname}", core.delete_service_token(account_id, token_id))
    secret = st.get("service_token_secret_name")
    if secret:
        await kube.delete_namespaced(ctx.api, "Secret", st.route_namespace, secret)
    st.set(service_token_id=None, service_token_secret_name=None)


async def teardown(ctx: Context, st: s.RouteState, events: EventSink) -> None:
    """Remove everything `st` records, then the token Secret and the state itself. Raises a Problem (state
    kept, the sweep retries) when Cloudflare cannot be reached; a tenant that no longer exists leaves its
    Cloudflare objects in place (nothing can reach them) and only the Kubernetes side is removed."""
    hostname = st.hostname
    holder = await lookups.published_by_other(ctx, st.route_namespace, st.route_name, hostname) if hostname else None
    if holder is not None:
        events.normal("HostnameHandedOver", f"{hostname} is published by HTTPRoute {holder} now: left in Cloudflare")
    elif hostname:
        try:
            tenant = await lookups.find_tenant(ctx, st.tenant, st.route_namespace)
        except Problem as problem:
            if problem.reason != c.TENANT_NOT_FOUND:
                raise
            logger.warning("Tenant %r is gone: Cloudflare objects of %s are left in place", st.tenant, hostname)
            events.warning(c.TENANT_NOT_FOUND, f"{problem.message}: the Cloudflare objects of {hostname} are left "
                           "in place")
        else:
            core = await lookups.core_for(ctx, tenant)
            lookup = not st.published
            await unpublish_routing(core, tenant.account_id, st, events)
            await remove_access(core, tenant.account_id, st, lookup=lookup)
            await remove_token(ctx, core, tenant.account_id, st, lookup=lookup)
            events.normal("Unpublished", f"{hostname}: DNS record, tunnel rule, Access application and service token "
                          "removed")
    secret = st.get("service_token_secret_name")
    if secret:
        await kube.delete_namespaced(ctx.api, "Secret", st.route_namespace, secret)
    await s.delete(ctx.api, ctx.operator_namespace, st.route_namespace, st.route_name)
