"""Reconcile one enabled HTTPRoute: gather (tenant, templates, settings, state), decide, act, record.

Order: everything that can be refused is checked before anything is written (tenant, templates, values,
the hostname claim, credentials, zone, the DNS-only address, a foreign DNS record, the reusable policies).
Then Access application and allow policy → service token → tunnel rule → DNS record, so a protected
hostname is routable only once its protection exists; then what the previous settings had and the new
ones do not (routing before Access). An unknown ``existingPolicyNames`` entry fails closed: the hostname is
not published, and unpublished if it was. So is a hostname outside the operator's hostname rules
(checked first of all, once the hostname is known).

The seed's annotation hash decides whether a route event needs Cloudflare at all; the periodic resync
passes ``force=True`` and checks (and repairs) everything: its writes for inputs published already are
counted as drift repairs. Under dry-run the core writes nothing and the state records nothing: a route
whose state would change says ``DryRun`` with what would be published.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chutes import conditions as c
from chutes import kube
from chutes.cloudflare_core import CloudflareCore, InvalidInput
from chutes.frontdoors import adoption, repairs
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import lookups, status
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes import teardown as t
from chutes.frontdoors.httproutes.lookups import Context
from chutes.frontdoors.httproutes.merge import MergeError, NamedSpec, RouteSettings, annotation_hash, merge
from chutes.frontdoors.httproutes.problems import CONFLICT_RETRY, POLICY_RETRY, EventSink, Problem, step
from chutes.frontdoors.httproutes.report import RouteReport
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
    tenant = await lookups.find_tenant(ctx, tenant_name, namespace)
    template_name = annotations.get(a.TEMPLATE, "").strip()
    template = await lookups.find_template(ctx, template_name, namespace, required=True) if template_name else None
    base_name = a.base_template_name(tenant_name)
    base = await lookups.find_template(ctx, base_name, namespace, required=False)
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
    previous = await s.read(ctx.api, ctx.operator_namespace, namespace, name)
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
            return await _publish(ctx, route, settings, tenant, digest, previous, report, events), hostname


async def _publish(ctx: Context, route: Mapping[str, Any], settings: RouteSettings, tenant: d.Tenant, digest: str,
                   previous: s.RouteState | None, report: RouteReport, events: EventSink) -> str:
    meta = route["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    hostname, account = settings.hostname, tenant.account_id

    # --- checks (nothing written yet) ---------------------------------------------------------------
    winner = await lookups.hostname_winner(ctx, d.route_ref(route), hostname, previous)
    if winner.key != (namespace, name):
        if previous is not None and previous.hostname == hostname:
            await _release(ctx, previous, report)
        raise Problem(c.HOSTNAME_CONFLICT, f"hostname {hostname} is already claimed by HTTPRoute {winner.ref}",
                      CONFLICT_RETRY)
    core = await lookups.core_for(ctx, tenant)
    moved = previous is not None and bool(previous.hostname) and (
        previous.hostname != hostname or previous.tenant != tenant.name)
    zone = await lookups.resolve_zone(core, tenant, hostname, None if moved or previous is None
                                      else previous.get("zone_id"))
    source = a.source(namespace, name)
    tunnel_id = settings.tunnel_id or tenant.tunnel_id
    take_over = adoption.route_requests(route)  # a record or Access app with no marker of ours at all
    try:
        if settings.dns_only.enabled:
            address = await lookups.resolve_ip(ctx, settings)
            record = d.address_record(hostname, address, settings.dns_only, source, adopt=take_over)
            rule = None
        else:
            address = ""
            record = d.tunnel_cname(hostname, tunnel_id, source, adopt=take_over)
            rule = d.ingress_rule(settings)
    except InvalidInput as exc:
        raise Problem(c.INVALID_SPEC, exc.message, None) from None
    adopt = t.adoptable_ids(previous)
    first = previous is None or moved or not previous.published
    if first:
        await t.check_name_free(ctx, core, zone.id, record, adopt)
    policy_ids: tuple[str, ...] = ()
    if settings.access.enabled and settings.access.existing_policy_names:
        policy_ids, missing = await ctx.runtime.policies.resolve(core, account, settings.access.existing_policy_names)
        if missing:
            await _fail_closed(ctx, core, account, previous, hostname, report, events)
            names = ", ".join(repr(m) for m in missing)
            raise Problem(c.POLICY_NOT_FOUND, f"reusable Access policy {names} (existingPolicyNames) not found in "
                          f"account {account}: {hostname} is not published", POLICY_RETRY)

    # --- the previous hostname (or tenant) goes entirely first: its routing before its Access app -----------
    if moved and previous is not None:
        await t.teardown(ctx, previous, events)
        events.normal("HostnameRemoved", f"{previous.hostname} is no longer published")
        previous = None
    current = previous.copy() if previous is not None else s.RouteState(namespace, name)
    current.set(hostname=hostname, tenant_name=tenant.name, zone_id=zone.id, tunnel_id=tunnel_id)
    if previous is None:  # recorded before the first write, so a crash or deletion now leaves no orphan
        current.set(hostname_route_id=tunnel_id if rule else None, dns_record_ip=address or None)
        if not core.dry_run:  # dry-run writes nothing, so records nothing
            await s.write(ctx.api, ctx.operator_namespace, current)
    if previous is not None and not previous.published:  # a reconcile that stopped half-way
        await _remove_leftovers(core, account, settings, current)

    # --- Access, token, rule, DNS --------------------------------------------------------------------
    if settings.access.enabled:
        await _ensure_access(core, account, settings, policy_ids, current, events, adopt=take_over)
    if settings.service_token.enabled:
        await _ensure_token(ctx, core, account, settings, route, current, events)
    if rule is not None:
        await step(f"writing the tunnel rule of {hostname}", core.set_ingress_rule(account, tunnel_id, rule))
        current.set(hostname_route_id=tunnel_id)
    dns = await t.ensure_record(core, zone.id, record, adopt)
    if previous is None or previous.get("cname_record_id" if rule else "dns_record_id") != dns.id:
        proxied = " (proxied)" if dns.proxied else ""
        events.normal("DNSRecordReady", f"{dns.type} {hostname} → {dns.content}{proxied}")
    if rule is not None:
        current.set(cname_record_id=dns.id, dns_record_id=None, dns_record_ip=None)
    else:
        current.set(dns_record_id=dns.id, dns_record_ip=address, cname_record_id=None, hostname_route_id=None)

    # --- what the previous settings had and these do not (routing first, Access last) --------------------
    if previous is not None:
        await _remove_stale(ctx, core, account, settings, previous, current, rule is not None, events)

    current.set(annotation_hash=digest, last_reconcile=s.now())
    summary = _summary(settings, dns.type, dns.content, name, core.owner_id)
    if core.dry_run and not _same_state(previous, current):  # not published: its state must not say it is
        raise Problem(c.DRY_RUN, f"dry-run: would publish {summary}", None)
    await s.write(ctx.api, ctx.operator_namespace, current)
    report.set_results(current.result_annotations())
    report.condition("True", c.RECONCILED, summary)
    if previous is None or not previous.published:
        status.tenant_status_soon(ctx, tenant.name, namespace)
    return PUBLISHED


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
            await t.teardown(ctx, previous, events)
        report.set_results({key: None for key in a.RESULT_KEYS})
    metrics.HOSTNAMES.forget(FRONT_DOOR, f"HTTPRoute/{namespace}/{name}")


async def _release(ctx: Context, previous: s.RouteState, report: RouteReport) -> None:
    """This route lost a hostname it had published (another one holds it): forget it without touching
    Cloudflare, where the winner owns the objects now."""
    secret = previous.get("service_token_secret_name")
    if secret:
        await kube.delete_namespaced(ctx.api, "Secret", previous.route_namespace, secret)
    await s.delete(ctx.api, ctx.operator_namespace, previous.route_namespace, previous.route_name)
    report.set_results({key: None for key in a.RESULT_KEYS})


async def _fail_closed(ctx: Context, core: CloudflareCore, account: str, previous: s.RouteState | None,
                       hostname: str, report: RouteReport, events: EventSink) -> None:
    """A reference to a policy that does not resolve: take the hostname's routing down if it was up."""
    if previous is None or previous.hostname != hostname:
        return
    if await t.unpublish_routing(core, account, previous, events):
        events.warning(c.POLICY_NOT_FOUND, f"{hostname} unpublished: one of its Access policies no longer resolves")
        await s.write(ctx.api, ctx.operator_namespace, previous)
        report.set_results(previous.result_annotations())


