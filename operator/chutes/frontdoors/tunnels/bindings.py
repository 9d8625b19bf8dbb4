"""Reconcile a TunnelBinding: for each subject a hostname claim (one holder across every door), an Access
application and policy first when the binding's Access annotations ask for one, then the rule and a proxied CNAME
marked for the binding. The rule goes through the core's co-owned tunnel-config writer (no cloudflared restart),
or, for a locally configured tunnel, into its ConfigMap (:mod:`local`: the ingress regenerated, cloudflared
restarted; never a configuration PUT). Subjects are published concurrently, so the writers coalesce them (one
configuration PUT or ConfigMap write, one DNS batch). A subject removed from the binding, or the binding deleted,
loses its rule, its records and its Access application (in that order), each only as its claim proves ours.

Bad input (a missing tunnel or Service, a Service without ports, an invalid protocol, an FQDN outside the zone or
held by a foreign record) is found before anything is written: nothing else is touched.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.authorization import HostnameRules
from chutes.claims import Claim, ClaimStore, claims_for
from chutes.cloudflare_core import (
    AccessAppSpec,
    AppPolicySpec,
    CloudflareCore,
    CloudflareError,
    Conflict,
    DesiredRecord,
    DnsRecord,
    IngressRule,
    NotFound,
    Tunnel,
    cname_target,
)
from chutes.cloudflare_core.ownership import owned_name
from chutes.cloudflare_core.ownership import parse as parse_marker
from chutes.cores import CorePool
from chutes.frontdoors import claiming
from chutes.frontdoors.problems import EventSink, Problem, problem_from_cloudflare, step
from chutes.frontdoors.retries import CONFIG_RETRY, MISSING_RETRY
from chutes.frontdoors.status_writer import StatusWriter, reported
from chutes.frontdoors.tunnels import local
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels import tunnels as t
from chutes.frontdoors.tunnels.account import Account, load_account
from chutes.observability import metrics


@dataclass(frozen=True)
class Route:
    subject: m.Subject
    service: str  # the rule's service (origin)


@dataclass(frozen=True)
class Gathered:
    spec: m.TunnelSpec
    account: Account
    tunnel: Tunnel
    routes: list[Route]
    dns: bool
    emails: tuple[str, ...]
    domains: tuple[str, ...]
    local: local.Target | None = None  # a locally configured tunnel: its ConfigMap


async def _tunnel_of(api: client.ApiClient, body: Mapping[str, Any], resource_namespace: str,
                     owner_id: str) -> m.TunnelSpec:
    namespace = body["metadata"]["namespace"]
    try:
        kind, name, _ = m.tunnel_ref(body)
    except m.SpecError as exc:
        raise Problem(exc.reason, str(exc), None) from None
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


async def gather(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                 resource_namespace: str, shared_targets: Collection[str] = ()) -> Gathered:
    """Everything the binding needs, read once; any bad input raises its Problem here (nothing written yet).
    `shared_targets`: the hosts a subject may target through a ClusterTunnel besides its namespace's Services."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    spec = await _tunnel_of(api, body, resource_namespace, cores.owner_id)
    try:
        _, _, no_dns = m.tunnel_ref(body)
        subjects = m.parse_subjects(body, spec.domain)
        emails, domains = m.access_lists(meta.get("annotations"))
    except m.SpecError as exc:
        raise Problem(exc.reason, str(exc), None) from None
    routes = []
    for subject in subjects:
        shared_problem = None if spec.cr_namespace == namespace or not subject.target else \
            m.shared_target_problem(subject.target, namespace, shared_targets)
        if shared_problem is not None:
            raise Problem(c.INVALID_SPEC, f"subject {subject.name}: {shared_problem}", None)
        service = None if subject.target else await kube.read_service(api, namespace, subject.name)
        try:
            origin = m.origin(subject.protocol, subject.target, service, namespace, subject.name)
            IngressRule(hostname=subject.fqdn, service=origin, path=subject.path)
        except m.SpecError as exc:
            raise Problem(exc.reason, str(exc), MISSING_RETRY if exc.reason == c.SERVICE_NOT_FOUND else None) from None
        except CloudflareError as exc:  # InvalidInput: a target cloudflared would not accept
            raise Problem(c.INVALID_SPEC, f"subject {subject.name}: {exc}", None) from None
        routes.append(Route(subject, origin))
    account = await load_account(api, cores, spec, verify=False)
    tunnel = await t.find_tunnel(account, spec, claims, read=False)
    return Gathered(spec, account, tunnel, routes, not no_dns, emails, domains,
                    local_target(api, spec, account, tunnel))


