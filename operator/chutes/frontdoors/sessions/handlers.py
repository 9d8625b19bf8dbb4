"""kopf wiring of the session-Pod front door: thin. No finalizers and no patches on Pods (a stuck
operator never blocks a Pod, and read-only Pod RBAC is enough); the work happens in :mod:`runner`.

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
from chutes.frontdoors.sessions.budget import RemovalBudget
from chutes.frontdoors.sessions.config import SessionConfig, load_config, require_marker_fits
from chutes.frontdoors.sessions.health import HealthServer
from chutes.frontdoors.sessions.reconcile import EventSink, SessionPublisher
from chutes.frontdoors.sessions.runner import SessionLoop
from chutes.frontdoors.sessions.scheduler import Timing
from chutes.settings import Settings


def implied_namespaces(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The namespaces kopf must watch when this front door runs alone (the seed's sidecar, whose
    Role allows Pods in ``WATCH_NAMESPACE`` only)."""
    return (load_config(environ).watch_namespace,)


DEFAULT_TIMING = Timing()


def operator_pod(environ: Mapping[str, str], default_namespace: str) -> dict[str, Any] | None:
    """The operator's own Pod (the chart's POD_ID, else HOSTNAME), for Events that concern no other object."""
    name = environ.get("POD_ID") or environ.get("HOSTNAME")
    if not name:
        return None
    namespace = environ.get("OPERATOR_NAMESPACE") or environ.get("POD_NAMESPACE") or default_namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": namespace, "name": name}}


def register(registry: kopf.OperatorRegistry, settings: Settings, environ: Mapping[str, str]) -> None:
    """Add the session handlers. Raises :class:`SessionConfigError` (naming the variable) when the
    seed's variables are missing or malformed, or when the ownership marker of this watch namespace cannot
    fit with the owner id, before anything starts."""
    config: SessionConfig = load_config(environ)
    require_marker_fits(config, settings.owner_id)
    base_timing = DEFAULT_TIMING

    @kopf.on.startup(registry=registry, id="sessions")
    async def sessions_startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        if config.pod_selector.text:  # server-side filtering of the Pod watch
            settings.watching.label_selectors["", "v1", "pods"] = config.pod_selector.text
        # After the operator's own startup: the pool's cores hold the tunnel Lease around each configuration
        # flush, so replicas (and the other doors of this installation) never race on the shared tunnel.
        core = memo.cores.core_for(config.api_token)
        events = EventSink(functools.partial(kube.post_event, memo.kube))
        publisher = SessionPublisher(config, memo.kube, core, events, memo.get("hostname_rules"),
                                     claims=memo.claims, allow_adoption=memo.config.allow_adoption,
                                     removals=RemovalBudget(memo.config.sweep_max_deletions,
                                                            memo.config.sweep_interval),
                                     operator_pod=operator_pod(environ, config.watch_namespace))
        run_timing = dataclasses.replace(base_timing, resync=memo.config.resync_interval)
        loop = SessionLoop(config, publisher, run_timing)
        health = HealthServer(config.health_port, loop.healthy)
        try:
            await health.start()
        except OSError as error:  # e.g. the port is taken: retrying will not help
            raise kopf.PermanentError(f"HEALTH_PORT {config.health_port}: cannot listen: {error}") from None
        loop.start()
        memo.sessions, memo.sessions_health = loop, health

    @kopf.on.cleanup(registry=registry, id="sessions")
    async def sessions_cleanup(memo: kopf.Memo, **_: Any) -> None:
        loop: SessionLoop | None = memo.get("sessions")
        health: HealthServer | None = memo.get("sessions_health")
        if loop is not None:
            await loop.stop()
        if health is not None:
            await health.stop()

    @kopf.on.event("", "v1", "pods", registry=registry, id="session_pods")
    async def session_pod_event(event: Mapping[str, Any], body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        # async on purpose: kopf runs sync handlers in threads, and the loop state is not thread-safe
        loop: SessionLoop | None = memo.get("sessions")
        if loop is not None:
            loop.pod_event(event.get("type"), body)
