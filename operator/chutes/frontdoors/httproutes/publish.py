"""Reconcile one enabled HTTPRoute: gather (tenant, templates, settings, state), decide, act, record.

Order: everything that can be refused is checked before anything is written to Cloudflare (tenant, templates,
values, credentials, the ownership marker, the hostname claim, zone, the DNS-only address, a DNS record that is
not the route's, the reusable policies). The hostname claim in the ledger (:mod:`chutes.claims`) is the
authority on who holds a hostname, across every front door; a claim this reconcile created is released again
when a later check refuses the route (nothing was written). Then what the route published under another
hostname or tenant is torn down from its claims (routing first), and Access application and allow policy →
service token → tunnel rule → DNS record, each recorded in the claim before it is created and completed after,
so a protected hostname is routable only once its protection exists; then what the new settings do not want,
removed through the claim's entries (routing before Access). An unknown ``existingPolicyNames`` entry fails
closed: the hostname is not published, and unpublished if it was. So is a hostname outside the operator's
hostname rules (checked first of all, once the hostname is known).

The route's adoption annotation is honoured only when the operator permits it (:func:`adoption.permitted`).

The seed's annotation hash decides whether a route event needs Cloudflare at all; the periodic resync
passes ``force=True`` and checks (and repairs) everything: its writes for inputs published already are
counted as drift repairs. Under dry-run the core writes nothing, and neither the ledger nor the state records
anything: a route whose state would change says ``DryRun`` with what would be published.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chutes import conditions as c
from chutes import kube
from chutes.claims import Claim, ClaimLost, ClaimStore
from chutes.cloudflare_core import (
    AccessApp,
    CloudflareCore,
    CloudflareError,
    Conflict,
    IngressRule,
    InvalidInput,
    MarkerTooLong,
    Policy,
    marker,
)
from chutes.frontdoors import adoption, claiming, repairs
from chutes.frontdoors.claiming import ACCESS_APP, ACCESS_POLICY, DNS, SERVICE_TOKEN, TUNNEL_RULE
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import dns_records, ledger, references, status
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes import teardown as t
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.httproutes.merge import MergeError, NamedSpec, RouteSettings, annotation_hash, merge
from chutes.frontdoors.httproutes.problems import EventSink, Problem, problem_from_cloudflare, step
from chutes.frontdoors.httproutes.report import RouteReport
from chutes.frontdoors.retries import FOREIGN_RETRY, LOST_RETRY, MISSING_RETRY, POLICY_RETRY
from chutes.observability import metrics

logger = logging.getLogger(__name__)

FRONT_DOOR = "httproutes"
UNCHANGED = "unchanged"
PUBLISHED = "published"
IGNORED = "ignored"


async def reconcile_route(ctx: Context, route: Mapping[str, Any], events: EventSink, *, force: bool) -> str:
    """Publish the route as its annotations and templates say; raises :class:`Problem` (after recording it
    in the route's conditions, with a Warning Event when it is new)."""
    meta = route["metadata"]
    if not a.is_enabled(meta.get("annotations")) or meta.get("deletionTimestamp"):
        return IGNORED
    report = RouteReport(route)
    source = f"HTTPRoute/{meta['namespace']}/{meta['name']}"
    try:
        outcome, hostname = await _reconcile(ctx, route, report, events, force=force)
        metrics.HOSTNAMES.publish(FRONT_DOOR, source, [hostname])
        return outcome
    except Problem as problem:
        if problem.reason == c.HOSTNAME_CONFLICT:
            metrics.conflict(FRONT_DOOR)
        if report.is_new(problem.reason, problem.message):
            events.warning(problem.reason, problem.message)
        report.condition("False", problem.reason, problem.message)
        raise
    finally:
        await report.flush(ctx.api)


async def _settings(ctx: Context, route: Mapping[str, Any]) -> tuple[RouteSettings, d.Tenant, str]:
    meta = route["metadata"]
    namespace, annotations = meta["namespace"], dict(meta.get("annotations") or {})
    tenant_name = annotations.get(a.TENANT, "").strip()
    if not tenant_name:
        raise Problem(c.INVALID_SPEC, f"{a.TENANT} is required", None)
    tenant = await references.find_tenant(ctx, tenant_name, namespace)
    template_name = annotations.get(a.TEMPLATE, "").strip()
    template = await references.find_template(ctx, template_name, namespace, required=True) if template_name else None
    base_name = a.base_template_name(tenant_name)
    base = await references.find_template(ctx, base_name, namespace, required=False)
    template_spec = (template or {}).get("spec") or None
    base_spec = (base or {}).get("spec") or None
    try:
        settings = merge(
            annotations,
            route,
            NamedSpec(template_name, template_spec) if template_spec else None,
            NamedSpec(base_name, base_spec) if base_spec else None,
        )
    except MergeError as exc:
        raise Problem(c.INVALID_SPEC, str(exc), None) from None
    return settings, tenant, annotation_hash(annotations, template_spec, base_spec)


async def _reconcile(ctx: Context, route: Mapping[str, Any], report: RouteReport, events: EventSink, *,
                     force: bool) -> tuple[str, str]:
    meta = route["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    settings, tenant, digest = await _settings(ctx, route)
    hostname = settings.hostname
    slot = await s.read_slot(ctx.api, ctx.operator_namespace, namespace, name)  # another route's state: None
    previous = slot.state
    if not ctx.rules.allows(namespace, hostname):
        await _withdraw(ctx, namespace, name, previous, report, events)
        raise Problem(c.HOSTNAME_NOT_AUTHORIZED, ctx.rules.explain(namespace, hostname), None)
    settled = previous is not None and repairs.route_published(previous.published, previous.get("annotation_hash"),
                                                               previous.hostname, digest, hostname)
    if not force and settled and report.ready is not None and report.ready.get("status") == "True":
        return UNCHANGED, hostname
    # The forced resync (or a resume) of inputs published already: whatever it writes is a repair.
    async with ctx.runtime.hostnames(hostname, previous.hostname if previous is not None else ""):
        with repairs.scope(FRONT_DOOR, settled and repairs.is_unprompted()):
            return await _publish(ctx, route, settings, tenant, digest, previous, report, events,
                                  taken=slot.taken), hostname


async def _publish(ctx: Context, route: Mapping[str, Any], settings: RouteSettings, tenant: d.Tenant, digest: str,
                   previous: s.RouteState | None, report: RouteReport, events: EventSink, *,
                   taken: s.StateTaken | None = None) -> str:
    meta = route["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    hostname, source = settings.hostname, a.source(namespace, name)

    # --- checks (nothing written to Cloudflare yet) --------------------------------------------------------
    core = await references.core_for(ctx, tenant)
    try:
        marker(core.owner_id, source)
    except MarkerTooLong as exc:
        raise Problem(c.INVALID_SPEC, exc.message, None) from None
    claims = ledger.store_for(ctx, core)
    await _check_tunnel(claims, settings, tenant)
    try:
        claim = await ledger.hold(ctx, claims, route, hostname, previous)
    except Problem as problem:
        if problem.reason == c.HOSTNAME_CONFLICT and previous is not None and previous.hostname == hostname:
            await _release(ctx, previous, report)
        raise
    if taken is not None:  # its state name holds another route's state: nothing of that route is touched
        if not claim.entries:
            await claims.release(claim)
        raise Problem(c.INVALID_SPEC, str(taken), None)
    try:
        return await _publish_held(ctx, core, claims, claim, route, settings, tenant, digest, previous, report,
                                   events)
    except ClaimLost as lost:  # released under us (e.g. by the orphan sweep): acquired again at the next attempt
        raise Problem(c.CLOUDFLARE_UNAVAILABLE, f"publishing {hostname}: {lost}", LOST_RETRY) from None
    except s.StateTaken as lost_state:  # another route's state written under that name meanwhile
        raise Problem(c.INVALID_SPEC, str(lost_state), None) from None


async def _check_tunnel(claims: ClaimStore, settings: RouteSettings, tenant: d.Tenant) -> None:
    """The ``tunnelId`` annotation may name the tenant's own tunnel or one its ``spec.allowedTunnelIds`` lists
    (whoever writes the tenant decides), and never a tunnel another source's tunnel claim records (a
    ChuteGateway's own tunnel): anything else is ``InvalidSpec``, before anything is written."""
    tunnel = settings.tunnel_id
    if tunnel is None or tunnel == tenant.tunnel_id:
        return
    if not tenant.allows_tunnel(tunnel):
        raise Problem(c.INVALID_SPEC, f"{a.TUNNEL_ID}: tunnel {tunnel} is neither the tunnel of {a.TENANT_KIND} "
                      f"{tenant.ref} nor one its spec.allowedTunnelIds lists: nothing is published; remove the "
                      f"annotation, or have whoever manages {a.TENANT_KIND} {tenant.ref} add {tunnel} to "
                      "spec.allowedTunnelIds", None)
    for found in await claims.list(kind="tunnel"):
        if any(str(entry.get("id") or "").lower() == tunnel for entry in found.entries.values()):
            raise Problem(c.INVALID_SPEC, f"{a.TUNNEL_ID}: tunnel {tunnel} is the tunnel of {found.source} (its "
                          f"claim {found.key}): nothing is published; name another tunnel, or remove the "
                          f"annotation (and {tunnel} from spec.allowedTunnelIds of {a.TENANT_KIND} {tenant.ref})",
                          None)


async def _publish_held(ctx: Context, core: CloudflareCore, claims: ClaimStore, claim: Claim,
                        route: Mapping[str, Any], settings: RouteSettings, tenant: d.Tenant, digest: str,
                        previous: s.RouteState | None, report: RouteReport, events: EventSink) -> str:
    meta = route["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    hostname, account, source = settings.hostname, tenant.account_id, claim.source
    moved = previous is not None and bool(previous.hostname) and (
        previous.hostname != hostname or previous.tenant != tenant.name)
    asked = adoption.route_requests(route)
    take_over = adoption.permitted(asked, namespace, hostname, ctx.rules, ctx.allow_adoption)
    adopt_ids = () if moved else ledger.adoptable_ids(previous, hostname)  # seed-made records the state lists
    tunnel_id = settings.tunnel_id or tenant.tunnel_id
    try:
        zone = await references.resolve_zone(core, tenant, hostname, None if moved or previous is None
                                          else previous.get("zone_id"))
        try:
            if settings.dns_only.enabled:
                address = await references.resolve_ip(ctx, settings)
                record = d.address_record(hostname, address, settings.dns_only, source, adopt=take_over)
                rule = None
            else:
                address = ""
                record = d.tunnel_cname(hostname, tunnel_id, source, adopt=take_over)
                rule = d.ingress_rule(settings)
        except InvalidInput as exc:
            raise Problem(c.INVALID_SPEC, exc.message, None) from None
        checked = claim.entry(DNS) is None  # a first publish: one name-filtered listing, none in the steady state
        if checked:
            await dns_records.check_name(core, zone.id, record, adopt_ids, asked=asked)
        policy_ids: tuple[str, ...] = ()
        if settings.access.enabled and settings.access.existing_policy_names:
            policy_ids, missing = await step("listing the reusable Access policies", core.reusable_policy_ids(
                account, settings.access.existing_policy_names))
            if missing:
                await _fail_closed(ctx, core, claims, claim, account, previous, hostname, report, events)
                names = ", ".join(repr(m) for m in missing)
                raise Problem(c.POLICY_NOT_FOUND, f"reusable Access policy {names} (existingPolicyNames) not found "
                              f"in account {account}: {hostname} is not published", POLICY_RETRY)
    except Problem:
        if not claim.entries:  # nothing written for it: the hostname is free again
            await claims.release(claim)
        raise

    # --- what the route published under another hostname or tenant goes first: routing before Access ---------
    claim = await _supersede(ctx, core, claims, claim, route, tenant, previous, events, zone_id=zone.id)
    if claim.entry(DNS) is None and not checked:  # claimed again after a tenant change: now a first publish
        try:
            await dns_records.check_name(core, zone.id, record, (), asked=asked)
        except Problem:
            if not claim.entries:  # (a claim recording objects is never released here)
                await claims.release(claim)
            raise
    if moved:
        previous = None
    if previous is not None and not claim.entries and ledger.hints(previous, hostname):  # an earlier version's
        claim = await ledger.bootstrap(core, claims, claim, previous, account_id=account,  # (or the seed's) objects
                                       service=rule.service if rule is not None else None)
    before = claim  # as recorded before this attempt's writes: which rule found in the tunnel is ours
    current = previous.copy() if previous is not None else s.RouteState(namespace, name)
    current.set(hostname=hostname, tenant_name=tenant.name, zone_id=zone.id, tunnel_id=tunnel_id)
    if previous is None:  # recorded before the first write: a deletion now finds the route's claims through it
        current.set(hostname_route_id=tunnel_id if rule else None, dns_record_ip=address or None)
        if not core.dry_run:  # dry-run writes nothing, so records nothing
            await s.write(ctx.api, ctx.operator_namespace, current)

    # --- Access, token, rule, DNS: each recorded in the claim before it is created --------------------------
    if settings.access.enabled:
        claim, unapplied = await _ensure_access(core, claims, claim, account, settings, policy_ids, current,
                                                events, adopt=take_over, asked=asked)
    else:
        unapplied = []
    if settings.service_token.enabled:
        claim = await _ensure_token(ctx, core, claims, claim, account, settings, route, current, events)
    if rule is not None:
        claim = await _ensure_rule(core, claims, claim, before, account, tunnel_id, rule, events)
        current.set(hostname_route_id=tunnel_id)
    claim = await _intend(claims, claim, DNS, zone=zone.id, type=record.type)
    dns = await dns_records.ensure_record(core, zone.id, record, adopt_ids)
    if previous is None or previous.get("cname_record_id" if rule else "dns_record_id") != dns.id:
        proxied = " (proxied)" if dns.proxied else ""
        events.normal(c.DNS_RECORD_READY, f"{dns.type} {hostname} → {dns.content}{proxied}")
    if rule is not None:
        current.set(cname_record_id=dns.id, dns_record_id=None, dns_record_ip=None)
    else:
        current.set(dns_record_id=dns.id, dns_record_ip=address, cname_record_id=None, hostname_route_id=None)

    # --- what these settings do not want, through the claim's entries (routing first, Access last) -----------
    old_type = str((before.entry(DNS) or {}).get("type") or "")
    if {old_type, dns.type} == {"A", "AAAA"}:  # A ↔ AAAA: the writer swapped them in one batch; gone: a no-op
        await dns_records.delete_record(core, zone.id, hostname, old_type, source, events)
    claim = await _remove_unwanted(ctx, core, claims, claim, account, settings, rule is not None, current,
                                   previous, events)

    current.set(annotation_hash=digest)
    if not _same_state(previous, current):  # the last reconcile that changed something: a resync rewrites nothing
        current.set(last_reconcile=s.now())
    summary = _summary(settings, dns.type, dns.content, name, core.owner_id)
    if core.dry_run and not _same_state(previous, current):  # not published: its state must not say it is
        raise Problem(c.DRY_RUN, f"dry-run: would publish {summary}", None)
    await s.write(ctx.api, ctx.operator_namespace, current)
    report.set_results(current.result_annotations())
    if unapplied:  # said, not hidden: Ready=False with what is live (the rest is published as it says)
        message = (f"the write policy {core.policy} left the Access application as it is: live: "
                   f"{'; '.join(unapplied)}")
        if report.is_new(c.POLICY_FORBIDS_UPDATE, message):
            events.warning(c.POLICY_FORBIDS_UPDATE, message)
        report.condition("False", c.POLICY_FORBIDS_UPDATE, message)
    else:
        report.condition("True", c.RECONCILED, summary)
    if previous is None or not previous.published:
        status.tenant_status_soon(ctx, tenant.name, namespace)
    return PUBLISHED


async def _intend(claims: ClaimStore, claim: Claim, obj: str, **fields: str) -> Claim:
    """Record the intent to create `obj` (``fields``: where and under which name), unless the claim records one
    for these fields already; an id recorded for the same fields is kept (an object deleted behind our back may
    be created again, and is then recorded under its new id)."""
    entry = claim.entry(obj) or {}
    same = all(entry.get(key) == value for key, value in fields.items())
    if same and entry.get("since"):
        return claim
    kept = {"id": str(entry["id"])} if same and entry.get("id") else {}
    return await claims.intend(claim, obj, **kept, **fields)


async def _supersede(ctx: Context, core: CloudflareCore, claims: ClaimStore, claim: Claim, route: Mapping[str, Any],
                     tenant: d.Tenant, previous: s.RouteState | None, events: EventSink, *, zone_id: str) -> Claim:
    """Tear down, from its claims, what the route published under another hostname (or, for a tenant change,
    under this one with the old tenant's token); the current claim back, acquired again when it was torn down.

    Looked at only after a change or a publish that stopped half-way (the state says so), never in the steady
    state; the orphan sweep catches the rest. A Cloudflare failure raises (the old claim keeps what is left, the
    next attempt resumes and nothing new is published before); what is left on purpose (an object that is not
    ours any more) is said in a Warning, its claim kept, and the new hostname published.

    A claim that still records objects is never released here: when the old tenant is gone, what the claim on
    this hostname records is kept and reused when it lives where the new tenant publishes (its account and zone),
    else the move is refused until those objects are gone (:func:`_reusable`)."""
    if previous is not None and previous.published and previous.hostname == claim.key \
            and previous.tenant == tenant.name:
        return claim
    old_core, old_claims, old_account = core, claims, tenant.account_id
    if previous is not None and previous.tenant and previous.tenant != tenant.name:
        old = await t.find_tenant(ctx, previous.tenant, previous.route_namespace, previous.route_name, events)
        if old is None:  # nothing reaches its objects without its token: what the claim records stays recorded
            if previous.hostname == claim.key and claim.entries:
                _reusable(claim, previous.tenant, tenant, zone_id)
            return claim
        old_core, old_account = await references.core_for(ctx, old), old.account_id
        old_claims = ledger.store_for(ctx, old_core)
    superseded = [found for found in await claims.list(kind="hostname", source=claim.source) if found.key != claim.key]
    if previous is not None and previous.hostname and previous.hostname != claim.key \
            and all(found.key != previous.hostname for found in superseded) and ledger.hints(previous,
                                                                                              previous.hostname):
        legacy = await t.legacy_claim(old_core, old_claims, previous, claim.source, old_account)
        superseded += [legacy] if legacy is not None else []
    same_key = previous is not None and previous.hostname == claim.key and previous.tenant != tenant.name
    if same_key and previous is not None:
        if not claim.entries and ledger.hints(previous, claim.key):
            claim = await ledger.bootstrap(old_core, old_claims, claim, previous, account_id=old_account)
        superseded.append(claim)
    for old_claim in superseded:
        zone = previous.get("zone_id") if previous is not None and previous.hostname == old_claim.key else ""
        done = await claiming.tear_down_hostname(old_core, old_claims, old_claim, account_id=old_account,
                                                 zone_id=zone or None)
        t.announce(old_claim.key, done, events)
        if done.released and old_claim.key != claim.key:
            events.normal(c.HOSTNAME_REMOVED, f"{old_claim.key} is no longer published")
    if same_key and claiming.enforced(old_core):  # (else the policy keeps the old objects: the claim goes on)
        claim = await ledger.hold(ctx, claims, route, claim.key, None)
        if claim.entries:  # not released: what is left there blocks the move
            raise Problem(c.HOSTNAME_CONFLICT, f"{claim.key}: what the route published with its previous tenant "
                          "could not all be removed (see its Events)", FOREIGN_RETRY)
    return claim


def _reusable(claim: Claim, old_tenant: str, tenant: d.Tenant, zone_id: str) -> None:
    """The route moved from `old_tenant` (gone) to `tenant` keeping its hostname, and its claim records objects
    published with the old tenant: they are the route's still, reused when they live in the new tenant's account
    (and zone); anywhere else nothing can remove them, and the move waits (``TenantNotFound``, retried)."""
    accounts = sorted({str(entry["account"]) for entry in claim.entries.values() if entry.get("account")})
    zones = sorted({str(entry["zone"]) for entry in claim.entries.values() if entry.get("zone")})
    if set(accounts) <= {tenant.account_id} and set(zones) <= {zone_id}:
        logger.info("%s: %s moves from tenant %s (gone) to %s: what its claim records is reused", claim.key,
                    claim.source, old_tenant, tenant.ref)
        return
    where = ", ".join([*(f"account {account}" for account in accounts), *(f"zone {zone}" for zone in zones)])
    raise Problem(c.TENANT_NOT_FOUND, f"{claim.key}: what {claim.source} published with {a.TENANT_KIND} "
                  f"{old_tenant!r} (recorded in its claim: {', '.join(sorted(claim.entries))} in {where}) is out of "
                  f"reach of {a.TENANT_KIND} {tenant.ref} (account {tenant.account_id}), and {old_tenant!r} no longer "
                  f"exists: nothing is published with {tenant.ref} until those objects are removed; create "
                  f"{a.TENANT_KIND} {old_tenant!r} again (its token removes them at the next attempt), or point the "
                  "route back to it", MISSING_RETRY)


def _same_state(previous: s.RouteState | None, current: s.RouteState) -> bool:
    """Whether `current` records what `previous` did (the time of the reconcile aside)."""
    return previous is not None and dict(previous.data, last_reconcile="") == dict(current.data, last_reconcile="")


def _summary(settings: RouteSettings, record_type: str, content: str, route_name: str,
             owner_id: str = "default") -> str:
    parts = [f"{settings.hostname}: {record_type} → {content}"]
    if not settings.dns_only.enabled:
        parts.append(f"tunnel rule → {settings.origin_service}")
    if settings.access.enabled:
        parts.append(f"behind Access application {a.app_name(settings.hostname, owner_id)}")
    if settings.service_token.enabled:
        parts.append(f"service token credentials in Secret {a.secret_name(route_name)}")
    return "; ".join(parts)


async def _withdraw(ctx: Context, namespace: str, name: str, previous: s.RouteState | None, report: RouteReport,
                    events: EventSink) -> None:
    """The route's namespace may not publish its hostname (hostname rules): what it published goes as if the
    route had been deleted (nothing is written for the refused hostname)."""
    if previous is not None:
        async with ctx.runtime.hostnames(previous.hostname):
            await t.teardown(ctx, namespace, name, previous, events)
        report.set_results({key: None for key in a.RESULT_KEYS})
    else:  # claims without a state (a publish that stopped before its state was written)
        await t.teardown(ctx, namespace, name, None, events)
    metrics.HOSTNAMES.forget(FRONT_DOOR, f"HTTPRoute/{namespace}/{name}")


async def _release(ctx: Context, previous: s.RouteState, report: RouteReport) -> None:
    """The route's state says it published a hostname another source holds the claim on: nothing there is
    provably the route's (the claim is the authority), so its record of the past goes, Cloudflare untouched."""
    secret = previous.get("service_token_secret_name")
    if secret:
        await t.delete_token_secret(ctx, previous.route_namespace, secret)
    await s.delete(ctx.api, ctx.operator_namespace, previous.route_namespace, previous.route_name)
    report.set_results({key: None for key in a.RESULT_KEYS})


async def _fail_closed(ctx: Context, core: CloudflareCore, claims: ClaimStore, claim: Claim, account: str,
                       previous: s.RouteState | None, hostname: str, report: RouteReport, events: EventSink) -> None:
    """A reference to a policy that does not resolve: take the hostname's routing down if it was up (the rule
    and the route's own DNS records, as the claim records them; Access stays)."""
    removed: list[str] = []
    zone = previous.get("zone_id") if previous is not None and previous.hostname == hostname else ""
    for obj in (TUNNEL_RULE, DNS):
        if claim.entry(obj) is not None:
            claim, done = await claiming.remove_object(core, claims, claim, obj, account_id=account,
                                                       zone_id=zone or None)
            removed += done.removed
    if not removed:
        return
    events.warning(c.POLICY_NOT_FOUND, f"{hostname} unpublished: one of its Access policies no longer resolves")
    if previous is not None and previous.hostname == hostname and not core.dry_run:
        previous.set(cname_record_id=None, dns_record_id=None, dns_record_ip=None, hostname_route_id=None,
                     annotation_hash=None)
        await s.write(ctx.api, ctx.operator_namespace, previous)
        report.set_results(previous.result_annotations())


def _hinted(conflict: Conflict, doing: str, *, asked: bool, adopt: bool) -> Problem:
    """A Conflict as the route's problem; when the route asked for adoption the operator does not permit, the
    message says so."""
    hint = f" ({adoption.NOT_PERMITTED})" if asked and not adopt else ""
    return Problem(c.HOSTNAME_CONFLICT, f"{doing}: {conflict.message}{hint}", FOREIGN_RETRY)


async def _ensure_access(core: CloudflareCore, claims: ClaimStore, claim: Claim, account: str, settings: RouteSettings,
                         policy_ids: tuple[str, ...], current: s.RouteState, events: EventSink, *, adopt: bool,
                         asked: bool) -> tuple[Claim, list[str]]:
    """The Access application ``cfzt-{hostname}`` (proven by the claim; with permitted adoption, the one
    unmarked app protecting the hostname) and its allow policy ``cfzt-{hostname}-allow``; with the claim, how
    what is live differs from the settings when the write policy forbade a change (see ``unapplied_access``)."""
    hostname = settings.hostname
    name = a.app_name(hostname, core.owner_id)
    claim = await _intend(claims, claim, ACCESS_APP, account=account, name=name)
    doing = "ensuring the Access application"
    spec = d.allow_policy_spec(settings)
    try:  # a new app comes with its allow policy (one call): found below in the answer, never read back
        app = await core.ensure_access_app(account, d.access_app_spec(settings, policy_ids, core.owner_id, adopt=adopt),
                                           claim.recorded(ACCESS_APP), policy=spec)
    except Conflict as conflict:
        raise _hinted(conflict, doing, asked=asked, adopt=adopt) from conflict
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, doing) from exc
    if claim.recorded(ACCESS_APP).id != app.id:
        claim = await claims.complete(claim, ACCESS_APP, app.id, account=account, name=name)
    if current.get("access_app_id") != app.id:
        events.normal(c.ACCESS_APPLICATION_READY, f"Access application {name} protects {hostname}")
    current.set(access_app_id=app.id)
    if spec is not None:
        claim = await _intend(claims, claim, ACCESS_POLICY, app=app.id)
        policy = await step("ensuring the Access allow policy", core.ensure_app_policy(account, app.id, spec))
        if (claim.entry(ACCESS_POLICY) or {}).get("id") != policy.id:
            claim = await claims.complete(claim, ACCESS_POLICY, policy.id, app=app.id)
        current.set(access_policy_ids=policy.id)
        return claim, _unapplied(core, settings, policy_ids, app, policy)
    # No allow rules (any more): an allow policy left from earlier settings would still let them in.
    left: Policy | None = None
    if current.get("access_policy_ids") or claim.entry(ACCESS_POLICY) or set(app.policies) - set(policy_ids):
        policy_name = a.allow_policy_name(hostname)
        found = await step("looking up the allow policy", core.find_app_policy(account, app.id, policy_name))
        if found is not None and core.gate.forbids("delete"):
            left = found  # the write policy keeps it (its recorded id and claim entry too): said, not hidden
            current.set(access_policy_ids=found.id)
            return claim, _unapplied(core, settings, policy_ids, app, left)
        if found is not None:
            await step("removing the allow policy", core.delete_app_policy(account, app.id, found.id))
            events.normal(c.ACCESS_POLICY_REMOVED, f"{policy_name} removed: no allowEmails/allowGroups")
    if claim.entry(ACCESS_POLICY) is not None:
        claim = await claims.forget(claim, ACCESS_POLICY)
    current.set(access_policy_ids=None)
    return claim, _unapplied(core, settings, policy_ids, app, left)


def _unapplied(core: CloudflareCore, settings: RouteSettings, policy_ids: tuple[str, ...], app: AccessApp,
               policy: Policy | None) -> list[str]:
    """What the write policy left differing from the settings (nothing under ``sync``)."""
    if core.policy == "sync":
        return []
    return d.unapplied_access(settings, policy_ids, app, policy)


async def _ensure_token(ctx: Context, core: CloudflareCore, claims: ClaimStore, claim: Claim, account: str,
                        settings: RouteSettings, route: Mapping[str, Any], current: s.RouteState,
                        events: EventSink) -> Claim:
    """The service token ``cfzt-{hostname}`` (proven by the claim); its id and secret only ever in the Secret
    ``cfzt-svctoken-{route}``. Cloudflare shows a secret once: when the Secret is lost, the token gets a new
    secret (rotation)."""
    meta = route["metadata"]
    namespace, route_name = str(meta["namespace"]), str(meta["name"])
    name, secret_name = a.token_name(settings.hostname, core.owner_id), a.secret_name(route_name)
    claim = await _intend(claims, claim, SERVICE_TOKEN, account=account, name=name)
    token = await step("ensuring the service token", core.ensure_service_token(
        account, name, settings.service_token.duration, claim.recorded(SERVICE_TOKEN)))
    if claim.recorded(SERVICE_TOKEN).id != token.id:
        claim = await claims.complete(claim, SERVICE_TOKEN, token.id, account=account, name=name)
    if token.client_secret is None:
        try:
            stored = await kube.read_secret_value(ctx.api, namespace, secret_name, a.CLIENT_ID_KEY)
        except KeyError:
            stored = None
        if stored != token.client_id:
            token = await step("issuing a new service token secret", core.rotate_service_token(account, token.id))
            if token.client_secret is not None:  # None: the policy or dry-run skipped the rotation
                events.normal(c.SERVICE_TOKEN_ROTATED, f"service token {name}: Secret {secret_name} was missing or "
                              "stale, a new secret was issued into it")
    if token.client_secret is not None:
        await _store_token(ctx, {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name,
                "namespace": namespace,
                "labels": {a.MANAGED_BY_LABEL: a.MANAGED_BY},
                "ownerReferences": [{"apiVersion": f"{a.ROUTE_GROUP}/{a.ROUTE_VERSION}", "kind": a.ROUTE_KIND,
                                     "name": route_name, "uid": meta.get("uid", "")}],
            },
            "stringData": {a.CLIENT_ID_KEY: token.client_id, a.CLIENT_SECRET_KEY: token.client_secret},
        })
        if current.get("service_token_id") != token.id:
            events.normal(c.SERVICE_TOKEN_READY, f"service token {name}; credentials in Secret {secret_name}")
    current.set(service_token_id=token.id, service_token_secret_name=secret_name)
    return claim


async def _store_token(ctx: Context, manifest: dict[str, Any]) -> None:
    """Write the service-token Secret; one of that name without our label is never written (ObjectNotOurs)."""
    try:
        await kube.apply_secret(ctx.api, manifest, {a.MANAGED_BY_LABEL: a.MANAGED_BY})
    except kube.NotOurs as exc:
        raise Problem(c.OBJECT_NOT_OURS, str(exc), FOREIGN_RETRY) from None


async def _ensure_rule(core: CloudflareCore, claims: ClaimStore, claim: Claim, before: Claim, account: str,
                       tunnel_id: str, rule: IngressRule, events: EventSink) -> Claim:
    """The route's rule in `tunnel_id` (:func:`claiming.write_rule`): a rule already at its hostname there is
    replaced only when the claim recorded it before this attempt (written, or intended with this very service);
    the entry is completed once written, and an intent of this attempt is forgotten when the write fails. A rule
    recorded in another tunnel goes first (the tunnel changed: the hostname answers 404 until its DNS record
    points to the new tunnel, a few seconds)."""
    hostname = rule.hostname
    old_tunnel = str((claim.entry(TUNNEL_RULE) or {}).get("tunnel") or "")
    if old_tunnel and old_tunnel != tunnel_id:
        claim, done = await claiming.remove_object(core, claims, claim, TUNNEL_RULE, account_id=account)
        if done.removed:
            events.normal(c.TUNNEL_RULE_REMOVED, f"{hostname}: rule removed from tunnel {old_tunnel}")
    return await step(f"writing the tunnel rule of {hostname}",
                      claiming.write_rule(core, claims, claim, before, account, tunnel_id, rule))


async def _remove_unwanted(ctx: Context, core: CloudflareCore, claims: ClaimStore, claim: Claim, account: str,
                           settings: RouteSettings, tunnel_mode: bool, current: s.RouteState,
                           previous: s.RouteState | None, events: EventSink) -> Claim:
    """What the claim records and these settings do not want, removed through its entries (verified, then
    forgotten): the rule of a route now DNS-only (its record no longer points to the tunnel), then the Access
    application (the hostname stays published, now public), then the service token and its Secret."""
    hostname = settings.hostname

    async def drop(claim: Claim, obj: str, reason: str, message: str) -> Claim:
        """Remove `obj` when the claim records it: a Normal Event `reason` once removed, a Warning for what
        stays (not ours)."""
        if claim.entry(obj) is None:
            return claim
        claim, done = await claiming.remove_object(core, claims, claim, obj, account_id=account)
        t.announce(hostname, claiming.Teardown(left=done.left), events)
        if done.removed:
            events.normal(reason, message)
        return claim

    if not tunnel_mode:
        tunnel = (claim.entry(TUNNEL_RULE) or {}).get("tunnel")
        claim = await drop(claim, TUNNEL_RULE, c.TUNNEL_RULE_REMOVED, f"{hostname}: rule removed from tunnel {tunnel}")
    if not settings.access.enabled:
        claim = await drop(claim, ACCESS_APP, c.ACCESS_APPLICATION_REMOVED, f"{hostname} is no longer behind Access")
        current.set(access_app_id=None, access_policy_ids=None)
    if not settings.service_token.enabled:
        claim = await drop(claim, SERVICE_TOKEN, c.SERVICE_TOKEN_REMOVED,
                           f"service token of {hostname} and its Secret removed")
        secrets = {st.get("service_token_secret_name") for st in (current, previous) if st is not None}
        for secret in sorted(secret for secret in secrets if secret):
            if not core.dry_run:
                await t.delete_token_secret(ctx, current.route_namespace, secret)
        current.set(service_token_id=None, service_token_secret_name=None)
    return claim
