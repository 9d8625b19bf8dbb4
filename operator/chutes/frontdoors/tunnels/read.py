"""The *read* step of a TunnelBinding or annotated Service: everything :mod:`decide` needs, read once.

:func:`gather` reads Kubernetes first (the binding's (Cluster)Tunnel, its Services), then the account and the
tunnel (through the core's caches: no listing per binding). A subject that cannot be served (a missing Service,
a Service without ports, an invalid protocol or target) raises its Problem here, before anything else is read.
:func:`hold_names` runs only once the first checks passed: it holds the source's claim on each hostname (one
holder across every door) and checks each name in the zone through the core (a foreign record refuses it, except
a CNAME that adyanth's operator provably made for this very tunnel: taken over, its TXT to be removed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.claims import Claim, ClaimStore
from chutes.cloudflare_core import (
    AppPolicySpec,
    CloudflareCore,
    CloudflareError,
    Conflict,
    DnsRecord,
    IngressRule,
    Tunnel,
    cname_target,
)
from chutes.cloudflare_core.ownership import parse as parse_marker
from chutes.cores import CorePool
from chutes.frontdoors import claiming
from chutes.frontdoors.problems import Problem, problem_from_cloudflare, refused
from chutes.frontdoors.retries import MISSING_RETRY
from chutes.frontdoors.specs import email_include
from chutes.frontdoors.tunnels import local
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels import tunnel_read as t
from chutes.frontdoors.tunnels.account import Account, load_account
from chutes.frontdoors.tunnels.decide import Route

__all__ = ["Gathered", "gather", "hold_names", "local_target", "route", "tunnel_of"]


@dataclass(frozen=True)
class Gathered:
    spec: m.TunnelSpec
    account: Account
    tunnel: Tunnel
    routes: tuple[Route, ...]
    dns: bool
    allow: AppPolicySpec | None  # the Access policy, when the annotations ask for Access
    local: local.Target | None = None  # a locally configured tunnel: its ConfigMap


async def tunnel_of(api: client.ApiClient, body: Mapping[str, Any], resource_namespace: str,
                    owner_id: str) -> m.TunnelSpec:
    namespace = body["metadata"]["namespace"]
    with refused():
        kind, name, _ = m.tunnel_ref(body)
    plural = m.CLUSTER_PLURAL if kind == m.CLUSTER_KIND else m.TUNNEL_PLURAL
    found = await kube.get_custom(api, m.GROUP, m.VERSION, plural, name,
                                  None if kind == m.CLUSTER_KIND else namespace)
    where = name if kind == m.CLUSTER_KIND else f"{namespace}/{name}"
    if found is None:
        raise Problem(t.TUNNEL_NOT_FOUND, f"{kind} {where} does not exist", MISSING_RETRY)
    if found["metadata"].get("deletionTimestamp"):
        raise Problem(t.TUNNEL_NOT_READY, f"{kind} {where} is being deleted", MISSING_RETRY)
    found.setdefault("kind", kind)
    return t.parse(found, resource_namespace, owner_id)


def route(spec: m.TunnelSpec, subject: m.Subject, origin: str, local_config: bool) -> Route:
    """The subject's rule: a co-owned (existing, remotely managed) tunnel's origin options go on our rules."""
    options = dict(subject.origin_request)
    if not spec.is_new and not local_config:
        options = {**m.tunnel_origin_request(spec), **options}
    try:
        rule = IngressRule(hostname=subject.fqdn, service=origin, path=subject.path, origin_request=options or None)
    except CloudflareError as exc:  # InvalidInput: a target cloudflared would not accept
        raise Problem(c.INVALID_SPEC, f"subject {subject.name}: {exc}", None) from None
    return Route(subject, origin, rule)


def allow_policy(annotations: Mapping[str, Any] | None) -> AppPolicySpec | None:
    with refused():
        emails, domains = m.access_lists(annotations)
    if not emails and not domains:
        return None
    return AppPolicySpec(name=m.POLICY_NAME, decision="allow", include=tuple(email_include(emails, domains)))


async def gather(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                 resource_namespace: str) -> Gathered:
    """Everything the binding needs but its names; any bad input raises its Problem here (nothing written)."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    spec = await tunnel_of(api, body, resource_namespace, cores.owner_id)
    with refused():
        _, _, no_dns = m.tunnel_ref(body)
        subjects = m.parse_subjects(body, spec.domain)
    allow = allow_policy(meta.get("annotations"))
    origins = []
    for subject in subjects:
        service = None if subject.target else await kube.read_service(api, namespace, subject.name)
        try:
            origins.append(m.origin(subject.protocol, subject.target, service, namespace, subject.name))
        except m.SpecError as exc:
            raise Problem(exc.reason, str(exc), MISSING_RETRY if exc.reason == c.SERVICE_NOT_FOUND else None) from None
    account = await load_account(api, cores, spec, verify=False)
    tunnel = await t.find_tunnel(account, spec, claims, read=False)
    target = local_target(api, spec, account, tunnel)
    routes = tuple(route(spec, subject, origin, target is not None) for subject, origin in zip(subjects, origins,
                                                                                              strict=True))
    return Gathered(spec, account, tunnel, routes, not no_dns, allow, target)


