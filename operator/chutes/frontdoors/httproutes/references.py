"""What a route refers to: its tenant and templates (route namespace, then the operator namespace), the
tenant's credentials, the zone of its hostname, the IP of a DNS-only record, and who else
claims its hostname. Reads only; nothing here writes to Cloudflare or Kubernetes.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from typing import Any

from chutes import conditions as c
from chutes import kube
from chutes.cloudflare_core import CloudflareCore, CloudflareError, NotFound, Zone, token_defect
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.httproutes.merge import RouteSettings
from chutes.frontdoors.problems import EventSink, Problem, step
from chutes.frontdoors.retries import CREDENTIALS_RETRY, MISSING_RETRY

logger = logging.getLogger(__name__)



async def find_in_namespaces(ctx: Context, plural: str, name: str, namespace: str) -> dict[str, Any] | None:
    """The object in the route's namespace, else in the operator's."""
    found = await _get(ctx, plural, name, namespace)
    if found is None and namespace != ctx.operator_namespace:
        found = await _get(ctx, plural, name, ctx.operator_namespace)
    return found


async def _get(ctx: Context, plural: str, name: str, namespace: str) -> dict[str, Any] | None:
    """One of our custom objects, read once per batch (:attr:`Context.lookups`); a failed read is not kept."""
    if ctx.lookups is None:
        return await kube.get_custom(ctx.api, a.GROUP, a.VERSION, plural, name, namespace)
    key = (plural, namespace, name)
    read = ctx.lookups.get(key)
    if read is None:
        read = ctx.lookups[key] = asyncio.ensure_future(
            kube.get_custom(ctx.api, a.GROUP, a.VERSION, plural, name, namespace))
        read.add_done_callback(_retrieved)
    try:
        return copy.deepcopy(await asyncio.shield(read))  # (a cancelled caller leaves the read to the others)
    except Exception:
        if ctx.lookups.get(key) is read:
            del ctx.lookups[key]
        raise


def _retrieved(read: asyncio.Future[dict[str, Any] | None]) -> None:
    """A shared read whose callers were all cancelled (the operator stopping) fails unheard, not as an error."""
    if not read.cancelled():
        read.exception()


async def find_tenant(ctx: Context, name: str, namespace: str) -> d.Tenant:
    body = await find_in_namespaces(ctx, a.TENANT_PLURAL, name, namespace)
    if body is None:
        raise Problem(c.TENANT_NOT_FOUND, f"{a.TENANT_KIND} {name!r} not found in namespace {namespace} or "
                      f"{ctx.operator_namespace}", None)  # its creation reconciles the routes naming it
    try:
        return d.tenant_from_body(body)
    except d.TenantError as exc:
        raise Problem(c.TENANT_INVALID, str(exc), None) from None


async def find_template(ctx: Context, name: str, namespace: str, *, required: bool) -> dict[str, Any] | None:
    body = await find_in_namespaces(ctx, a.TEMPLATE_PLURAL, name, namespace)
    if body is None and required:
        raise Problem(c.TEMPLATE_NOT_FOUND, f"{a.TEMPLATE_KIND} {name!r} not found in namespace {namespace} or "
                      f"{ctx.operator_namespace}: not published until it exists", None)  # its creation reconciles
    return body


async def core_for(ctx: Context, tenant: d.Tenant) -> CloudflareCore:
    where = f"Secret {tenant.namespace}/{tenant.credential_name}"
    try:
        token = await kube.read_secret_value(ctx.api, tenant.namespace, tenant.credential_name, tenant.credential_key)
    except KeyError:
        raise Problem(c.SECRET_KEY_MISSING, f"{where} (credentialRef of tenant {tenant.ref}) has no key "
                      f"{tenant.credential_key!r}", MISSING_RETRY) from None
    if token is None:
        raise Problem(c.SECRET_NOT_FOUND, f"{where} (credentialRef of tenant {tenant.ref}) does not exist",
                      MISSING_RETRY)
    token = token.strip()
    if not token:
        raise Problem(c.SECRET_KEY_MISSING, f"{where} key {tenant.credential_key!r} is empty", MISSING_RETRY)
    defect = token_defect(token)
    if defect is not None:  # refused before any client holds it; the message names no character of it
        raise Problem(c.CREDENTIALS_INVALID, f"{where} key {tenant.credential_key!r} (credentialRef of tenant "
                      f"{tenant.ref}): the API token {defect}", CREDENTIALS_RETRY)
    return ctx.cores.core_for(token)


async def resolve_zone(core: CloudflareCore, tenant: d.Tenant, hostname: str, hint: str | None) -> Zone:
    """The tenant's zone (``spec.zoneId``, checked: the seed never did), else the zone of the account holding
    the hostname. A hostname outside it is refused."""
    if tenant.zone_id:
        zone = await _zone(core, tenant.zone_id)
        if zone is None:
            raise Problem(c.TENANT_INVALID, f"zone {tenant.zone_id} of tenant {tenant.ref} does not exist or the "
                          "token cannot read it", None)
        if not d.in_zone(hostname, zone.name):
            raise Problem(c.HOSTNAME_OUTSIDE_ZONE, f"{hostname} is not inside zone {zone.name} of tenant {tenant.ref}",
                          None)
        return zone
    hinted = await _zone(core, hint) if hint else None
    if hinted is not None and d.in_zone(hostname, hinted.name) and hinted.account_id in ("", tenant.account_id):
        return hinted
    elsewhere: list[str] = []
    for candidate in d.zone_candidates(hostname):
        found = await step(f"looking up zone {candidate}", core.find_zone(candidate))
        if found is None:
            continue
        if found.account_id in ("", tenant.account_id):
            return found
        elsewhere.append(f"{found.name} (account {found.account_id})")
    detail = f"; {', '.join(elsewhere)} belongs to another account" if elsewhere else ""
    raise Problem(c.HOSTNAME_OUTSIDE_ZONE, f"no zone of account {tenant.account_id} (tenant {tenant.ref}) contains "
                  f"{hostname}{detail}", None)


async def _zone(core: CloudflareCore, zone_id: str) -> Zone | None:
    try:
        return await core.get_zone(zone_id)
    except NotFound:
        return None
    except CloudflareError as exc:
        raise Problem(c.CLOUDFLARE_UNAVAILABLE, f"reading zone {zone_id}: {exc}", 30.0) from exc


async def resolve_ip(ctx: Context, settings: RouteSettings) -> str:
    """The DNS-only address: ``dnsIp`` / ``dnsOnly.staticIp``, else the LoadBalancer IP of the Service."""
    dns_only = settings.dns_only
    if dns_only.static_ip:
        return dns_only.static_ip
    ref = dns_only.ingress_service
    if ref is None:
        raise Problem(c.INVALID_SPEC, f"DNS-only mode needs {a.DNS_IP}, dnsOnly.staticIp or "
                      "dnsOnly.ingressServiceRef", None)
    service = await kube.read_service(ctx.api, ref.namespace, ref.name)
    if service is None:
        raise Problem(c.SERVICE_NOT_FOUND, f"Service {ref.namespace}/{ref.name} (dnsOnly.ingressServiceRef) does "
                      "not exist", MISSING_RETRY)
    ingress = (((service.get("status") or {}).get("loadBalancer") or {}).get("ingress")) or []
    address = next((item.get("ip") for item in ingress if isinstance(item, Mapping) and item.get("ip")), None)
    if not address:
        kind = (service.get("spec") or {}).get("type") or "ClusterIP"
        detail = "" if kind == "LoadBalancer" else f" (it is of type {kind}, not LoadBalancer)"
        raise Problem(c.LOAD_BALANCER_PENDING, f"Service {ref.namespace}/{ref.name} has no LoadBalancer IP yet"
                      f"{detail}", MISSING_RETRY)
    try:
        return a.parse_ip(f"Service {ref.namespace}/{ref.name} LoadBalancer IP", address)
    except a.ValueProblem as exc:
        raise Problem(c.INVALID_SPEC, str(exc), MISSING_RETRY) from None


async def hostname_winner(ctx: Context, me: d.RouteRef, others: list[d.RouteRef], hostname: str,
                          previous: s.RouteState | None) -> d.RouteRef:
    """The route the door prefers for a *free* hostname claim among `me` and the `others` asking for it (see
    :func:`desired.claim_winner`: the one whose state says it published it, else the oldest)."""
    holders: set[tuple[str, str]] = set()
    if previous is not None and previous.published and previous.hostname == hostname:
        holders.add(me.key)
    for other in others:
        theirs = await s.read(ctx.api, ctx.operator_namespace, other.namespace, other.name)
        if theirs is not None and theirs.published and theirs.hostname == hostname:
            holders.add(other.key)
    return d.claim_winner([me, *others], holders)


async def reachable_tenant(ctx: Context, tenant_name: str, namespace: str, name: str,
                           events: EventSink) -> d.Tenant | None:
    """The tenant whose token reaches the route's objects; None (with a Warning) when it is gone or unusable."""
    if not tenant_name:
        logger.warning("HTTPRoute %s/%s: no tenant known: its claims are left to the orphan sweep", namespace, name)
        return None
    try:
        return await find_tenant(ctx, tenant_name, namespace)
    except Problem as problem:
        if problem.reason not in (c.TENANT_NOT_FOUND, c.TENANT_INVALID):
            raise
        logger.warning("HTTPRoute %s/%s: %s: its Cloudflare objects are left in place", namespace, name,
                       problem.message)
        events.warning(problem.reason, f"{problem.message}: the Cloudflare objects of HTTPRoute {namespace}/{name} "
                       "are left in place")
        return None
