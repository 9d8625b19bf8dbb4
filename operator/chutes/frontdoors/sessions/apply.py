"""The session door's *apply* step: the admitted change set of one pass through the core, in the batches its
writers want, never change by change: (1) the records to create or update, in one DNS sync on the pass's own
listing (a name the core still refuses comes back in `Applied.failed`: its session gets nothing else); (2) at once,
the tunnel rules (the coalescing writer, under the tunnel's Lease, touching only the hostnames of admitted changes,
each proven ours by its record) and the IngressRoutes; (3) the stale records, by id, once their rules are gone. A
session whose last Pod the watch saw go meanwhile gets no rule nor IngressRoute (its record goes next pass).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from kubernetes_asyncio import client

from chutes import kube
from chutes.cloudflare_core import CloudflareCore, CloudflareError, CredentialsInvalid, TransientError
from chutes.cloudflare_core.models import DesiredRecord, DnsRecord
from chutes.frontdoors.changes import Admitted, Change
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.config import SessionConfig
from chutes.frontdoors.sessions.decide import Write

__all__ = ["Applied", "Stopwatch", "apply", "together"]

logger = logging.getLogger(__name__)

KUBE_CONCURRENCY = 16
T = TypeVar("T")


@dataclass
class Applied:
    failed: Mapping[str, CloudflareError] = field(default_factory=dict)  # hostname -> why its record was refused
    wrote: bool = False
    removed: tuple[str, ...] = ()  # hostnames of the stale records deleted (or found gone)
    left: set[str] = field(default_factory=set)  # hostnames of the sessions gone meanwhile: not published


async def apply(core: CloudflareCore, api: client.ApiClient, config: SessionConfig, account_id: str,
                admitted: Admitted[Write], listed: Sequence[DnsRecord], gone: Callable[[], set[str]],
                clock: Stopwatch) -> Applied:
    """Make the admitted changes (see the module); a transient failure fails the pass (retried)."""
    now = admitted.now
    ensure = [ch.payload.record for ch in now if isinstance(ch.payload.record, DesiredRecord)]
    applied = Applied()
    if ensure:
        dns = await clock.timed("dns", core.sync_dns_records(config.zone_id, ensure, lambda _: False,
                                                                listed=listed))  # stale records: deleted by id later
        applied.failed, applied.wrote = dns.failed, dns.written
    left = applied.left = {d.hostname(config, value) for value in gone()}
    keep = [change for change in now if change.payload.hostname not in applied.failed]
    rules_written, routes_written = await together(
        clock.timed("tunnel", _rules(core, config, account_id, [ch for ch in keep if ch.kind == "tunnel_rule"], left)),
        clock.timed("routes", _routes(api, config, [ch for ch in keep if ch.kind == "IngressRoute"], left)),
    )
    stale = [ch.payload.record for ch in now if ch.action == "delete" and isinstance(ch.payload.record, DnsRecord)]
    applied.removed = await clock.timed("dns_delete", _delete_stale(core, config.zone_id, stale))
    applied.wrote = applied.wrote or rules_written or routes_written or bool(applied.removed)
    return applied


async def _rules(core: CloudflareCore, config: SessionConfig, account_id: str, changes: Sequence[Change[Write]],
                 left: set[str]) -> bool:
    if not changes:
        return False
    wanted = [ch.payload.rule for ch in changes if ch.payload.rule is not None and ch.payload.hostname not in left]
    touched = frozenset(change.payload.hostname for change in changes)
    synced = await core.sync_ingress_rules(account_id, config.tunnel_id, wanted,
                                           functools.partial(d.owns_rule, proven=touched))
    for host, path in sorted(synced.refused, key=str):
        logger.warning("Tunnel %s: the rule of %s%s is not ours: left untouched", config.tunnel_id, host, path or "")
    return synced.written


async def _routes(api: client.ApiClient, config: SessionConfig, changes: Sequence[Change[Write]],
                  left: set[str]) -> bool:
    route_api = (api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, d.INGRESSROUTE_PLURAL, config.ingressroute_namespace)
    limit = asyncio.Semaphore(KUBE_CONCURRENCY)

    async def bounded(call: Awaitable[bool]) -> bool:
        async with limit:
            return await call

    calls: list[Awaitable[bool]] = []
    for change in changes:
        route, gone = change.payload.route, change.payload.hostname in left
        if change.action == "delete" or (gone and change.action == "update"):
            calls.append(kube.delete_custom(*route_api, change.name))
        elif route is not None and not gone:
            patch = {"metadata": {"labels": route["metadata"]["labels"]}, "spec": route["spec"]}
            calls.append(kube.create_custom(*route_api, dict(route)) if change.action == "create" else
                         kube.patch_custom(*route_api, change.name, patch))
    await together(*(bounded(call) for call in calls))
    return bool(calls)


async def _delete_stale(core: CloudflareCore, zone_id: str, stale: Sequence[DnsRecord]) -> tuple[str, ...]:
    """Delete the stale records (their rules are gone by now). A record Cloudflare refuses to delete is logged and
    retried next pass (the record, still proven ours, keeps being stale); a transient failure fails the pass."""
    if not stale:
        return ()
    try:
        return await core.delete_dns_records(zone_id, stale)
    except (TransientError, CredentialsInvalid):
        raise
    except CloudflareError as error:
        logger.warning("Could not delete every stale session DNS record: %s", error)
        return ()


async def together(*steps: Awaitable[bool]) -> list[bool]:
    """Run the steps concurrently; when some fail, raise the first failure once all have ended (none is left
    running unobserved)."""
    outcomes = await asyncio.gather(*steps, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [bool(outcome) for outcome in outcomes]


class Stopwatch:
    def __init__(self) -> None:
        self._last = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name], self._last = now - self._last, now

    async def timed(self, name: str, step: Awaitable[T]) -> T:
        started = time.monotonic()
        try:
            return await step
        finally:
            self.laps[name] = time.monotonic() - started
