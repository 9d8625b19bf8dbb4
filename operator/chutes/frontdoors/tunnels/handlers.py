"""kopf handlers for Tunnel, ClusterTunnel and TunnelBinding (adyanth's API): thin; the work is in
:mod:`tunnels` and :mod:`bindings`. A binding's or annotated Service's pass is :func:`in_flight` from its first read:
the core's writers wait for it (within a bound) before they flush, so passes started together share flushes.

adyanth's finalizer (``cfargotunnel.com/finalizer``) is added by the door to ``newTunnel`` (Cluster)Tunnels and to
TunnelBindings, and removed by the delete handlers once their Cloudflare objects are gone, so objects made under
adyanth's operator are released by ours; kopf runs those handlers under its own finalizer (it calls delete handlers
only for objects holding it)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import kopf

from chutes.claims import operator_namespace
from chutes.cloudflare_core import in_flight
from chutes.frontdoors import problems, repairs, slots, status_writer
from chutes.frontdoors.status_writer import StatusWriter
from chutes.frontdoors.tunnels import bindings as b
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels import services as sv
from chutes.frontdoors.tunnels import tunnels as t
from chutes.frontdoors.tunnels.turns import SourceTurns
from chutes.observability import metrics
from chutes.settings import Settings
from chutes.sweep.cap import RemovalBudget

FRONT_DOOR = m.FRONT_DOOR
HANDLED = "chutes.troubleshat.com/last-handled-configuration"  # kopf's, on a Service our handlers handled
# Annotations users write under kopf's storage prefix that must run the update handlers (see runtime.DiffBase).
TRACKED_ANNOTATIONS = frozenset({m.ACCESS_EMAILS, m.ACCESS_DOMAINS, sv.SHARED_WITH})


def _asks(annotations: Mapping[str, Any], **_: Any) -> bool:
    return m.service_annotated(annotations)


def _may_have_published(annotations: Mapping[str, Any], **_: Any) -> bool:
    """A Service our handlers handled, or one that asks (deleted before kopf recorded that it was handled: its
    pass may have published already)."""
    return HANDLED in annotations or m.service_annotated(annotations)


def _writer(memo: kopf.Memo, version: str, plural: str, body: Mapping[str, Any]) -> StatusWriter:
    return status_writer.for_custom(memo.kube, m.GROUP, version, plural, body)


def _skip_resync(body: Mapping[str, Any]) -> bool:
    return bool(body["metadata"].get("deletionTimestamp")) or repairs.refused_for_good(body)


def register(registry: kopf.OperatorRegistry, settings: Settings, environ: Mapping[str, str]) -> None:
    """The handlers; a resync timer per object (every `resync_interval`) repairs drift: a rule, record, Secret or
    Deployment changed or removed behind our back, a Service whose port changed."""
    resource_namespace = settings.cluster_resource_namespace or operator_namespace(environ)
    interval = settings.resync_interval
    # The orphan sweeps of every Tunnel share the deletion cap: sweep_max_deletions per sweep_interval.
    removals = RemovalBudget(settings.sweep_max_deletions, settings.sweep_interval)
    said_to_services = problems.SaidBook()  # a Service has no status of ours: what its Warnings said, per uid

    def with_kind(body: kopf.Body, kind: str) -> dict[str, Any]:
        return {**body, "kind": kind}

    async def tunnel(body: kopf.Body, memo: kopf.Memo, kind: str, plural: str) -> None:
        if body["metadata"].get("deletionTimestamp"):
            return
        async with slots.of(memo).held(), metrics.reconcile_timer(FRONT_DOOR):
            with problems.said(body, FRONT_DOOR) as events:
                await t.reconcile_tunnel(memo.kube, memo.cores, memo.claims, with_kind(body, kind),
                                         _writer(memo, m.VERSION, plural, body), events, resource_namespace)

    turns = SourceTurns()  # one pass at a time per annotated Service name or binding (see turns.py)

    def binding_turn(body: kopf.Body) -> AbstractAsyncContextManager[None]:
        return turns.held(m.binding_source(body["metadata"]["namespace"], body["metadata"]["name"]))

    async def binding(body: kopf.Body, memo: kopf.Memo) -> None:
        if body["metadata"].get("deletionTimestamp"):
            return
        async with slots.of(memo).held(), metrics.reconcile_timer(FRONT_DOOR), binding_turn(body), in_flight():
            with problems.said(body, FRONT_DOOR) as events:
                await b.reconcile_binding(memo.kube, memo.cores, memo.claims, body,
                                          _writer(memo, m.BINDING_VERSION, m.BINDING_PLURAL, body), events,
                                          resource_namespace, memo.get("hostname_rules"),
                                          memo.get("shared_tunnel_targets") or frozenset())

    async def service(body: Mapping[str, Any], memo: kopf.Memo) -> None:
        meta = body["metadata"]
        async with (slots.of(memo).held(), metrics.reconcile_timer(FRONT_DOOR),
                    turns.held(m.service_source(meta["namespace"], meta["name"])), in_flight()):
            with problems.said(body, FRONT_DOOR, said_to_services) as events:
                await sv.reconcile_service(memo.kube, memo.cores, memo.claims, body, events, resource_namespace,
                                           memo.get("hostname_rules"))

    for kind, plural in ((m.TUNNEL_KIND, m.TUNNEL_PLURAL), (m.CLUSTER_KIND, m.CLUSTER_PLURAL)):

        async def tunnel_reconcile(body: kopf.Body, memo: kopf.Memo, kind: str = kind, plural: str = plural,
                                   **_: Any) -> None:
            await tunnel(body, memo, kind, plural)

        async def tunnel_resync(body: kopf.Body, memo: kopf.Memo, kind: str = kind, plural: str = plural,
                                **_: Any) -> None:
            if not _skip_resync(body):
                await tunnel(body, memo, kind, plural)
            if not body["metadata"].get("deletionTimestamp"):
                with problems.said(body, FRONT_DOOR) as events:  # the orphan sweep of what routes into its tunnel
                    await sv.sweep(memo.kube, memo.cores, memo.claims, with_kind(body, kind), events,
                                   resource_namespace, turns, removals)
                # annotated Services (no timer of their own) not routed into its tunnel: published again
                for found in await sv.unrouted(memo.kube, memo.claims, with_kind(body, kind)):
                    with contextlib.suppress(kopf.TemporaryError, kopf.PermanentError):  # said on the Service
                        await service(found, memo)

        async def tunnel_delete(body: kopf.Body, memo: kopf.Memo, kind: str = kind, **_: Any) -> None:
            async with slots.of(memo).held(), metrics.reconcile_timer(FRONT_DOOR), turns.all_held(
                    await sv.routed_through(memo.claims, with_kind(body, kind))):  # the claims it reads stay as read
                with problems.said(body, FRONT_DOOR) as events:
                    await t.delete_tunnel(memo.kube, memo.cores, memo.claims, with_kind(body, kind), events,
                                          resource_namespace)

        for decorator in (kopf.on.resume(m.GROUP, m.VERSION, plural, registry=registry, id="reconcile"),
                          kopf.on.create(m.GROUP, m.VERSION, plural, registry=registry, id="reconcile"),
                          kopf.on.update(m.GROUP, m.VERSION, plural, registry=registry, id="reconcile",
                                         field="spec")):
            decorator(tunnel_reconcile)
        kopf.timer(m.GROUP, m.VERSION, plural, registry=registry, id="resync", interval=interval,
                   initial_delay=interval)(tunnel_resync)
        kopf.on.delete(m.GROUP, m.VERSION, plural, registry=registry, id="cleanup")(tunnel_delete)

    @kopf.on.resume(m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, registry=registry, id="reconcile")
    @kopf.on.create(m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, registry=registry, id="reconcile")
    @kopf.on.update(m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, registry=registry, id="reconcile",
                    field="subjects")
    @kopf.on.update(m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, registry=registry, id="reconcile-ref",
                    field="tunnelRef")
    @kopf.on.update(m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, registry=registry, id="reconcile-access",
                    field="metadata.annotations")
    async def binding_reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await binding(body, memo)

    @kopf.timer(m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, registry=registry, id="resync", interval=interval,
                initial_delay=interval)
    async def binding_resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if not _skip_resync(body):
            # published in full: a drift repair, answered from the pass's listings (one per zone and tunnel, not
            # one per binding) when everything is in place
            with repairs.scope(FRONT_DOOR, repairs.ready_for_generation(body)):
                await binding(body, memo)

    @kopf.on.delete(m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, registry=registry, id="cleanup")
    async def binding_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        async with slots.of(memo).held(), metrics.reconcile_timer(FRONT_DOOR), binding_turn(body), in_flight():
            with problems.said(body, FRONT_DOOR) as events:
                await b.delete_binding(memo.kube, memo.cores, memo.claims, body, events, resource_namespace)

    # --- annotated Services (the blog-era form): no finalizer; withdrawn on their delete event or annotations gone
    @kopf.on.resume("", "v1", "services", registry=registry, id="tunnels", when=_asks)
    @kopf.on.create("", "v1", "services", registry=registry, id="tunnels", when=_asks)
    @kopf.on.update("", "v1", "services", registry=registry, id="tunnels", when=_asks)
    async def service_reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        await service(body, memo)

    @kopf.on.event("", "v1", "services", registry=registry, id="tunnels-withdraw", when=_may_have_published)
    async def service_withdraw(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if event.get("type") != "DELETED" and m.service_annotated(body["metadata"].get("annotations")):
            return
        meta = body["metadata"]
        # said in Events; the next event of the Service retries
        async with slots.of(memo).held(), turns.held(m.service_source(meta["namespace"], meta["name"])), in_flight():
            with (contextlib.suppress(kopf.TemporaryError, kopf.PermanentError),
                  problems.said(body, FRONT_DOOR) as events):
                await sv.withdraw_if_gone(memo.kube, memo.cores, memo.claims, meta["namespace"], meta["name"],
                                          events, resource_namespace)
