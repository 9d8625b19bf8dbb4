"""The gateway's *report* conditions (pure but for the writer they set), and its status writer (shared beside the
doors: :mod:`chutes.frontdoors.status_writer`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chutes import conditions as c
from chutes.cloudflare_core import AccessApp, Policy
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.problems import EventSink
from chutes.frontdoors.status_writer import MAX_CONFLICTS, StaleWrite, StatusWriter

__all__ = ["MAX_CONFLICTS", "StaleWrite", "StatusWriter", "access_condition", "connector_condition",
           "ready_condition"]


def connector_condition(status: StatusWriter, replicas: int, deployment_status: Mapping[str, Any] | None) -> None:
    available = int((deployment_status or {}).get("availableReplicas") or 0)
    if replicas == 0:
        status.condition(c.CONNECTOR_READY, "False", c.CONNECTORS_UNAVAILABLE, "spec.replicas is 0")
    elif available > 0:
        status.condition(c.CONNECTOR_READY, "True", c.CONNECTORS_AVAILABLE, f"{available}/{replicas} available")
    else:
        status.condition(c.CONNECTOR_READY, "False", c.CONNECTORS_UNAVAILABLE, f"0/{replicas} available")


def access_condition(status: StatusWriter, events: EventSink, desired: d.DesiredGateway, write_policy: str,
                     app: AccessApp, policy: Policy) -> None:
    """AccessReady as Cloudflare has it. Under create-only, what exists is not updated (but access is still
    revoked: see the core's gate): when the live application or policy differs from the spec, AccessReady is
    False (``PolicyForbidsUpdate``, with a Warning Event once) and says what is live, not what the spec asks."""
    differences = d.access_differences(desired, app.session_duration, policy.include)
    if not differences or write_policy != "create-only":
        status.condition(c.ACCESS_READY, "True", c.RECONCILED, d.allowed_counts(policy.include))
        return
    message = f"the write policy create-only forbids updating the Access application and policy: live: {differences}"
    before = c.find(status.get("conditions"), c.ACCESS_READY)
    if before is None or (before.get("reason"), before.get("message")) != (c.POLICY_FORBIDS_UPDATE, message):
        events.warning(c.POLICY_FORBIDS_UPDATE, message)
    status.condition(c.ACCESS_READY, "False", c.POLICY_FORBIDS_UPDATE, message)


def ready_condition(status: StatusWriter) -> None:
    steps = (c.TUNNEL_READY, c.ACCESS_READY, c.DNS_READY, c.CONNECTOR_READY)
    waiting = [t for t in steps if not status.is_true(t)]
    ready = not waiting
    status.set(ready=ready, observedGeneration=status.generation)
    forbidden = c.find(status.get("conditions"), c.ACCESS_READY) if c.ACCESS_READY in waiting else None
    if ready:
        status.condition(c.READY, "True", c.RECONCILED, f"published at {status.get('url')}")
    elif forbidden is not None and forbidden.get("reason") == c.POLICY_FORBIDS_UPDATE:
        status.condition(c.READY, "False", c.POLICY_FORBIDS_UPDATE, str(forbidden.get("message") or ""))
    else:
        status.condition(c.READY, "False", c.PENDING, "waiting for " + ", ".join(waiting))
