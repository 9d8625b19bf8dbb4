"""Pure inputs of the session door's tests (no emulator): its configuration, Pods as the watch delivers
them, the sessions read from them, and fast pass timings."""

from __future__ import annotations

from typing import Any

from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.config import SessionConfig, load_config
from chutes.frontdoors.sessions.scheduler import Timing

TUNNEL = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
ROUTER = "http://opencode-router.opencode-router.svc.cluster.local:80"


def config(**extra: str) -> SessionConfig:
    """The door's configuration from the seed's variables (`extra`: more, or other values)."""
    return load_config({
        "CF_API_TOKEN": "t", "CF_ZONE_ID": "0123456789abcdef0123456789abcdef", "CF_TUNNEL_ID": TUNNEL,
        "DOMAIN": "no-panic.org", "ROUTE_SUFFIX": "-oc", "ROUTER_SERVICE_URL": ROUTER, **extra,
    })


def pod(name: str, session_hash: str | None = "8b6cc2aa9a45", namespace: str = "opencode-router",
        labels: dict[str, str] | None = None, uid: str | None = None) -> dict[str, Any]:
    all_labels = {"app.kubernetes.io/managed-by": "opencode-router"} if labels is None else dict(labels)
    if session_hash is not None:
        all_labels["opencode.ai/session-hash"] = session_hash
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{name}", "labels": all_labels}}


def session(value: str = "8b6cc2aa9a45", cfg: SessionConfig | None = None) -> d.Session:
    sessions, _ = d.sessions_from_pods(cfg or config(), [pod("p", value)])
    return sessions[value]


# Pass timings of the scheduler's tests (seconds; no jitter).
TIMING = Timing(quiet=0.3, max_delay=1.5, removal_quiet=1.0, removal_max_delay=4.0, settle=1.0, jitter=0.0,
                resync=300.0, backoff=(1.0, 5.0))