def local_target(api: client.ApiClient, spec: m.TunnelSpec, account: Account, tunnel: Tunnel) -> local.Target | None:
    """The ConfigMap the rules go to when the tunnel is locally configured (None: remotely managed)."""
    if not t.is_local(spec, tunnel):
        return None
    return local.target_for(api, spec, tunnel.id, dry_run=account.core.dry_run)


async def hold_names(found: Gathered, source: str, claims: ClaimStore
                     ) -> tuple[dict[str, Claim], dict[str, str], tuple[Problem, ...]]:
    """The source's claim on each routed hostname, and (with DNS) each name checked: adyanth's TXT to remove
    ("" for none) by hostname; or the first conflict, with the claims acquired here released."""
    core, zone_id = found.account.core, found.account.zone.id
    held: dict[str, Claim] = {}
    try:
        for item in found.routes:
            held[item.subject.fqdn] = await claiming.hold(claims, "hostname", item.subject.fqdn, source)
        taken: Sequence[str | None] = [None] * len(held)
        if found.dns:
            taken = await asyncio.gather(*(_check_name(core, zone_id, fqdn, source, found.tunnel.id)
                                           for fqdn in held))
    except Problem as problem:
        for claim in held.values():
            if claim.fresh and not claim.entries:
                await claims.release(claim)
        return held, {}, (problem,)
    return held, {fqdn: txt or "" for fqdn, txt in zip(held, taken, strict=True)}, ()


async def _check_name(core: CloudflareCore, zone_id: str, fqdn: str, source: str, tunnel_id: str) -> str | None:
    """Refuse an FQDN held by a record that is not ours for the binding (HostnameConflict), except a CNAME that
    adyanth's operator made for this very tunnel: its ``_managed.<fqdn>`` TXT names the CNAME's id and this
    tunnel, and the CNAME points at it. Such a CNAME and its TXT are marked as the binding's (taken over without
    ``adopt``); the TXT's name is returned, for deleting once the CNAME is published."""
    try:
        await core.check_dns_name_available(zone_id, fqdn, source)
        return None
    except Conflict as conflict:
        problem = problem_from_cloudflare(conflict, f"checking DNS for {fqdn}")
        try:
            proof = await _adyanth_proof(core, zone_id, fqdn, tunnel_id)
        except CloudflareError as exc:
            raise problem_from_cloudflare(exc, f"reading adyanth's ownership record of {fqdn}") from exc
        if proof is None:
            raise problem from None
    cname, txt = proof
    try:
        await core.check_dns_name_available(zone_id, fqdn, source, proven_ids=(cname.id,))
        if await core.adopt_dns_record(zone_id, txt.id, txt.name, source) is None:
            return None
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"taking over adyanth's CNAME {fqdn}") from exc
    return txt.name


async def _adyanth_proof(core: CloudflareCore, zone_id: str, fqdn: str,
                         tunnel_id: str) -> tuple[DnsRecord, DnsRecord] | None:
    """(CNAME, TXT) when adyanth's operator provably made the CNAME at `fqdn` for tunnel `tunnel_id`."""
    records = await core.dns_records_named(zone_id, fqdn)
    texts = [r for r in await core.dns_records_named(zone_id, f"_managed.{fqdn}") if r.type == "TXT"]
    if len(texts) != 1 or parse_marker(texts[0].comment) is not None:
        return None
    try:
        owner = json.loads(texts[0].content.strip().strip('"').replace('\\"', '"'))
    except ValueError:
        return None
    if not isinstance(owner, dict) or owner.get("TunnelId") != tunnel_id:
        return None
    cname = next((r for r in records if r.type == "CNAME" and r.id == owner.get("DnsId")), None)
    if cname is None or cname.content != cname_target(tunnel_id) or parse_marker(cname.comment) is not None:
        return None
    return cname, texts[0]
