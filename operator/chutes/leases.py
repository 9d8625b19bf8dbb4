"""One writer per Cloudflare tunnel per installation, across processes: a ``coordination.k8s.io/v1`` Lease
per tunnel in the ledger namespace, held around each configuration flush (GET .. PUT).

The coalescing writer serialises one process's flushes; replicas (the session door's sidecars, an operator
rollout's surge Pod) each have their own. Without the Lease two of them could GET the same version and the
second PUT would drop the first one's rules. The Lease is ``chutes-tunnel-<sha256(owner|account|tunnel)[:20]>``
and is taken when absent, free, expired or already ours (a replace conditional on its resourceVersion: of
two takers exactly one wins); otherwise it is polled until free. It is renewed while held, and released
by clearing its holder.

Expiry is judged on the observer's clock, as client-go's leader election does: a Lease whose holder,
renewTime and resourceVersion have not changed for its ``leaseDurationSeconds`` since this process first saw
it so (monotonic clock) has lapsed, whatever its renewTime says (a holder whose clock ran ahead, then died,
must not keep every writer out). A renewTime + duration already past is a lapse too (a restarted process
need not wait a whole duration for a holder that died long ago).

A Lease written with our identity is never left held by a lock that does not hold it any more: the release
at the end of the block, and the one after an acquisition that was cancelled or failed once its write may
have landed, run to their end (bounded by ``RELEASE_SECONDS``) even when the waiting task is cancelled
meanwhile, a second time included (e.g. an operator stopping in the middle of a pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes_asyncio import client

from chutes import kube

logger = logging.getLogger(__name__)

NAME_PREFIX = "chutes-tunnel-"
API_VERSION = "coordination.k8s.io/v1"
MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
LEASE_SECONDS = 30
POLL_SECONDS = 0.2
WAIT_SECONDS = 60.0
RELEASE_SECONDS = 5.0  # at most this long for one release (it is best effort: the Lease lapses anyway)
MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER = "chutes.troubleshat.com/lease-owner"
TUNNEL_ANNOTATION = "chutes.troubleshat.com/tunnel"  # <account>/<tunnel id>, for people reading the Lease
NOTE_ANNOTATION = "chutes.troubleshat.com/last-pass"  # what the last holder left for the next one (see Held)


def default_identity(environ: Mapping[str, str] | None = None) -> str:
    """``<POD_ID or hostname>-<pid>-<random>``: distinct between replicas, processes and restarts."""
    env = os.environ if environ is None else environ
    host = env.get("POD_ID") or env.get("HOSTNAME") or socket.gethostname()
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def lease_name(owner_id: str, account_id: str, tunnel_id: str) -> str:
    return NAME_PREFIX + hashlib.sha256(f"{owner_id}|{account_id}|{tunnel_id}".encode()).hexdigest()[:20]


def micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(MICRO_TIME)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def expired(spec: Mapping[str, Any], now: datetime) -> bool:
    """Whether the holder let the Lease lapse by its own times: renewTime (else acquireTime) +
    leaseDurationSeconds is past. A Lease without a readable time or duration counts as lapsed (it can never be
    renewed meaningfully). Only one of the two reasons :class:`TunnelLeases` takes a Lease over for: see
    :meth:`TunnelLeases.lapsed` for the other (the observer's clock)."""
    renewed = _parse_time(spec.get("renewTime")) or _parse_time(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int) or duration <= 0:
        return True
    return renewed + timedelta(seconds=duration) < now


def _observed_state(lease: Mapping[str, Any]) -> tuple[str, str, str]:
    """What a live holder changes at each renewal: holder, renewTime, resourceVersion."""
    spec, meta = lease.get("spec") or {}, lease.get("metadata") or {}
    return (str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""),
            str(meta.get("resourceVersion") or ""))


class Held:
    """Yielded by :meth:`TunnelLeases.lock`: the note the Lease carried when taken (what its last holder left:
    e.g. the session door's digest of the state its last pass made true), and the note to leave on release
    (``leave``; None keeps the one found). Never a secret: the Lease is readable."""

    def __init__(self, found: str | None) -> None:
        self.found = found
        self.leave: str | None = None