def local_target(api: client.ApiClient, spec: m.TunnelSpec, account: Account, tunnel: Tunnel) -> local.Target | None:
    """The ConfigMap the rules go to when the tunnel is locally configured (None: remotely managed)."""
    if not t.is_local(spec, tunnel):
        return None
    return local.target_for(api, spec, tunnel.id, dry_run=account.core.dry_run)


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


def app_name(fqdn: str, owner_id: str) -> str:
    return owned_name(f"tunnelbinding-{fqdn}", owner_id)


async def reconcile_binding(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                            status: StatusWriter, events: EventSink, resource_namespace: str,
                            rules: HostnameRules | None = None,
                            shared_targets: Collection[str] = ()) -> None:
    async with reported(status):
        await _reconcile(api, cores, claims, body, status, events, resource_namespace, rules, shared_targets)


async def _reconcile(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                     status: StatusWriter, events: EventSink, resource_namespace: str,
                     rules: HostnameRules | None, shared_targets: Collection[str]) -> None:
    meta = body["metadata"]
    source = m.binding_source(meta["namespace"], meta["name"])
    found = await gather(api, cores, claims, body, resource_namespace, shared_targets)

    async def finalizer() -> None:
        await kube.add_finalizer(api, m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, meta["name"], meta["namespace"],
                                 m.FINALIZER)

    idp = await publish(found, source, claims, events, finalizer, rules)
    fqdns = [route.subject.fqdn for route in found.routes]
    status.set(hostnames=m.hostnames_status(fqdns), observedGeneration=status.generation,
               services=[{"hostname": r.subject.fqdn, "target": r.service} for r in found.routes])
    status.condition(c.TUNNEL_READY, "True", c.RECONCILED, f"{len(fqdns)} rule(s) in tunnel {found.tunnel.name}")
    status.condition(c.DNS_READY, "True", c.RECONCILED,
                     "CNAMEs " + ", ".join(fqdns) if found.dns else "tunnelRef.disableDNSUpdates: no DNS records")
    status.condition(c.ACCESS_READY, "True", c.RECONCILED if idp is not None else c.PUBLIC,
                     "behind Access" if idp is not None else "no Access annotations: public")
    status.condition(c.READY, "True", c.RECONCILED, f"published {', '.join(fqdns)}")


