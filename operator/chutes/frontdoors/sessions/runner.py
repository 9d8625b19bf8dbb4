"""The one task per process that runs the level-based passes, woken by Pod events.

Pod events never publish anything themselves: they note which sessions the watch sees alive and wake
the task, which waits for the burst to settle (see :mod:`scheduler`) and runs one pass for all of them.
Failures never end the task; they only delay the next pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chutes.background import BackgroundTask, InBackground
from chutes.cloudflare_core import CloudflareError, CredentialsInvalid, RateLimited, TransientError
from chutes.frontdoors import repairs
from chutes.frontdoors.retries import CREDENTIALS_RETRY, REJECTED_RETRY
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.config import SessionConfig
from chutes.frontdoors.sessions.reconcile import PassResult, SessionPublisher
from chutes.frontdoors.sessions.scheduler import PassScheduler, Timing
from chutes.observability import metrics

logger = logging.getLogger(__name__)

FRONT_DOOR = "sessions"
GONE_MEMORY = 600.0  # seconds a "gone" report is kept (passes are much shorter)


class SessionLoop(InBackground):
    def __init__(
        self,
        config: SessionConfig,
        publisher: SessionPublisher,
        timing: Timing,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.publisher = publisher
        self._clock = clock
        self.scheduler = PassScheduler(timing, clock(), rng)
        self._alive: dict[str, str] = {}  # Pod uid -> session hash, as the watch reports them
        self._invalid: dict[str, str] = {}  # Pod uid -> its invalid hash
        self._typos: dict[str, tuple[str, ...]] = {}  # Pod uid -> its unknown annotation keys, as said
        self._gone: dict[str, float] = {}  # session hash -> when the watch saw its last Pod go
        self._wake = asyncio.Event()
        self._background = BackgroundTask("session-pods", self._run)
        self.passes = 0
        self.last_result: PassResult | None = None
        self.last_error: str | None = None
        self.running = False  # a pass is under way
        self._blocked: set[str] = set()

    # --- fed by the Pod watch (podwatch.py) -------------------------------------------------------------

    def pod_event(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        """Note what the watch says about one Pod; wake the task when the session set changed (status
        updates of running Pods change nothing and cost nothing)."""
        meta = pod.get("metadata") or {}
        if meta.get("namespace") != self.config.watch_namespace:
            return
        uid = str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}")
        value = d.session_hash(self.config, pod)
        previous = self._alive.get(uid)
        changed = addition = False
        if event_type == "DELETED" or value is None or not d.wants_session(self.config, pod):
            changed = self._alive.pop(uid, None) is not None
            self._invalid.pop(uid, None)
        elif d.hash_problem(self.config, value) is not None:
            changed = self._alive.pop(uid, None) is not None
            if self._invalid.get(uid) != value:  # a refusal to report (Warning Event) soon
                self._invalid[uid] = value
                changed = addition = True
        else:
            self._invalid.pop(uid, None)
            if self._alive.get(uid) != value:
                self._alive[uid] = value
                changed = addition = True
        typos = tuple(d.annotation_problems(pod)) if event_type != "DELETED" else ()
        if typos != self._typos.get(uid, ()):  # an unknown annotation key added (said soon) or fixed
            if typos:
                self._typos[uid] = typos
            else:
                self._typos.pop(uid, None)
            changed = addition = True
        if not changed:
            return
        now = self._clock()
        if previous is not None and previous not in self._alive.values():
            self._gone[previous] = now
        self.scheduler.changed(now, addition=addition)
        self._wake.set()

    def pods_listed(self, pods: Sequence[Mapping[str, Any]]) -> None:
        """A (re)listing of the watched Pods: each as an event, and the Pods noted before that it no longer
        holds as deleted (they went while no watch was open)."""
        seen = set()
        for pod in pods:
            meta = pod.get("metadata") or {}
            seen.add(str(meta.get("uid") or f"{meta.get('namespace')}/{meta.get('name')}"))
            self.pod_event(None, pod)
        for uid in (set(self._alive) | set(self._invalid)) - seen:
            self.pod_event("DELETED", {"metadata": {"namespace": self.config.watch_namespace, "uid": uid}})

    def alive_hashes(self) -> set[str]:
        return set(self._alive.values())

    def gone_since(self, since: float) -> set[str]:
        """Sessions whose last Pod the watch saw go at or after ``since`` (and none came back)."""
        alive = self.alive_hashes()
        self._gone = {value: at for value, at in self._gone.items() if at >= since - GONE_MEMORY}
        return {value for value, at in self._gone.items() if at >= since and value not in alive}

    def recently_gone(self) -> set[str]:
        """Sessions whose last Pod the watch saw go in the last GONE_MEMORY seconds (and none came back):
        their removal is explained, never held back by the sweep cap."""
        alive, horizon = self.alive_hashes(), self._clock() - GONE_MEMORY
        return {value for value, at in self._gone.items() if at >= horizon and value not in alive}

    # --- the task ----------------------------------------------------------------------------------

    def idle(self) -> bool:
        """Whether the door has nothing to do until its next timed pass (resync, cap window) or a new Pod event: a
        pass has run, none runs now nor is due for events seen, and the last one ended without a write (a write is
        followed by its verification pass) or a failure. Read on the operator's loop (``chutes plan`` waits for it)."""
        result = self.last_result
        return (self.passes > 0 and not self.running and not self.scheduler.pending and self.last_error is None
                and result is not None and not result.wrote)

    async def _sleep_until_due(self) -> None:
        while True:
            wait = self.scheduler.due() - self._clock()
            if wait <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):  # not wait_for: on 3.11 it may swallow a cancel (stop) as it wakes
                    await self._wake.wait()

    def _count(self, result: PassResult) -> None:
        """Metrics: published hostnames, newly blocked ones (conflicts), orphans removed."""
        metrics.HOSTNAMES.publish(FRONT_DOOR, f"Session/{self.config.watch_namespace}", result.published)
        for _ in set(result.blocked) - self._blocked:
            metrics.conflict(FRONT_DOOR)
        self._blocked = set(result.blocked)
        metrics.orphan_removed(FRONT_DOOR, "dns_record", result.removed)

    async def _run(self) -> None:
        while True:
            await self._sleep_until_due()
            started = self._clock()
            cause = self.scheduler.cause()
            repairing = repairs.session_pass_repairs(cause)  # not a pass for Pod events
            for_events = self.scheduler.for_events_only(started)
            self.scheduler.started(started)
            self.running = True
            try:
                async with metrics.reconcile_timer(FRONT_DOOR):
                    # a verification pass (after a write of ours) reads afresh: it looks for a write lost since
                    with repairs.scope(FRONT_DOOR, repairing, reuse_listings=cause == "resync"):
                        result = await self.publisher.run_pass(self.alive_hashes,
                                                               functools.partial(self.gone_since, started),
                                                               self.recently_gone, for_events=for_events)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # never let the task die: log, back off, try again
                delay = self.scheduler.failed(self._clock(), _retry_delay(error))
                self.last_error = f"{type(error).__name__}: {error}"
                if isinstance(error, CloudflareError | TimeoutError):  # e.g. another replica's pass held the Lease
                    logger.warning("Session pass failed (%s); retrying in %.1f s", self.last_error, delay)
                else:
                    logger.exception("Session pass failed; retrying in %.1f s", delay)
                continue
            finally:
                self.running = False
            self.passes += 1
            self._count(result)
            self.last_result, self.last_error = result, None
            self.scheduler.finished(self._clock(), result.wrote, held_for=result.held_for)
            steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in result.seconds.items())
            logger.log(logging.INFO if result.wrote else logging.DEBUG,
                       "Session pass %d: %d sessions, %d blocked, %d refused, wrote=%s (%s)", self.passes,
                       result.sessions, len(result.blocked), result.refused, result.wrote, steps)


def _retry_delay(error: Exception) -> float | None:
    if isinstance(error, RateLimited | TransientError):
        return error.delay
    if isinstance(error, CredentialsInvalid):
        return CREDENTIALS_RETRY
    if isinstance(error, CloudflareError):
        return REJECTED_RETRY  # e.g. the tunnel or zone does not exist: nothing changes soon
    return None