class TunnelLeases:
    """Lease-based tunnel locks of one installation; :meth:`lock` fits ``CloudflareCore(tunnel_lock=...)``.
    :meth:`aclose` waits for releases still under way (before the API client is closed)."""

    def __init__(self, api: client.ApiClient, namespace: str, owner_id: str, identity: str | None = None, *,
                 duration: int = LEASE_SECONDS, poll: float = POLL_SECONDS, wait: float = WAIT_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.namespace = namespace
        self.owner_id = owner_id
        self.identity = identity or default_identity()
        self.duration = duration
        self.poll = poll
        self.wait = wait
        self._clock = clock  # the observer's clock (monotonic): expiry never trusts the holder's
        self._local: dict[str, asyncio.Lock] = {}  # one holder per Lease within this process
        self._observed: dict[str, tuple[tuple[str, str, str], float]] = {}  # name -> (state, first seen)
        self._releasing: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"TunnelLeases(namespace={self.namespace!r}, identity={self.identity!r})"

    @contextlib.asynccontextmanager
    async def lock(self, account_id: str, tunnel_id: str) -> AsyncIterator[Held]:
        """Hold the tunnel's Lease for the duration of the block; :class:`TimeoutError` when another holder
        keeps it longer than ``wait`` seconds. Yields the :class:`Held` note."""
        name, tunnel = lease_name(self.owner_id, account_id, tunnel_id), f"{account_id}/{tunnel_id}"
        deadline = time.monotonic() + self.wait
        local = self._local.setdefault(name, asyncio.Lock())
        try:
            async with asyncio.timeout(self.wait):
                await local.acquire()
        except TimeoutError:
            raise TimeoutError(f"tunnel {account_id}/{tunnel_id}: lease {self.namespace}/{name} still held by this "
                               f"process after {self.wait:g}s") from None
        try:
            held = await self._acquire(name, tunnel, deadline)
            renewing = asyncio.create_task(self._renew(name, held), name=f"renew {name}")
            note = Held(((held.get("metadata") or {}).get("annotations") or {}).get(NOTE_ANNOTATION))
            try:
                yield note
            finally:
                renewing.cancel()
                await self._settle(name, self._let_go(name, renewing, held, note.leave))
        finally:
            local.release()

    async def aclose(self) -> None:
        """Wait (at most ``RELEASE_SECONDS``) for releases still under way: call it before closing the API
        client, so that a release is never cut off by the client's close."""
        if self._releasing:
            await asyncio.wait(set(self._releasing), timeout=RELEASE_SECONDS)

    def lapsed(self, name: str, lease: Mapping[str, Any], now: datetime | None = None) -> bool:
        """Whether the Lease `name` has lapsed: its holder, renewTime and resourceVersion have not changed for
        its leaseDurationSeconds since this process first saw them so (the observer's monotonic clock, as
        client-go judges it), or its renewTime + duration is past (:func:`expired`). Notes what it saw."""
        spec = lease.get("spec") or {}
        state, seen_now = _observed_state(lease), self._clock()
        seen = self._observed.get(name)
        if seen is None or seen[0] != state:
            seen = self._observed[name] = (state, seen_now)
        if expired(spec, now or datetime.now(UTC)):
            return True
        duration = spec.get("leaseDurationSeconds")
        return isinstance(duration, int) and seen_now - seen[1] >= duration

    # --- internals --------------------------------------------------------------------------------

    def _body(self, name: str, tunnel: str, current: Mapping[str, Any] | None, now: datetime,
              holder: str | None, note: str | None = None) -> dict[str, Any]:
        """The Lease with ``holder`` (None: free) and `note` (None: the current one kept), keeping the current
        metadata and conditional on its resourceVersion."""
        meta = dict((current or {}).get("metadata") or {})
        labels = {**(meta.get("labels") or {}), MANAGED_BY: "chutes-operator", LABEL_OWNER: self.owner_id}
        annotations = {**(meta.get("annotations") or {}), TUNNEL_ANNOTATION: tunnel}
        if note is not None:
            annotations[NOTE_ANNOTATION] = note
        meta.update(name=name, namespace=self.namespace, labels=labels, annotations=annotations)
        spec = dict((current or {}).get("spec") or {})
        previous = spec.get("holderIdentity")
        spec["leaseDurationSeconds"] = self.duration
        if holder is None:
            spec.pop("holderIdentity", None)
        else:
            if previous != holder:
                spec["acquireTime"] = micro_time(now)
                if current is not None:
                    spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["holderIdentity"] = holder
            spec["renewTime"] = micro_time(now)
        return {"apiVersion": API_VERSION, "kind": "Lease", "metadata": meta, "spec": spec}

    async def _acquire(self, name: str, tunnel: str, deadline: float) -> dict[str, Any]:
        """The Lease, written with our identity. Cancelled or failed while a write of ours was under way (it
        may have landed): the Lease is released if it names us, before the cancellation or error goes on."""
        writing = False
        waiting_for: str | None = None
        try:
            while True:
                current = await kube.read_lease(self.api, self.namespace, name)
                now = datetime.now(UTC)
                if current is None:
                    writing = True
                    created = await kube.create_lease(self.api, self.namespace,
                                                      self._body(name, tunnel, None, now, self.identity))
                    writing = False
                    if created is not None:
                        self._observed.pop(name, None)
                        return created
                    continue  # created by another holder meanwhile: read it
                holder = str((current.get("spec") or {}).get("holderIdentity") or "")
                if not holder or holder == self.identity or self.lapsed(name, current, now):
                    if holder and holder != self.identity:
                        logger.info("Taking over the expired lease %s/%s of tunnel %s from %s", self.namespace,
                                    name, tunnel, holder)
                    writing = True
                    try:
                        taken = await kube.replace_lease(self.api, self.namespace, name,
                                                         self._body(name, tunnel, current, now, self.identity))
                    except kube.StaleObject:
                        taken = None  # another taker won the race (409): look again
                    writing = False
                    if taken is not None:
                        self._observed.pop(name, None)
                        return taken
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"tunnel {tunnel}: could not take lease {self.namespace}/{name}")
                    continue
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"tunnel {tunnel}: lease {self.namespace}/{name} still held by {holder} "
                                       f"after {self.wait:g}s")
                if waiting_for != holder:
                    logger.debug("Tunnel %s: waiting for lease %s/%s held by %s", tunnel, self.namespace, name,
                                 holder)
                    waiting_for = holder
                await asyncio.sleep(self.poll)
        except BaseException:
            if writing:  # our write may have landed: never leave the Lease held by a lock that does not hold it
                await self._settle(name, self._release(name, None))
            raise

    async def _renew(self, name: str, held: dict[str, Any]) -> dict[str, Any]:
        """Renew every third of the duration while the block runs (a slow flush keeps its Lease); returns
        the last version written when cancelled."""
        tunnel = str(((held.get("metadata") or {}).get("annotations") or {}).get(TUNNEL_ANNOTATION) or "")
        try:
            while True:
                await asyncio.sleep(self.duration / 3)
                try:
                    renewed = await kube.replace_lease(self.api, self.namespace, name,
                                                       self._body(name, tunnel, held, datetime.now(UTC),
                                                                  self.identity))
                except kube.StaleObject:
                    renewed = None
                except Exception as exc:  # a failed renewal must not break the flush it guards
                    logger.warning("Could not renew lease %s/%s: %s", self.namespace, name, exc)
                    continue
                if renewed is None:
                    logger.warning("Lease %s/%s of tunnel %s was taken or deleted while held", self.namespace,
                                   name, tunnel)
                    return held
                held = renewed
        except asyncio.CancelledError:
            return held

    async def _let_go(self, name: str, renewing: asyncio.Task[dict[str, Any]], held: dict[str, Any],
                      note: str | None) -> None:
        """End of the block: the renewal stopped (its last version is the one to release), then the release
        (leaving `note`, if any)."""
        await asyncio.wait([renewing])  # never raises the renewal's own cancellation
        if not renewing.cancelled() and renewing.exception() is None:
            held = renewing.result()
        await self._release(name, held, note)

    async def _settle(self, name: str, release: Coroutine[Any, Any, None]) -> None:
        """Run `release` to its end even when the calling task is cancelled meanwhile (once more, or again and
        again): cut off halfway, it would leave the Lease held by a process that no longer holds it, and every
        writer of the tunnel waits until it lapses. The caller's cancellation is raised once it is done (the
        release itself gives up after ``RELEASE_SECONDS``)."""
        task = asyncio.create_task(release, name=f"release {name}")
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
        cancelled = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise  # the release itself was cancelled (the event loop is closing)
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    async def _release(self, name: str, held: dict[str, Any] | None, note: str | None = None) -> None:
        """Clear the holder when the Lease still names us (conditional on the version we wrote, else on the one
        read when `held` is None; re-read once on a conflict). Failures are only logged: the Lease then expires
        by itself."""
        tunnel = str((((held or {}).get("metadata") or {}).get("annotations") or {}).get(TUNNEL_ANNOTATION) or "")
        try:
            async with asyncio.timeout(RELEASE_SECONDS):
                current = held if held is not None else await kube.read_lease(self.api, self.namespace, name)
                for _attempt in range(2):
                    if current is None or (current.get("spec") or {}).get("holderIdentity") != self.identity:
                        return  # gone, or someone else's by now
                    tunnel = tunnel or str(((current.get("metadata") or {}).get("annotations") or {}).get(
                        TUNNEL_ANNOTATION) or "")
                    try:
                        await kube.replace_lease(self.api, self.namespace, name,
                                                 self._body(name, tunnel, current, datetime.now(UTC), None, note))
                        return
                    except kube.StaleObject:
                        current = await kube.read_lease(self.api, self.namespace, name)
            logger.warning("Could not release lease %s/%s of tunnel %s: it kept changing", self.namespace, name,
                           tunnel)
        except Exception as exc:  # best effort (timeouts included): the Lease expires by itself
            logger.warning("Could not release lease %s/%s of tunnel %s: %s", self.namespace, name, tunnel,
                           f"{type(exc).__name__}: {exc}")