async def publish(found: Gathered, source: str, claims: ClaimStore, events: EventSink,
                  before_writing: Callable[[], Awaitable[None]] | None = None,
                  rules: HostnameRules | None = None) -> str | None:
    """Publish `found.routes` for `source` (a TunnelBinding or an annotated Service) and withdraw the hostnames it
    no longer routes; the one-time PIN provider's id when behind Access. Every hostname is held and checked before
    anything is written (`before_writing` then runs: the binding's finalizer). A hostname outside the operator's
    hostname `rules` for the source's namespace withdraws everything the source published (HostnameNotAuthorized)."""
    core, account_id, zone_id = found.account.core, found.account.account_id, found.account.zone.id
    claims = claims_for(claims, dry_run=core.dry_run)
    namespace = source.split("/")[1]
    refused = [] if rules is None else [r.subject.fqdn for r in found.routes
                                        if not rules.allows(namespace, r.subject.fqdn)]
    if refused and rules is not None:
        await withdraw(core, claims, source, account_id, zone_id, events)
        raise Problem(c.HOSTNAME_NOT_AUTHORIZED, rules.explain(namespace, refused[0]), None)
    # Check every hostname before writing anything: one holder per hostname, no foreign record in the way.
    held: dict[str, Claim] = {}
    try:
        for route in found.routes:
            held[route.subject.fqdn] = await claiming.hold(claims, "hostname", route.subject.fqdn, source)
        taken: list[str | None] = []
        if found.dns:
            taken = list(await asyncio.gather(*(_check_name(core, zone_id, fqdn, source, found.tunnel.id)
                                                for fqdn in held)))
    except Problem:
        for claim in held.values():
            if claim.fresh and not claim.entries:
                await claims.release(claim)
        raise
    if before_writing is not None:
        await before_writing()
    idp = None
    if found.emails or found.domains:
        idp = await step("ensuring the one-time PIN identity provider", core.ensure_otp_idp(account_id))
    await asyncio.gather(*(_publish(found, route, held[route.subject.fqdn], claims, events,
                                    idp.id if idp is not None else None) for route in found.routes))
    # adyanth's ownership TXT of each CNAME taken over goes once the CNAME is ours (marked for this source).
    for fqdn, txt in zip(held, taken, strict=False):
        if txt is not None:
            await step(f"removing adyanth's {txt}", core.delete_dns_record(zone_id, txt, "TXT", source))
            events.normal(c.DNS_RECORD_REMOVED, f"TXT {txt} (adyanth's ownership record for {fqdn}) removed")
    # Hostnames no longer routed: rule, records, then Access (each proven by the claim), all at once (coalesced).
    wanted = {route.subject.fqdn for route in found.routes}
    await withdraw(core, claims, source, account_id, zone_id, events, keep=wanted)
    metrics.HOSTNAMES.publish(m.FRONT_DOOR, source, wanted)
    return idp.id if idp is not None else None


async def withdraw(core: CloudflareCore, claims: ClaimStore, source: str, account_id: str, zone_id: str,
                   events: EventSink, keep: Collection[str] = ()) -> None:
    """Tear down every hostname claim of `source` but those in `keep`: rule, records, then Access, at once."""
    gone = [claim for claim in await claims.list(kind="hostname", source=source) if claim.key not in keep]
    in_config = [claim for claim in gone if local.is_local(claim)]
    gone = await local.drop_rules(claims, gone)  # rules in a ConfigMap leave it first
    for claim in in_config:
        events.normal(c.TUNNEL_RULE_REMOVED, f"tunnel rule for {claim.key} removed from ConfigMap "
                      f"{(claim.entry(claiming.TUNNEL_RULE) or {}).get(local.ENTRY_CONFIG)}")
    try:
        teardowns = await asyncio.gather(*(claiming.tear_down_hostname(
            core, claims, claim, account_id=account_id, zone_id=zone_id) for claim in gone))
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"removing what {source} published") from exc
    for claim, done in zip(gone, teardowns, strict=True):
        t.say_teardown(events, done)
        if done.removed and keep:
            events.normal(c.HOSTNAME_REMOVED, f"{claim.key} is no longer published")
    if not keep:
        metrics.HOSTNAMES.forget(m.FRONT_DOOR, source)


