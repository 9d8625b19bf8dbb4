"""Drift repair counting: writes made while a front door re-applies an unchanged spec.

A front door runs a reconcile that no spec change caused (a resync, a resume) inside
``with repairing("chutes"):``. Every write to Cloudflare that succeeds meanwhile put back something
that had drifted (steady state writes nothing), and is counted in ``chutes_drift_repairs_total``
by front door and object. The coalescing writers take the front door from each request when it is
queued (their flush runs in another task) and count the requests whose change they wrote.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Literal

from .metrics import DRIFT_REPAIRS

__all__ = ["DriftObject", "count", "current", "record_write", "repairing", "reusing_listings"]

DriftObject = Literal["dns_record", "tunnel_rule", "access_app", "access_policy", "service_token", "tunnel"]

_front_door: contextvars.ContextVar[str | None] = contextvars.ContextVar("chutes_drift_front_door", default=None)
_reuse: contextvars.ContextVar[bool] = contextvars.ContextVar("chutes_drift_reuse_listings", default=False)

# Direct writes (client.call) by operation; dns.batch and tunnels.config.put are counted by their
# writers, per request. idps.create is not a drift repair of anything a front door owns.
_WRITE_OBJECTS: dict[str, DriftObject] = {
    "tunnels.create": "tunnel",
    "tunnels.delete": "tunnel",
    "access.apps.create": "access_app",
    "access.apps.update": "access_app",
    "access.apps.delete": "access_app",
    "access.app_policies.create": "access_policy",
    "access.app_policies.update": "access_policy",
    "access.app_policies.delete": "access_policy",
    "access.policies.create": "access_policy",
    "access.policies.update": "access_policy",
    "access.policies.delete": "access_policy",
    "service_tokens.create": "service_token",
    "service_tokens.rotate": "service_token",
    "service_tokens.delete": "service_token",
    "dns.edit": "dns_record",
}


@contextlib.contextmanager
def repairing(front_door: str, *, reuse_listings: bool = True) -> Iterator[None]:
    """Count the Cloudflare writes made inside the block as drift repairs of `front_door`. With
    `reuse_listings` (a resync pass), the coalescing writers may find a request already satisfied in their
    last listing of the pass (see `dns.DnsWriter`, `tunnel_config.TunnelConfigWriter`); without it (a pass
    verifying a write of ours just made) every read is fresh."""
    token, reuse = _front_door.set(front_door), _reuse.set(reuse_listings)
    try:
        yield
    finally:
        _front_door.reset(token)
        _reuse.reset(reuse)


def current() -> str | None:
    """The front door repairing drift in this context, or None."""
    return _front_door.get()


def reusing_listings() -> bool:
    """Whether this context is a drift repair that may be answered from a pass's listings."""
    return _front_door.get() is not None and _reuse.get()


def count(front_door: str | None, obj: DriftObject, repairs: int = 1) -> None:
    if front_door is not None and repairs > 0:
        DRIFT_REPAIRS.labels(front_door=front_door, object=obj).inc(repairs)


def record_write(op: str) -> None:
    """A direct write `op` succeeded in this context."""
    obj = _WRITE_OBJECTS.get(op)
    if obj is not None:
        count(current(), obj)
