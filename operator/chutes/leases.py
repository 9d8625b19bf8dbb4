"""One writer per Cloudflare tunnel per installation, across processes: a ``coordination.k8s.io/v1`` Lease
per tunnel in the ledger namespace, held around each configuration flush (GET .. PUT).

The coalescing writer serialises one process's flushes; replicas (the session door's sidecars, an operator
rollout's surge Pod) each have their own. Without the Lease two of them could GET the same version and the
second PUT would drop the first one's rules. The Lease is ``chutes-tunnel-<sha256(owner|account|tunnel)[:20]>``
and is taken when absent, free, expired or already ours (a replace conditional on its resourceVersion: of
two takers exactly one wins); otherwise it is polled until free. It is renewed while held, and released
by clearing its holder.
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
from collections.abc import AsyncIterator, Mapping
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
MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_OWNER = "chutes.troubleshat.com/lease-owner"
TUNNEL_ANNOTATION = "chutes.troubleshat.com/tunnel"  # <account>/<tunnel id>, for people reading the Lease


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
    """Whether the holder let the Lease lapse: renewTime (else acquireTime) + leaseDurationSeconds is past.
    A Lease without a readable time or duration counts as lapsed (it can never be renewed meaningfully)."""
    renewed = _parse_time(spec.get("renewTime")) or _parse_time(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int) or duration <= 0:
        return True
    return renewed + timedelta(seconds=duration) < now


class TunnelLeases:
    """Lease-based tunnel locks of one installation; :meth:`lock` fits ``CloudflareCore(tunnel_lock=...)``."""

    def __init__(self, api: client.ApiClient, namespace: str, owner_id: str, identity: str | None = None, *,
                 duration: int = LEASE_SECONDS, poll: float = POLL_SECONDS, wait: float = WAIT_SECONDS) -> None:
        self.api = api
        self.namespace = namespace
        self.owner_id = owner_id
        self.identity = identity or default_identity()
        self.duration = duration
        self.poll = poll
        self.wait = wait
        self._local: dict[str, asyncio.Lock] = {}  # one holder per Lease within this process

    def __repr__(self) -> str:
        return f"TunnelLeases(namespace={self.namespace!r}, identity={self.identity!r})"

    @contextlib.asynccontextmanager
    async def lock(self, account_id: str, tunnel_id: str) -> AsyncIterator[None]:
        """Hold the tunnel's Lease for the duration of the block; :class:`TimeoutError` when another holder
        keeps it longer than ``wait`` seconds."""
        name = lease_name(self.owner_id, account_id, tunnel_id)
        deadline = time.monotonic() + self.wait
        local = self._local.setdefault(name, asyncio.Lock())
        try:
            async with asyncio.timeout(self.wait):
                await local.acquire()
        except TimeoutError:
            raise TimeoutError(f"tunnel {account_id}/{tunnel_id}: lease {self.namespace}/{name} still held by this "
                               f"process after {self.wait:g}s") from None
        try:
            held = await self._acquire(name, f"{account_id}/{tunnel_id}", deadline)
            renewing = asyncio.create_task(self._renew(name, held), name=f"renew {name}")
            try:
                yield
            finally:
                renewing.cancel()
                await asyncio.wait([renewing])  # never raises the renewal's own cancellation
                if not renewing.cancelled() and renewing.exception() is None:
                    held = renewing.result()
                await self._release(name, held)
        finally:
            local.release()

    # --- internals --------------------------------------------------------------------------------

    def _body(self, name: str, tunnel: str, current: Mapping[str, Any] | None, now: datetime,
              holder: str | None) -> dict[str, Any]:
        """The Lease with ``holder`` (None: free), keeping the current metadata and conditional on its
        resourceVersion."""
        meta = dict((current or {}).get("metadata") or {})
        labels = {**(meta.get("labels") or {}), MANAGED_BY: "chutes-operator", LABEL_OWNER: self.owner_id}
        annotations = {**(meta.get("annotations") or {}), TUNNEL_ANNOTATION: tunnel}
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
        waiting_for: str | None = None
        while True:
            current = await kube.read_lease(self.api, self.namespace, name)
            now = datetime.now(UTC)
            if current is None:
                created = await kube.create_lease(self.api, self.namespace, self._body(name, tunnel, None, now,
                                                                                      self.identity))
                if created is not None:
                    return created
                continue  # created by another holder meanwhile: read it
            spec = current.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            if not holder or holder == self.identity or expired(spec, now):
                if holder and holder != self.identity:
                    logger.info("Taking over the expired lease %s/%s of tunnel %s from %s", self.namespace, name,
                                tunnel, holder)
                try:
                    taken = await kube.replace_lease(self.api, self.namespace, name,
                                                     self._body(name, tunnel, current, now, self.identity))
                except kube.StaleObject:
                    taken = None  # another taker won the race (409): look again
                if taken is not None:
                    return taken
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"tunnel {tunnel}: could not take lease {self.namespace}/{name}")
                continue
            if time.monotonic() >= deadline:
                raise TimeoutError(f"tunnel {tunnel}: lease {self.namespace}/{name} still held by {holder} after "
                                   f"{self.wait:g}s")
            if waiting_for != holder:
                logger.debug("Tunnel %s: waiting for lease %s/%s held by %s", tunnel, self.namespace, name, holder)
                waiting_for = holder
            await asyncio.sleep(self.poll)

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

    async def _release(self, name: str, held: dict[str, Any]) -> None:
        """Clear the holder (conditional on the version we wrote; re-read once on a conflict). Failures are
        only logged: the Lease then expires by itself."""
        tunnel = str(((held.get("metadata") or {}).get("annotations") or {}).get(TUNNEL_ANNOTATION) or "")
        current: dict[str, Any] | None = held
        try:
            for _attempt in range(2):
                if current is None or (current.get("spec") or {}).get("holderIdentity") != self.identity:
                    return  # gone, or someone else's by now
                try:
                    await kube.replace_lease(self.api, self.namespace, name,
                                             self._body(name, tunnel, current, datetime.now(UTC), None))
                    return
                except kube.StaleObject:
                    current = await kube.read_lease(self.api, self.namespace, name)
            logger.warning("Could not release lease %s/%s of tunnel %s: it kept changing", self.namespace, name,
                           tunnel)
        except Exception as exc:  # the flush succeeded; the Lease expires by itself
            logger.warning("Could not release lease %s/%s of tunnel %s: %s", self.namespace, name, tunnel, exc)