async def _publish(found: Gathered, route: Route, claim: Claim, claims: ClaimStore, events: EventSink,
                   idp: str | None) -> None:
    """One subject: Access (when asked), then the rule, then the CNAME; Access dropped last when no longer asked."""
    core, account_id, zone_id = found.account.core, found.account.account_id, found.account.zone.id
    fqdn, source = route.subject.fqdn, claim.source
    before = claim
    if idp is not None:
        name = app_name(fqdn, core.owner_id)
        if not (claim.entry(claiming.ACCESS_APP) or {}).get("since"):
            claim = await claims.intend(claim, claiming.ACCESS_APP, account=account_id, name=name)
        allow = AppPolicySpec(name=m.POLICY_NAME, decision="allow",
                              include=tuple(m.policy_include(found.emails, found.domains)))
        app = await step("ensuring the Access application", core.ensure_access_app(account_id, AccessAppSpec(
            name=name, domain=fqdn, allowed_idps=(idp,), auto_redirect_to_identity=True,
        ), claim.recorded(claiming.ACCESS_APP), policy=allow))
        if (claim.entry(claiming.ACCESS_APP) or {}).get("id") != app.id:
            claim = await claims.complete(claim, claiming.ACCESS_APP, app.id, account=account_id, name=name)
            events.normal(c.ACCESS_APPLICATION_READY, f"Access application {name} for {fqdn}")
        policy = await step("ensuring the Access policy", core.ensure_app_policy(account_id, app.id, allow))
        if (claim.entry(claiming.ACCESS_POLICY) or {}).get("id") != policy.id:
            claim = await claims.complete(claim, claiming.ACCESS_POLICY, policy.id, app=app.id)
    options = dict(route.subject.origin_request)
    if not found.spec.is_new and found.local is None:  # co-owned: the Tunnel's origin options go on our rules
        options = {**m.tunnel_origin_request(found.spec), **options}
    rule = IngressRule(hostname=fqdn, service=route.service, path=route.subject.path, origin_request=options or None)
    recorded = claim.entry(claiming.TUNNEL_RULE) or {}
    try:
        if found.local is not None:
            claim = await local.write_rule(found.local, claims, claim, account_id, rule)
        else:
            claim = await step("writing the tunnel ingress rule", claiming.write_rule(
                core, claims, claim, before, account_id, found.tunnel.id, rule))
    except Problem as problem:
        if not isinstance(problem.__cause__, NotFound):
            raise
        # The tunnel read at the start of this pass is gone (its Tunnel deleted and made again meanwhile, or deleted
        # behind our back): not a rejection of the rule; the next pass reads the tunnel again.
        raise Problem(t.TUNNEL_NOT_READY, f"{found.spec.kind} {found.spec.name}: tunnel {found.tunnel.id} is gone",
                      CONFIG_RETRY) from None
    if recorded.get("service") != route.service or recorded.get("tunnel") != found.tunnel.id:
        events.normal(c.TUNNEL_RULE_READY, f"tunnel ingress rule {fqdn} → {route.service}")
    if found.dns:
        entry = claim.entry(claiming.DNS) or {}
        if not entry.get("since") or entry.get("zone") != zone_id:
            claim = await claims.intend(claim, claiming.DNS, zone=zone_id, type="CNAME")
        target = cname_target(found.tunnel.id)
        record = await step(f"ensuring the CNAME for {fqdn}", core.ensure_dns_record(
            zone_id, DesiredRecord(name=fqdn, type="CNAME", content=target, proxied=True, source=source)))
        if entry.get("id") != record.id:
            claim = await claims.complete(claim, claiming.DNS, record.id, zone=zone_id, type="CNAME")
            events.normal(c.DNS_RECORD_READY, f"proxied CNAME {fqdn} → {target}")
    elif claim.entry(claiming.DNS) is not None:  # DNS updates switched off: our record goes
        claim, done = await claiming.remove_object(core, claims, claim, claiming.DNS, account_id=account_id,
                                                   zone_id=zone_id)
        t.say_teardown(events, done)
    if idp is None and claim.entry(claiming.ACCESS_APP) is not None:  # Access switched off: after routing
        claim, done = await claiming.remove_object(core, claims, claim, claiming.ACCESS_APP, account_id=account_id)
        t.say_teardown(events, done)


async def delete_binding(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                         events: EventSink, resource_namespace: str) -> None:
    """Remove what the binding published (its claims: rule, records, Access, in that order), then the finalizer."""
    meta = body["metadata"]
    source = m.binding_source(meta["namespace"], meta["name"])
    if await claims.list(kind="hostname", source=source):
        try:
            spec = await _tunnel_of(api, body, resource_namespace, cores.owner_id)
            account = await load_account(api, cores, spec, verify=False)
        except Problem as problem:
            raise Problem(c.DELETING, f"cannot remove the Cloudflare objects: {problem.message}. Restore it, or "
                          f"remove the finalizer {m.FINALIZER} to abandon them.", problem.delay or MISSING_RETRY
                          ) from None
        core = account.core
        await withdraw(core, claims_for(claims, dry_run=core.dry_run), source, account.account_id, account.zone.id,
                       events)
    await kube.remove_finalizer(api, m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, meta["name"], meta["namespace"],
                                m.FINALIZER)