async def _remove_leftovers(core: CloudflareCore, account: str, settings: RouteSettings,
                            current: s.RouteState) -> None:
    """After a reconcile that stopped half-way (its state is pending): an Access app or service token it may
    have created under the hostname's name goes when these settings do not want it."""
    hostname = current.hostname
    if not settings.access.enabled:
        app = await step("looking up a previous Access application",
                         core.find_access_app(account, hostname, a.app_name(hostname, core.owner_id)))
        if app is not None:
            await step(f"removing the Access application of {hostname}", core.delete_access_app(account, app.id))
    if not settings.service_token.enabled:
        token = await step("looking up a previous service token", core.find_service_token(
            account, a.token_name(hostname, core.owner_id)))
        if token is not None:
            await step(f"removing the service token of {hostname}", core.delete_service_token(account, token.id))


async def _ensure_access(core: CloudflareCore, account: str, settings: RouteSettings, policy_ids: tuple[str, ...],
                         current: s.RouteState, events: EventSink, *, adopt: bool = False) -> None:
    hostname = settings.hostname
    app = await step("ensuring the Access application", core.ensure_access_app(
        account, d.access_app_spec(settings, policy_ids, core.owner_id, adopt=adopt)))
    if current.get("access_app_id") != app.id:
        events.normal("AccessApplicationReady", f"Access application {a.app_name(hostname, core.owner_id)} protects "
                      f"{hostname}")
    current.set(access_app_id=app.id)
    spec = d.allow_policy_spec(settings)
    if spec is not None:
        policy = await step("ensuring the Access allow policy", core.ensure_app_policy(account, app.id, spec))
        current.set(access_policy_ids=policy.id)
        return
    # No allow rules (any more): an allow policy left from earlier settings would still let them in.
    if current.get("access_policy_ids") or set(app.policies) - set(policy_ids):
        policy_name = a.allow_policy_name(hostname)
        found = await step("looking up the allow policy", core.find_app_policy(account, app.id, policy_name))
        if found is not None:
            await step("removing the allow policy", core.delete_app_policy(account, app.id, found.id))
            events.normal("AccessPolicyRemoved", f"{policy_name} removed: no allowEmails/allowGroups")
    current.set(access_policy_ids=None)


