"""Reconcile one enabled HTTPRoute in the front-door shape (``frontdoors/README.md``): :mod:`.read` -> :mod:`.decide`
(pure) -> :func:`chutes.frontdoors.changes.admit` (the write policy and dry-run, on the set as a whole) -> :mod:`.apply`
(each change through the core) -> report (state ConfigMap, result annotations, conditions, Events).

Everything that can be refused is checked before anything is written to Cloudflare; a hostname claim this reconcile
created is released when a later check refuses the route (nothing was written). The seed's annotation hash decides
whether a route event needs Cloudflare at all; the periodic resync passes ``force=True`` and checks (and repairs)
everything: its writes for inputs published already are counted as drift repairs. Under dry-run neither the ledger
nor the state records anything: a route whose state would change says ``DryRun`` with what would be published.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from chutes import conditions as c
from chutes.claims import ClaimLost
from chutes.frontdoors import changes, repairs
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import decide, ledger, read, references, status, unpublish
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.apply import Executor
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.httproutes.merge import RouteSettings
from chutes.frontdoors.httproutes.report import RouteReport
from chutes.frontdoors.problems import EventSink, Problem
from chutes.frontdoors.retries import LOST_RETRY
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


async def _reconcile(ctx: Context, route: Mapping[str, Any], report: RouteReport, events: EventSink, *,
                     force: bool) -> tuple[str, str]:
    meta = route["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    settings, tenant, digest = await read.settings(ctx, route)
    hostname = settings.hostname
    slot = await s.read_slot(ctx.api, ctx.operator_namespace, namespace, name)  # another route's state: None
    previous = slot.state
    if refusal := decide.authorized(ctx.rules, namespace, hostname):
        await withdraw(ctx, namespace, name, previous, report, events)
        raise Problem(*refusal, None)
    settled = previous is not None and repairs.route_published(previous.published, previous.get("annotation_hash"),
                                                               previous.hostname, digest, hostname)
    if not force and settled and report.ready is not None and report.ready.get("status") == "True":
        return UNCHANGED, hostname
    # The forced resync (or a resume) of inputs published already: whatever it writes is a repair.
    async with ctx.runtime.hostnames(hostname, previous.hostname if previous is not None else ""):
        with repairs.scope(FRONT_DOOR, settled and repairs.is_unprompted()):
            try:
                return await _publish(ctx, route, settings, tenant, digest, slot, report, events), hostname
            except ClaimLost as lost:  # released under us (e.g. by the orphan sweep): acquired again next time
                raise Problem(c.CLOUDFLARE_UNAVAILABLE, f"publishing {hostname}: {lost}", LOST_RETRY) from None
            except s.StateTaken as lost_state:  # another route's state written under that name meanwhile
                raise Problem(c.INVALID_SPEC, str(lost_state), None) from None


async def _publish(ctx: Context, route: Mapping[str, Any], settings: RouteSettings, tenant: d.Tenant, digest: str,
                   slot: s.Slot, report: RouteReport, events: EventSink) -> str:
    meta = route["metadata"]
    namespace, name, hostname = str(meta["namespace"]), str(meta["name"]), settings.hostname
    source, previous = a.source(namespace, name), slot.state
    core = await references.core_for(ctx, tenant)
    claims = ledger.store_for(ctx, core)
    if refusal := decide.check(settings, tenant, core.owner_id, source,
                               await read.tunnel_claims(claims, settings, tenant)):
        raise Problem(*refusal, None)
    try:
        claim = await ledger.hold(ctx, claims, route, hostname, previous)
    except Problem as problem:
        if problem.reason == c.HOSTNAME_CONFLICT and previous is not None and previous.hostname == hostname:
            await _release(ctx, previous, report)
        raise
    found = await read.gather(ctx, route, settings, tenant, slot, core, claims, claim, events)
    decision = decide.decide(found.inputs)
    admitted = changes.admit(decision.changes, core.policy, dry_run=core.dry_run)
    for line in admitted.lines() if core.dry_run else ():
        logger.info("dry-run: %s: %s", source, line)
    run = Executor(ctx, found, route, events)
    await changes.apply(admitted, run, logger)
    if decision.problems:
        if run.removed:  # the hostname's routing taken down (fails closed): said, and no longer recorded
            await _unpublished(ctx, found.inputs, core.dry_run, report, events)
        if not found.inputs.claim.entries:  # nothing written for it: the hostname is free again
            await claims.release(found.inputs.claim)
        reason, message = decision.problems[0]
        raise Problem(reason, message, decide.DELAYS.get(reason))
    return await _report(ctx, run, digest, report, slot)


async def _report(ctx: Context, run: Executor, digest: str, report: RouteReport, slot: s.Slot) -> str:
    """Record what the route publishes now (its state, result annotations) and say it (its Ready condition; what
    the write policy left differing from the settings: ``PolicyForbidsUpdate``, with a Warning Event). The state
    is compared with its ConfigMap as `slot` holds it (read this pass, under the route's lock), not read again,
    unless this pass wrote it already."""
    settings, current, core, dns = run.settings, run.current, run.core, run.dns
    assert dns is not None  # the decision's last ensure
    if not settings.access.enabled:
        current.set(access_app_id=None, access_policy_ids=None)
    if not settings.service_token.enabled:
        current.set(service_token_id=None, service_token_secret_name=None)
    current.set(annotation_hash=digest)
    if not _same_state(run.previous, current):  # the last reconcile that changed something: a resync rewrites nothing
        current.set(last_reconcile=s.now())
    summary = _summary(settings, dns.type, dns.content, run.inputs.name, core.owner_id)
    if core.dry_run and not _same_state(run.previous, current):  # not published: its state must not say it is
        raise Problem(c.DRY_RUN, f"dry-run: would publish {summary}", None)
    await s.write(ctx.api, ctx.operator_namespace, current, None if run.state_written else slot.configmap)
    report.set_results(current.result_annotations())
    if run.unapplied:  # said, not hidden: Ready=False with what is live (the rest is published as it says)
        message = (f"the write policy {core.policy} left the Access application as it is: live: "
                   f"{'; '.join(run.unapplied)}")
        if report.is_new(c.POLICY_FORBIDS_UPDATE, message):
            run.events.warning(c.POLICY_FORBIDS_UPDATE, message)
        report.condition("False", c.POLICY_FORBIDS_UPDATE, message)
    else:
        report.condition("True", c.RECONCILED, summary)
    if run.previous is None or not run.previous.published:
        status.tenant_status_soon(ctx, run.inputs.tenant.name, run.inputs.namespace)
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


async def _unpublished(ctx: Context, inputs: decide.Inputs, dry_run: bool, report: RouteReport,
                       events: EventSink) -> None:
    """A reference to a policy that does not resolve took the hostname's routing down: said in a Warning, and no
    longer in the route's state (Access stays)."""
    hostname, previous = inputs.settings.hostname, inputs.previous
    events.warning(c.POLICY_NOT_FOUND, f"{hostname} unpublished: one of its Access policies no longer resolves")
    if previous is not None and previous.hostname == hostname and not dry_run:
        previous.set(cname_record_id=None, dns_record_id=None, dns_record_ip=None, hostname_route_id=None,
                     annotation_hash=None)
        await s.write(ctx.api, ctx.operator_namespace, previous)
        report.set_results(previous.result_annotations())


async def withdraw(ctx: Context, namespace: str, name: str, previous: s.RouteState | None, report: RouteReport,
                   events: EventSink) -> None:
    """The route's namespace may not publish its hostname (hostname rules): what it published goes as if the
    route had been deleted (nothing is written for the refused hostname)."""
    async with ctx.runtime.hostnames(previous.hostname if previous is not None else ""):
        await unpublish.teardown(ctx, namespace, name, previous, events)  # (no state: a publish stopped before it)
    if previous is not None:
        report.set_results({key: None for key in a.RESULT_KEYS})
    metrics.HOSTNAMES.forget(FRONT_DOOR, f"HTTPRoute/{namespace}/{name}")


async def _release(ctx: Context, previous: s.RouteState, report: RouteReport) -> None:
    """The route's state says it published a hostname another source holds the claim on: nothing there is
    provably the route's (the claim is the authority), so its record of the past goes, Cloudflare untouched."""
    await unpublish.forget(ctx, previous)
    report.set_results({key: None for key in a.RESULT_KEYS})
