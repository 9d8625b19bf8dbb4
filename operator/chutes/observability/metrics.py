"""The operator's own Prometheus metrics (default registry), labelled by front door.

Front doors call :func:`reconcile_timer` around a reconcile, :data:`HOSTNAMES` when a source object's
published hostnames change, :func:`orphan_removed` when a sweep deletes something nobody wants any
more, and :func:`conflict` when a hostname is refused because someone else holds it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterable

import kopf
from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "CONFLICTS",
    "HOSTNAMES",
    "MANAGED_HOSTNAMES",
    "ORPHANS_REMOVED",
    "RECONCILES_WAITING",
    "RECONCILE_SECONDS",
    "REFUSALS",
    "REFUSED_SOURCES",
    "HostnameBook",
    "RefusalBook",
    "conflict",
    "orphan_removed",
    "outcome_of",
    "reconcile_timer",
]

RECONCILE_SECONDS = Histogram(
    "chutes_reconcile_duration_seconds",
    "Time spent reconciling one source object, by front door and outcome "
    "(success; retry: will try again; refused: waits for a spec change; error: unexpected failure).",
    ["front_door", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
MANAGED_HOSTNAMES = Gauge(
    "chutes_managed_hostnames",
    "Hostnames this operator instance currently publishes, by front door.",
    ["front_door"],
)
ORPHANS_REMOVED = Counter(
    "chutes_orphans_removed",
    "Objects removed by a sweep because no source object wants them any more, by front door and kind "
    "(dns_record, tunnel_rule, access_app, service_token, ingressroute...).",
    ["front_door", "kind"],
)
CONFLICTS = Counter(
    "chutes_conflicts",
    "Reconciles stopped because a hostname or object is held by another source or by something this "
    "operator does not own, by front door.",
    ["front_door"],
)

RECONCILES_WAITING = Gauge(
    "chutes_reconciles_waiting",
    "Reconciles waiting for one of the CHUTES_MAX_RECONCILES slots right now (a burst of objects being worked "
    "through).",
)

REFUSED_SOURCES = Gauge(
    "chutes_refused_sources",
    "Source objects whose wishes are refused in whole or in part right now (a conflict, an invalid hostname, no "
    "ingress IP...), by front door and reason. Set by the doors that track it (hosts).",
    ["front_door", "reason"],
)


def outcome_of(exc: BaseException | None) -> str:
    if exc is None:
        return "success"
    if isinstance(exc, kopf.TemporaryError):
        return "retry"
    if isinstance(exc, kopf.PermanentError):
        return "refused"
    return "error"


@contextlib.asynccontextmanager
async def reconcile_timer(front_door: str) -> AsyncIterator[None]:
    """Observe the duration of the block in :data:`RECONCILE_SECONDS`; exceptions pass through."""
    started = time.monotonic()
    try:
        yield
    except BaseException as exc:
        RECONCILE_SECONDS.labels(front_door=front_door, outcome=outcome_of(exc)).observe(time.monotonic() - started)
        raise
    RECONCILE_SECONDS.labels(front_door=front_door, outcome="success").observe(time.monotonic() - started)


def orphan_removed(front_door: str, kind: str, count: int = 1) -> None:
    if count > 0:
        ORPHANS_REMOVED.labels(front_door=front_door, kind=kind).inc(count)


def conflict(front_door: str) -> None:
    CONFLICTS.labels(front_door=front_door).inc()


class HostnameBook:
    """Which hostnames each source object publishes; keeps :data:`MANAGED_HOSTNAMES` equal to the number
    of distinct hostnames per front door. Thread-safe (tests run several operators in one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_door: dict[str, dict[str, frozenset[str]]] = {}

    def publish(self, front_door: str, source: str, hostnames: Iterable[str]) -> None:
        """``source`` (e.g. ``ChuteGateway/ns/name``) now publishes exactly ``hostnames``."""
        names = frozenset(h for h in hostnames if h)
        with self._lock:
            sources = self._by_door.setdefault(front_door, {})
            if names:
                sources[source] = names
            else:
                sources.pop(source, None)
            self._update(front_door)

    def forget(self, front_door: str, source: str) -> None:
        self.publish(front_door, source, ())

    def clear(self) -> None:
        """Forget every source (a new operator run in the same process: the tests run many)."""
        with self._lock:
            doors = list(self._by_door)
            self._by_door.clear()
        for front_door in doors:
            self._update(front_door)

    def hostnames(self, front_door: str) -> frozenset[str]:
        with self._lock:
            return frozenset().union(*self._by_door.get(front_door, {}).values())

    def _update(self, front_door: str) -> None:
        count = len(frozenset().union(*self._by_door.get(front_door, {}).values()))
        MANAGED_HOSTNAMES.labels(front_door=front_door).set(count)


HOSTNAMES = HostnameBook()


class RefusalBook:
    """Which reasons each source object is refused for right now; keeps :data:`REFUSED_SOURCES` equal to the
    number of sources per front door and reason. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_door: dict[str, dict[str, frozenset[str]]] = {}

    def refuse(self, front_door: str, source: str, reasons: Iterable[str]) -> None:
        """``source`` is refused for exactly ``reasons`` now (none: it is not refused)."""
        with self._lock:
            sources = self._by_door.setdefault(front_door, {})
            before = sources.get(source, frozenset())
            now = frozenset(reasons)
            if now:
                sources[source] = now
            else:
                sources.pop(source, None)
            for reason in before | now:
                count = sum(reason in held for held in sources.values())
                REFUSED_SOURCES.labels(front_door=front_door, reason=reason).set(count)

    def count(self, front_door: str, reason: str) -> int:
        with self._lock:
            return sum(reason in held for held in self._by_door.get(front_door, {}).values())

    def clear(self) -> None:
        with self._lock:
            doors, self._by_door = self._by_door, {}
        for front_door, sources in doors.items():
            for reason in frozenset().union(*sources.values()):
                REFUSED_SOURCES.labels(front_door=front_door, reason=reason).set(0)


REFUSALS = RefusalBook()
