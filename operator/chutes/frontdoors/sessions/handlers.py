"""kopf wiring of the session-Pod front door: thin. No finalizers and no patches on Pods (a stuck
operator never blocks a Pod, and read-only Pod RBAC is enough); the work happens in :mod:`runner`, fed by
the door's own Pod watch of ``WATCH_NAMESPACE`` (:mod:`podwatch`, not kopf's: a Role in one namespace).

The pass task starts with the operator, independently of kopf peering: like the seed's two sidecars,
two replicas may both be active, and both converge on the same state.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import kopf

from chutes import kube
from chutes.frontdoors.problems import operator_pod
from chutes.frontdoors.sessions.config import SessionConfig, load_config, require_marker_fits
from chutes.frontdoors.sessions.health import HealthServer
from chutes.frontdoors.sessions.podwatch import PodWatch
from chutes.frontdoors.sessions.reconcile import PodEvents, SessionPublisher
from chutes.frontdoors.sessions.runner import SessionLoop
from chutes.frontdoors.sessions.scheduler import Timing
from chutes.settings import Settings
from chutes.sweep.cap import RemovalBudget


def implied_namespaces(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The namespaces kopf must watch when this front door runs alone (the seed's sidecar, whose
    Role allows Pods in ``WATCH_NAMESPACE`` only)."""
    return (load_config(environ).watch_namespace,)


DEFAULT_TIMING = Timing()


def register(registry: kopf.OperatorRegistry, settings: Settings, environ: Mapping[str, str]) -> None:
    """Add the session handlers. Raises :class:`SessionConfigError` (naming the variable) when the
    seed's variables are missing or malformed, or when the ownership marker of this watch namespace cannot
    fit with the owner id, before anything starts."""
    config: SessionConfig = load_config(environ)
    require_marker_fits(config, settings.owner_id)
    base_timing = DEFAULT_TIMING

    @kopf.on.startup(registry=registry, id="sessions")
    async def sessions_startup(memo: kopf.Memo, **_: Any) -> None:
        # After the operator's own startup: the pool's cores hold the tunnel Lease around each configuration
        # flush, so replicas (and the other doors of this installation) never race on the shared tunnel.
        core = memo.cores.core_for(config.api_token)
        events = PodEvents(functools.partial(kube.post_event, memo.kube))
        publisher = SessionPublisher(config, memo.kube, core, events, memo.get("hostname_rules"),
                                     claims=memo.claims, allow_adoption=memo.config.allow_adoption,
                                     removals=RemovalBudget(memo.config.sweep_max_deletions,
                                                            memo.config.sweep_interval),
                                     operator_pod=operator_pod(environ, config.watch_namespace))
        run_timing = dataclasses.replace(base_timing, resync=memo.config.resync_interval)
        loop = SessionLoop(config, publisher, run_timing)
        watch = PodWatch(memo.kube, loop)
        health = HealthServer(config.health_port, lambda: loop.healthy() and watch.healthy())
        try:
            await health.start()
        except OSError as error:  # e.g. the port is taken: retrying will not help
            raise kopf.PermanentError(f"HEALTH_PORT {config.health_port}: cannot listen: {error}") from None
        loop.start()
        memo.sessions, memo.sessions_health, memo.sessions_watch = loop, health, watch.start()

    @kopf.on.cleanup(registry=registry, id="sessions")
    async def sessions_cleanup(memo: kopf.Memo, **_: Any) -> None:
        loop: SessionLoop | None = memo.get("sessions")
        health: HealthServer | None = memo.get("sessions_health")
        watch: PodWatch | None = memo.get("sessions_watch")
        try:
            if watch is not None:
                await watch.stop()
            if loop is not None:
                await loop.stop()
        finally:  # the port is given back whatever happened above (a restart in the same process binds it again)
            if health is not None:
                await health.stop()
