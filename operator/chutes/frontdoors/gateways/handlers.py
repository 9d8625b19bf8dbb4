"""kopf handlers for ChuteConfig and ChuteGateway: thin; the work is in :mod:`reconcile`."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from typing import Any

import kopf

from chutes import conditions as c
from chutes import kube
from chutes.frontdoors import adoption, problems, repairs, retries, slots, status_writer
from chutes.frontdoors.gateways import blocked_deletion, orphans, read
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.gateways import reconcile as r
from chutes.frontdoors.gateways.status import StatusWriter, connector_condition, ready_condition
from chutes.frontdoors.problems import EventSink, Problem
from chutes.kube import StaleObject
from chutes.observability import metrics
from chutes.settings import Settings
from chutes.sweep.events import announce
from chutes.sweep.timer import unless_stopped

PERMANENT_REASONS = repairs.PERMANENT_REASONS | {c.IMAGE_NOT_ALLOWED}  # the allowed images change at a restart only


def _writer(memo: kopf.Memo, plural: str, body: Mapping[str, Any]) -> StatusWriter:
    """The status writer of a ChuteConfig (cluster-scoped: no namespace) or ChuteGateway."""
    return status_writer.for_custom(memo.kube, d.GROUP, d.VERSION, plural, body)


CLOUDFLARED_SELECTOR = f"{d.LABEL_GATEWAY},app.kubernetes.io/managed-by={d.MANAGED_BY}"


async def _refresh_connector(memo: kopf.Memo, namespace: str, name: str) -> None:
    """ConnectorReady (and Ready) from the live gateway and the live Deployment, written only if neither
    changed meanwhile: the reconcile and the Deployment watcher both call this, and whoever writes last has
    computed from the newest state, so a connector becoming available is never overwritten by an older read."""
    for _ in range(5):
        gateway = await kube.get_custom(memo.kube, d.GROUP, d.VERSION, d.GATEWAY_PLURAL, name, namespace)
        if gateway is None or gateway["metadata"].get("deletionTimestamp"):
            return
        meta = gateway["metadata"]
        deployment = await kube.deployment_status(memo.kube, namespace, f"chute-{name}-cloudflared",
                                                  d.owned_by(name, memo.config.owner_id), meta.get("uid"))
        write = functools.partial(kube.patch_custom_status, memo.kube, d.GROUP, d.VERSION, d.GATEWAY_PLURAL, name,
                                  namespace)
        status = StatusWriter(gateway.get("status"), meta.get("generation"), write,
                              resource_version=meta.get("resourceVersion"))  # no reload: recompute instead
        ready = c.find(status.get("conditions"), c.READY)
        connector_condition(status, int((gateway.get("spec") or {}).get("replicas", 2)), deployment)
        current = status.get("observedGeneration") == meta.get("generation")  # else its reconcile decides Ready
        if current and (ready is None or ready.get("reason") in (c.PENDING, c.RECONCILED)):
            ready_condition(status)
        try:
            await status.flush()
            return
        except StaleObject:
            continue


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    interval = settings.resync_interval

    @kopf.on.startup(registry=registry, id="gateways-watching")
    def gateways_watching(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Only our cloudflared Deployments: filtered by the API server, not after streaming them all.
        settings.watching.label_selectors["apps", "v1", "deployments"] = CLOUDFLARED_SELECTOR

    # --- ChuteConfig ------------------------------------------------------------------------------
    @kopf.on.resume(d.GROUP, d.VERSION, d.CONFIG_PLURAL, registry=registry, id="reconcile")
    @kopf.on.create(d.GROUP, d.VERSION, d.CONFIG_PLURAL, registry=registry, id="reconcile")
    @kopf.on.update(d.GROUP, d.VERSION, d.CONFIG_PLURAL, registry=registry, id="reconcile", field="spec")
    async def config_reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await _config(body, memo)

    @kopf.timer(d.GROUP, d.VERSION, d.CONFIG_PLURAL, registry=registry, id="resync", interval=interval,
                initial_delay=interval)
    async def config_resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if not repairs.refused_for_good(body, PERMANENT_REASONS):
            await _config(body, memo)

    @kopf.timer(d.GROUP, d.VERSION, d.CONFIG_PLURAL, registry=registry, id="sweep", interval=settings.sweep_interval,
                initial_delay=min(orphans.FIRST_SWEEP_DELAY, settings.sweep_interval))
    async def config_sweep(name: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        stopped: kopf.DaemonStopped = kwargs["stopped"]
        if body["metadata"].get("deletionTimestamp"):
            return
        report = await unless_stopped(orphans.sweep_config(
            memo.kube, memo.cores, memo.claims, name, body.get("spec") or {}, settings.sweep_max_deletions,
            memo.get("hostname_rules"), settings.namespaces), stopped.wait())
        announce(report, EventSink(body, kopf.event))

    @kopf.on.delete(d.GROUP, d.VERSION, d.CONFIG_PLURAL, registry=registry, id=blocked_deletion.CLEANUP_HANDLER)
    async def config_delete(name: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        users = await r.gateways_using(memo.kube, name)
        status = _writer(memo, d.CONFIG_PLURAL, body)
        if users:  # only a person can change that: re-checked rarely, woken when one of them goes
            message = blocked_deletion.blocked_message(users)
            news = blocked_deletion.newly_blocked(status.get("conditions"), c.DELETION_BLOCKED, message)
            status.condition(c.DELETION_BLOCKED, "True", c.GATEWAYS_REMAIN, message)
            await status.flush()
            if news:
                EventSink(body, kopf.event).warning(c.GATEWAYS_REMAIN, message)
            raise kopf.TemporaryError(message, delay=retries.BLOCKED_RECHECK)

    async def _config(body: kopf.Body, memo: kopf.Memo) -> None:
        async with slots.of(memo).held(), metrics.reconcile_timer(d.FRONT_DOOR):
            with problems.said(body, d.FRONT_DOOR) as events:
                await r.reconcile_config(memo.kube, memo.cores, body.get("spec") or {},
                                         _writer(memo, d.CONFIG_PLURAL, body), events)

    # --- ChuteGateway -----------------------------------------------------------------------------
    @kopf.on.resume(d.GROUP, d.VERSION, d.GATEWAY_PLURAL, registry=registry, id="reconcile")
    @kopf.on.create(d.GROUP, d.VERSION, d.GATEWAY_PLURAL, registry=registry, id="reconcile")
    @kopf.on.update(d.GROUP, d.VERSION, d.GATEWAY_PLURAL, registry=registry, id="reconcile", field="spec")
    async def gateway_reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await _gateway(body, memo)

    # Adoption asked for (annotation or spec.adopt) by a gateway refused for a conflict: at once, not at the
    # conflict's retry minutes later (kopf runs no update handler while the create handler waits to retry).
    # So is an unknown annotation key added or removed (the update handler watches only the spec).
    @kopf.on.event(d.GROUP, d.VERSION, d.GATEWAY_PLURAL, registry=registry, id="adopt")
    async def gateway_adopt(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if event.get("type") == "DELETED" or body["metadata"].get("deletionTimestamp"):
            return
        ready = c.find((body.get("status") or {}).get("conditions"), c.READY)
        if d.annotations_need_reconcile(body["metadata"].get("annotations"), ready):  # an unknown key, or fixed
            with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):  # recorded in status and Events
                await _gateway(body, memo)
            return
        if not adoption.retry_now(adoption.gateway_requests(body), ready):
            return
        # Only when the operator permits it (setting or hostname rule): otherwise the retry changes nothing.
        if await read.adoption_permitted(memo.kube, body, memo.get("hostname_rules"), memo.config.allow_adoption):
            with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):  # recorded in status and Events
                await _gateway(body, memo)

    # A gateway gone: the cleanup of the ChuteConfig it referenced, if waiting for it, runs at once.
    @kopf.on.event(d.GROUP, d.VERSION, d.GATEWAY_PLURAL, registry=registry, id="release-config")
    async def gateway_gone(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        config_name = (body.get("spec") or {}).get("configRef")
        if event.get("type") == "DELETED" and isinstance(config_name, str) and config_name:
            await blocked_deletion.wake_cleanup(memo.kube, config_name)

    @kopf.timer(d.GROUP, d.VERSION, d.GATEWAY_PLURAL, registry=registry, id="resync", interval=interval,
                initial_delay=interval)
    async def gateway_resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if not repairs.refused_for_good(body, PERMANENT_REASONS):
            await _gateway(body, memo)

    @kopf.on.delete(d.GROUP, d.VERSION, d.GATEWAY_PLURAL, registry=registry, id="cleanup")
    async def gateway_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        status = _writer(memo, d.GATEWAY_PLURAL, body)
        async with slots.of(memo).held(), metrics.reconcile_timer(d.FRONT_DOOR):
            with problems.said(body, d.FRONT_DOOR) as events:
                try:
                    await r.unpublish_gateway(memo.kube, memo.cores, memo.claims, body, status, events)
                except Problem as problem:
                    status.condition(c.DELETION_BLOCKED, "True", problem.reason, problem.message)
                    await status.flush()
                    raise

    async def _gateway(body: kopf.Body, memo: kopf.Memo) -> None:
        # Re-applying a generation published in full before (resume, resync): whatever it writes is a repair.
        async with slots.of(memo).held(), metrics.reconcile_timer(d.FRONT_DOOR):
            with repairs.scope(d.FRONT_DOOR, repairs.gateway_published(body)):
                with problems.said(body, d.FRONT_DOOR) as events:
                    await r.reconcile_gateway(memo.kube, memo.cores, memo.claims, body,
                                              _writer(memo, d.GATEWAY_PLURAL, body), events,
                                              memo.get("hostname_rules"), memo.config.allow_adoption,
                                              memo.config.cloudflared_images)
                # cloudflared may have become available while we worked: settle ConnectorReady from fresh reads.
                await _refresh_connector(memo, body["metadata"]["namespace"], body["metadata"]["name"])

    # --- cloudflared Deployments: ConnectorReady follows their available replicas ------------------
    @kopf.on.event("apps", "v1", "deployments", registry=registry, id="connector",
                   labels={d.LABEL_GATEWAY: kopf.PRESENT, "app.kubernetes.io/managed-by": d.MANAGED_BY})
    async def cloudflared_changed(body: kopf.Body, event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
        if event.get("type") == "DELETED":
            return
        await _refresh_connector(memo, body["metadata"]["namespace"], body["metadata"]["labels"][d.LABEL_GATEWAY])