async def _ensure_token(ctx: Context, core: CloudflareCore, account: str, settings: RouteSettings,
                        route: Mapping[str, Any], current: s.RouteState, events: EventSink) -> None:
    """The service token ``cfzt-{hostname}``; its id and secret only ever in the Secret ``cfzt-svctoken-{route}``.
    Cloudflare shows a secret once: when the Secret is lost, the token gets a new secret (rotation)."""
    meta = route["metadata"]
    namespace, route_name = str(meta["namespace"]), str(meta["name"])
    name, secret_name = a.token_name(settings.hostname, core.owner_id), a.secret_name(route_name)
    token = await step("ensuring the service token",
                       core.ensure_service_token(account, name, settings.service_token.duration))
    if token.client_secret is None:
        try:
            stored = await kube.read_secret_value(ctx.api, namespace, secret_name, a.CLIENT_ID_KEY)
        except KeyError:
            stored = None
        if stored != token.client_id:
            token = await step("issuing a new service token secret", core.rotate_service_token(account, token.id))
            if token.client_secret is not None:  # None: the policy or dry-run skipped the rotation
                events.normal("ServiceTokenRotated", f"service token {name}: Secret {secret_name} was missing or "
                              "stale, a new secret was issued into it")
    if token.client_secret is not None:
        await kube.apply_secret(ctx.api, {
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
            events.normal("ServiceTokenReady", f"service token {name}; credentials in Secret {secret_name}")
    current.set(service_token_id=token.id, service_token_secret_name=secret_name)


async def _remove_stale(ctx: Context, core: CloudflareCore, account: str, settings: RouteSettings,
                        previous: s.RouteState, current: s.RouteState, tunnel_mode: bool, events: EventSink) -> None:
    hostname = settings.hostname
    old_tunnel = previous.get("hostname_route_id")
    if old_tunnel and (not tunnel_mode or old_tunnel != current.get("tunnel_id")):
        await step(f"removing the old tunnel rule of {hostname}", core.remove_ingress_rule(account, old_tunnel,
                                                                                           hostname))
        events.normal("TunnelRuleRemoved", f"{hostname}: rule removed from tunnel {old_tunnel}")
    old_ip = previous.get("dns_record_ip")
    if old_ip and previous.get("dns_record_id"):  # A ↔ AAAA: the DNS writer replaces only clashing types
        old_type = d.address_type(old_ip)
        new_type = None if tunnel_mode else d.address_type(current.get("dns_record_ip"))
        if old_type != new_type and new_type is not None:
            await t.delete_record(core, current.get("zone_id"), hostname, old_type, a.source(
                current.route_namespace, current.route_name), t.adoptable_ids(previous), events)
    if not settings.access.enabled and previous.get("access_app_id"):
        await t.remove_access(core, account, current, lookup=False)
        events.normal("AccessApplicationRemoved", f"{hostname} is no longer behind Access")
    if not settings.service_token.enabled and previous.get("service_token_id"):
        await t.remove_token(ctx, core, account, current, lookup=False)
        events.normal("ServiceTokenRemoved", f"service token of {hostname} and its Secret removed")
