"""The door's own loop: every source it hears of is reconciled through one :class:`WorkQueue` (at most once at a
time, again after a change seen meanwhile, after a growing delay when the server failed), every known source
again each ``CHUTES_RESYNC_INTERVAL`` seconds (drift repaired, refusals re-checked), and an orphan sweep each
``CHUTES_SWEEP_INTERVAL`` seconds. Level-based: the watch events only say which source to look at; every pass
reads the source and the server afresh.

No timers on the watched objects (kopf would add its finalizer to them): IngressRoutes never get one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from chutes import conditions as c
from chutes.frontdoors.hosts import desired as d
from chutes.frontdoors.hosts import orphans
from chutes.frontdoors.hosts.reconcile import Door, reconcile
from chutes.frontdoors.hosts.workqueue import WorkQueue
from chutes.hosts_core.errors import HostNotFound, HostsError, HostsUnavailable

__all__ = ["HostsRunner"]

logger = logging.getLogger(__name__)

PROBE_ID = "0" * 26  # a well-formed id no entry has: NOT_FOUND means the server answered
RESUME_RETRY = (1.0, 30.0)  # the first and the longest wait between probes until the server answers at start
WORKERS = 16
Fingerprint = tuple[Any, ...]


def fingerprint(body: dict[str, Any]) -> Fingerprint:
    """What of an object can change what its source wants (not our own status, annotation or finalizer
    writes, whose echoes would only cost a pass)."""
    meta = body.get("metadata") or {}
    return (meta.get("generation"), bool(meta.get("deletionTimestamp")),
            (meta.get("labels") or {}).get(d.IGNORE_LABEL), meta.get("uid"))


class HostsRunner:
    def __init__(self, door: Door, *, resync_interval: float, sweep_interval: float, sweep_max_deletions: int,
                 namespaces: Sequence[str], operator_pod: dict[str, Any] | None = None,
                 workers: int = WORKERS) -> None:
        self.door = door
        self.queue: WorkQueue[d.Source] = WorkQueue(self._work, workers)
        self.known: set[d.Source] = set()
        self._seen: dict[tuple[str, str, str], Fingerprint] = {}
        self._resync = resync_interval
        self._sweep = sweep_interval
        self._cap = sweep_max_deletions
        self._namespaces = tuple(namespaces)
        self._operator_pod = operator_pod
        self._tasks: list[asyncio.Task[None]] = []

    # -- what the watch says ---------------------------------------------------------------------------
    def heard(self, kind: str, event_type: str | None, body: dict[str, Any]) -> None:
        """A watch event of a HostMapping, IngressRoute or IngressRouteTCP: its source is looked at, unless only
        our own writes changed the object."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        family: d.Family = "HostMapping" if kind == "HostMapping" else "routes"
        source = d.Source(family, namespace, name)
        key = (kind, namespace, name)
        if event_type == "DELETED":
            self._seen.pop(key, None)
        else:
            print_ = fingerprint(body)
            if self._seen.get(key) == print_ and source in self.known:
                return
            self._seen[key] = print_
        self.known.add(source)
        self.queue.want(source)

    # -- running -------------------------------------------------------------------------------------------
    async def _work(self, source: d.Source) -> float | None:
        result = await reconcile(self.door, source)
        if not result.exists and result.retry is None:
            self.known.discard(source)
            self.door.said.pop(source, None)
        return result.retry

    async def probe(self) -> bool:
        """Ask the server something cheap; whether it answered (kept for readiness)."""
        try:
            await self.door.backend.get(PROBE_ID)
        except HostNotFound:
            pass
        except HostsUnavailable as exc:
            logger.warning("router-hosts server not answering: %s", exc.message)
            self.door.answered = False
            return False
        except HostsError:
            pass  # it answered, with a refusal
        self.door.answered = True
        return True

    def start(self) -> None:
        """The queue, the resync and the sweep; in the background, a first probe of the server (a server that
        does not answer never holds the operator's start) and, once it answers, a first sweep pass: the sources
        deleted while no replica watched (IngressRoutes have no finalizer) lose their entries at the restart, not
        a sweep interval later."""
        self._tasks = [asyncio.create_task(self.queue.run(), name="hosts queue"),
                       asyncio.create_task(self._resume(), name="hosts resume"),
                       asyncio.create_task(self._every(self._resync, self._resync, self.resync), name="hosts resync"),
                       asyncio.create_task(self._every(self._sweep, self._sweep, self.sweep), name="hosts sweep")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _resume(self) -> None:
        delay = RESUME_RETRY[0]
        while not await self.probe():
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUME_RETRY[1])
        logger.info("router-hosts server answered")
        try:
            await self.sweep()
        except Exception:
            logger.exception("router-hosts: the sweep at start failed; the next is in %.0f s", self._sweep)

    @staticmethod
    async def _every(first: float, interval: float, what: Callable[[], Awaitable[Any]]) -> None:
        await asyncio.sleep(first)
        while True:
            try:
                await what()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("router-hosts %s failed; tried again in %.0f s", what.__name__, interval)
            await asyncio.sleep(interval)

    async def resync(self) -> None:
        """Every known source again (drift, refusals, retries that wait for no event)."""
        if self.door.answered is not True:
            await self.probe()
        for source in sorted(self.known):
            self.queue.want(source)

    async def sweep(self) -> int:
        """One orphan sweep pass; returns how many sources it handed to the queue."""
        try:
            entries = await self.door.backend.list_all()
        except HostsError as exc:
            logger.warning("orphan sweep skipped: listing the router-hosts server failed: %s", exc.message)
            return 0
        try:
            live = await orphans.list_sources(self.door.api, self._namespaces)
        except Exception as exc:
            logger.warning("orphan sweep skipped: listing the sources failed: %s", exc)
            return 0
        watched = (lambda ns: ns in self._namespaces) if self._namespaces else (lambda ns: True)
        found = orphans.orphans(entries, live, watched)
        now, later = orphans.within_cap(found, self._cap)
        for source in now:
            logger.info("orphan sweep: %s is gone and left %d entries", source.label, len(found[source]))
            self.known.add(source)
            self.queue.want(source)
        if later:
            waiting = sum(len(found[source]) for source in later)
            message = (f"orphan sweep of router-hosts entries: {waiting} entries of {len(later)} gone sources wait "
                       f"for the next pass (at most {self._cap} per pass, CHUTES_SWEEP_MAX_DELETIONS)")
            logger.warning(message)
            if self._operator_pod is not None:
                with contextlib.suppress(Exception):
                    await self.door.post_event(self._operator_pod, "Warning", c.SWEEP_CAP_REACHED, message)
        return len(now)
