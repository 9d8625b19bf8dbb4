"""One level-based pass: live session Pods (listed afresh) against what is published in Cloudflare and
Kubernetes, and the writes that make them agree.

Order, so that a crash never leaves a rule without the record that proves it ours:

1. the installation's hostname claims (one listing): a session whose hostname another source (another
   door's ChuteGateway or HTTPRoute) claims gets ``HostnameConflict`` and nothing is written for it, unless
   it already holds a record proven its own there (its record, made first, is its claim; the other
   source's DNS check fails on it). This door writes no claims: its DNS record is its claim;
2. DNS adds and updates (one listing of the zone + batches, through the core's DNS writer): a name held by
   a record that is not the session's blocks that session only, and a blocked session gets nothing else.
   Stale records are only listed here (``defer_deletes``);
3. at once, the tunnel rules (one GET + one PUT through the core's tunnel-config writer, under the
   installation's tunnel Lease: the live sessions' rules are set, the stale records' rules removed; foreign
   rules and the catch-all stay) and the IngressRoutes;
4. the stale DNS records, deleted by id once their rules are gone.

Replicas take turns: each pass holds a Lease of its own (see ``SessionPublisher._exclusive``), so no
replica sets a rule from a record another replica is deleting; within the pass, each tunnel flush also
holds the tunnel's Lease (shared with the other doors of the installation). Both replicas see the same Pod
events: a pass leaves on that Lease the digest of the state it made true when it ended clean, and a pass for
Pod events that finds its own digest there, fresh, ends at once without a Cloudflare call
(``desired.answered_by_note``): two replicas cost what one does. Timed passes (start, verification, resync,
retry) never end so.

What is "ours" (proven, never inferred from a shape): a DNS record whose name is a session hostname
``<hash><suffix>.<domain>`` and whose marker names our owner id and ``Session/<ns>/<hash>`` of that very
hostname; a tunnel rule without a path whose hostname holds such a record (live or stale in this pass):
a session-shaped rule whose record is someone else's, or that has no record at all, is never touched;
IngressRoutes labelled ``app.kubernetes.io/managed-by=opencode-cloudflare-operator`` named
``opencode-session-<label>-signin|app``.

Removals the watch explains (the session's last Pod was seen going) are never held back. Any other removal
(Pods deleted while no replica was watching, a selector or hostname rules that no longer match) is an orphan
sweep, capped by every door's rule (:mod:`chutes.sweep.cap`) per time window, not per pass: at most
sweep_max_deletions such sessions per sweep_interval; the rest keep their record and rule until the window has
room again, and a Warning Event ``SweepCapReached`` on the operator's Pod says so and when. A misconfiguration
therefore cannot wipe the zone's sessions, however many passes run.

The Pod listing of a pass can be older than what another replica just did. Two reports of the watch
cover that window: ``alive`` (hashes of Pods the watch reports alive right now) protects a session from
removal, and ``gone`` (hashes whose last Pod the watch saw go since the pass started) keeps a session
from being published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.authorization import HostnameRules
from chutes.claims import ClaimStore
from chutes.cloudflare_core import (
    CloudflareCore,
    CloudflareError,
    Conflict,
    CredentialsInvalid,
    DnsRecord,
    TransientError,
)
from chutes.frontdoors import adoption
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.config import SessionConfig
from chutes.leases import Held
from chutes.sweep.cap import Allowance, RemovalBudget, per_window_message

logger = logging.getLogger(__name__)

KUBE_CONCURRENCY = 16

T = TypeVar("T")
PostEvent = Callable[[dict[str, Any], str, str, str], Awaitable[None]]  # (involved object, type, reason, message)


class PodEvents:
    """The Events of the passes, posted by the door itself (``kube.post_event``: the passes run outside kopf's
    handlers, so :class:`chutes.frontdoors.problems.EventSink` and kopf's poster are not theirs): Warnings on
    session Pods, one per distinct (Pod, reason, message), not one per pass; a Normal one when a session's
    hostname is published. A failure to post (e.g. no RBAC for Events, as in the seed's Role) is logged, never
    fatal."""

    def __init__(self, post: PostEvent) -> None:
        self._post = post
        self._sent: dict[str, tuple[str, str]] = {}
        self._cap_sent: str | None = None

    async def warn(self, pod: d.PodRef, reason: str, message: str) -> None:
        if self._sent.get(pod.uid) == (reason, message):
            return
        self._sent[pod.uid] = (reason, message)
        logger.warning("Pod %s/%s: %s: %s", pod.namespace, pod.name, reason, message)
        await self._send(pod.body(), "Warning", reason, message)  # the log line above tells the story if it fails

    async def published(self, pod: d.PodRef, message: str) -> None:
        """A Normal Event on the session's Pod when its hostname is published (once per hostname)."""
        await self._send(pod.body(), "Normal", c.PUBLISHED, message)

    async def cap_reached(self, involved: Mapping[str, Any], message: str) -> None:
        """A Warning Event on the operator's own Pod: removals were held back by the cap (once per distinct
        message: the passes of one window that hold the same sessions say it once)."""
        if message == self._cap_sent:
            return
        self._cap_sent = message
        logger.warning("%s: %s", c.SWEEP_CAP_REACHED, message)
        await self._send(dict(involved), "Warning", c.SWEEP_CAP_REACHED, message)

    async def _send(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self._post(involved, type_, reason, message)
        except Exception as error:
            meta = involved.get("metadata") or {}
            logger.warning("Could not post the %s Event on %s %s/%s: %s", reason, involved.get("kind"),
                           meta.get("namespace"), meta.get("name"), error)

    def forget_except(self, uids: Iterable[str]) -> None:
        keep = set(uids)
        self._sent = {uid: sent for uid, sent in self._sent.items() if uid in keep}


@dataclass
class PassResult:
    sessions: int = 0
    published: tuple[str, ...] = ()  # hostnames fully published after this pass
    blocked: dict[str, str] = field(default_factory=dict)  # hostname -> why
    refused: int = 0
    removed: int = 0  # our DNS records deleted because no live Pod wants them
    held: tuple[str, ...] = ()  # hostnames whose unexplained removal waits for the budget's next window
    held_for: float | None = None  # seconds until the budget allows a removal again (None: nothing held, or never)
    wrote: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # duration of each step


class SessionPublisher:
    def __init__(self, config: SessionConfig, api: client.ApiClient, core: CloudflareCore, events: PodEvents,
                 rules: HostnameRules | None = None, *, claims: ClaimStore, allow_adoption: bool = False,
                 removals: RemovalBudget | None = None, operator_pod: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.api = api
        self.core = core
        self.events = events
        self.rules = rules or HostnameRules.allow_all()
        self.claims = claims  # the installation's ledger: hostnames other doors hold
        self.allow_adoption = allow_adoption  # the installation permits every adoption request
        self.removals = removals  # unexplained removals per time window; None: no cap
        self.operator_pod = operator_pod  # the Event's involved object when the cap is hit
        self._account_id: str | None = None
        self._announced: set[str] = set()  # hostnames whose publication was announced with an Event
        self._published: set[str] = set()  # hostnames the last pass published (their record proves their rule)

    async def account_id(self) -> str:
        """Derived from the zone (one zones.get per process), as the seed does."""
        if self._account_id is None:
            zone = await self.core.get_zone(self.config.zone_id)
            self._account_id = zone.account_id
        return self._account_id

    async def run_pass(self, alive: Callable[[], set[str]] = set, gone: Callable[[], set[str]] = set,
                       explained: Callable[[], set[str]] = set, *, for_events: bool = False) -> PassResult:
        """One pass. `for_events`: it runs for Pod events only (no verification owed): a clean pass of the same
        inputs noted on the Lease moments ago answers it (see the module docstring)."""
        clock = _Stopwatch()
        account_id = await self.account_id()
        async with self._exclusive(account_id) as held:
            clock.lap("lease")
            return await self._run_pass(clock, account_id, alive, gone, explained,
                                        held if isinstance(held, Held) else None, for_events)

    def _exclusive(self, account_id: str) -> AbstractAsyncContextManager[None]:
        """One pass at a time among this door's replicas (the installation's tunnel Lease mechanism, under a
        name of its own: ``<tunnel>/sessions/<namespace>``). A rule is ours only while its record proves it,
        so a replica must never set a rule from a record listing that another replica's pass makes stale
        (rule removed, then record deleted) before the rule lands: that rule would be left unprovable, and
        so never removed again. No lock configured (tests of the pass alone): no exclusion."""
        lock = self.core.tunnel_lock
        if lock is None:
            return contextlib.nullcontext()
        return lock(account_id, f"{self.config.tunnel_id}/sessions/{self.config.watch_namespace}")

    async def _run_pass(self, clock: _Stopwatch, account_id: str, alive: Callable[[], set[str]],
                        gone: Callable[[], set[str]], explained: Callable[[], set[str]], held: Held | None,
                        for_events: bool) -> PassResult:
        config = self.config
        pods = await kube.list_pods(self.api, config.watch_namespace, config.pod_selector.text)
        sessions, refused = d.sessions_from_pods(config, pods)
        sessions, unauthorized = d.authorized_sessions(config, sessions, self.rules)
        sessions = d.permit_adoption(config, sessions, self.rules, self.allow_adoption)
        refused += unauthorized
        clock.lap("pods")
        _drop(sessions, gone())
        await asyncio.gather(*(self.events.warn(r.pod, r.reason, r.message) for r in refused))

        # Listed, so not protected: what an unauthorized session had published goes like a removed one's.
        listed = set(sessions) | {r.session_hash for r in unauthorized}
        digest = d.pass_digest(sessions.values(), listed | alive())
        wanted = tuple(session.hostname for session in sessions.values())
        if for_events and held is not None and d.answered_by_note(held.found, digest, time.time()):
            self._announced, self._published = set(wanted), set(wanted)  # published and announced by that pass
            return PassResult(sessions=len(sessions), refused=len(refused), published=wanted)
        result = await self._reconcile(clock, account_id, sessions, refused, listed, alive, gone, explained)
        if held is not None:
            clean = not (result.blocked or result.held) and result.published == wanted
            held.leave = d.pass_note(digest, clean, time.time())
        return result

    async def _reconcile(self, clock: _Stopwatch, account_id: str, sessions: dict[str, d.Session],
                         refused: list[d.Refusal], listed: set[str], alive: Callable[[], set[str]],
                         gone: Callable[[], set[str]], explained: Callable[[], set[str]]) -> PassResult:
        config = self.config
        protected = _Protected(config, listed, alive)
        cap = Allowance(None if self.removals is None else self.removals.available(),
                        {d.hostname(config, value) for value in explained()})
        result = PassResult(sessions=len(sessions), refused=len(refused))
        held_elsewhere = await self._held_elsewhere(sessions, await self._claimed_elsewhere(sessions.values()))
        for value in held_elsewhere:  # listed, so not protected either: nothing of theirs is kept
            sessions.pop(value)
        ruled_elsewhere = await self._ruled_elsewhere(account_id, sessions)
        for value in ruled_elsewhere:  # the same: nothing of theirs is ours (the rule is someone else's)
            sessions.pop(value)
        clock.lap("claims")
        owner_id = self.core.owner_id
        dns = await self.core.sync_dns_records(
            config.zone_id,
            [d.dns_record(config, session) for session in sessions.values()],
            lambda record: (d.owns_record(config, record, owner_id) and not protected.hostname(record.name)
                            and cap.allows(record.name)),
            defer_deletes=True,  # the stale records prove their rules ours: deleted once the rules are gone
        )
        clock.lap("dns")
        result.wrote, result.held = dns.written, tuple(sorted(str(name) for name in cap.held))
        warnings = []
        for session, holder in held_elsewhere.values():
            result.blocked[session.hostname] = _claimed_message(session, holder)
            warnings += [self.events.warn(pod, c.HOSTNAME_CONFLICT, result.blocked[session.hostname])
                         for pod in session.pods]
        for session, message in ruled_elsewhere.values():
            result.blocked[session.hostname] = message
            warnings += [self.events.warn(pod, c.HOSTNAME_CONFLICT, message) for pod in session.pods]
        for session in sessions.values():
            error = dns.failed.get(session.hostname)
            if error is not None:
                result.blocked[session.hostname] = _blocked_message(session, error)
                warnings += [self.events.warn(pod, _blocked_reason(error), result.blocked[session.hostname])
                             for pod in session.pods]
        await asyncio.gather(*warnings)
        _drop(sessions, gone())
        live = [session for session in sessions.values() if session.hostname not in dns.failed]
        # A rule is ours only at a hostname whose record is proven a session's: the live sessions' (just
        # ensured) and the stale ones' (as listed). Every other rule, session-shaped or not, is left alone.
        proven = d.proven_hostnames(config, [*dns.records.values(), *dns.stale], owner_id)

        async def sync_rules() -> bool:
            synced = await self.core.sync_ingress_rules(
                account_id, config.tunnel_id, [d.tunnel_rule(config, session) for session in live],
                functools.partial(d.owns_rule, proven=proven),
            )
            for host, path in sorted(synced.refused, key=str):
                logger.warning("Tunnel %s: the rule of %s%s is not ours: left untouched", config.tunnel_id, host,
                               path or "")
            return synced.written

        rules_written, routes_written = await _all(
            clock.timed("tunnel", sync_rules()),
            clock.timed("routes", self._sync_routes(live, protected)),
        )
        removed = await clock.timed_value("dns_delete", self._delete_stale(dns.stale))
        result.removed = len(removed)
        await self._spend(cap, removed, result)
        result.wrote = result.wrote or rules_written or routes_written or bool(removed)
        result.seconds = clock.laps
        result.published = tuple(session.hostname for session in live)
        await asyncio.gather(*(
            self.events.published(session.pods[0], f"{session.hostname} → {config.router_service_url} "
                                  "(CNAME, tunnel rule, IngressRoutes)")
            for session in live if session.hostname not in self._announced and session.pods))
        self._announced = set(result.published)
        self._published = set(result.published)
        self.events.forget_except([*(pod.uid for s in sessions.values() for pod in s.pods),
                                   *(pod.uid for s, _ in held_elsewhere.values() for pod in s.pods),
                                   *(pod.uid for s, _ in ruled_elsewhere.values() for pod in s.pods),
                                   *(refusal.pod.uid for refusal in refused)])
        return result

    async def _spend(self, cap: Allowance, removed: Iterable[str], result: PassResult) -> None:
        """Charge the budget with the unexplained removals made; when some wait, say until when."""
        budget = self.removals
        if budget is None:
            return
        budget.spend(len(set(cap.allowed) & set(removed)))
        if not cap.held:
            return
        opens = budget.opens_at()
        result.held_for = None if opens is None else max(0.0, opens - budget.now())
        if self.operator_pod is not None:
            await self.events.cap_reached(self.operator_pod, per_window_message(budget, result.held, opens))

    async def _claimed_elsewhere(self, sessions: Iterable[d.Session]) -> dict[str, str]:
        """Hostname -> holder of the wanted session hostnames that the installation's ledger says another
        source holds (another door's ChuteGateway or HTTPRoute). One listing per pass; a failure fails the
        pass (retried), like any other Kubernetes read."""
        wanted = {session.hostname: d.source(self.config, session.hash) for session in sessions}
        if not wanted:
            return {}
        return {claim.key: claim.source for claim in await self.claims.list(kind="hostname")
                if claim.key in wanted and claim.source != wanted[claim.key]}

    async def _held_elsewhere(
        self, sessions: Mapping[str, d.Session], claimed: Mapping[str, str]
    ) -> dict[str, tuple[d.Session, str]]:
        """Session hash -> (session, holder) of the sessions whose hostname another source claims and where the
        session holds no record proven its own: nothing is written for them. A session that holds one keeps
        it: its record, made first, is its claim, and the other source's DNS check fails on it."""
        contested = [session for session in sessions.values() if session.hostname in claimed]
        if not contested:
            return {}
        owner_id = self.core.owner_id
        found = await asyncio.gather(*(self.core.dns_records_named(self.config.zone_id, session.hostname)
                                       for session in contested))
        return {
            session.hash: (session, claimed[session.hostname])
            for session, records in zip(contested, found, strict=True)
            if not d.proven_hostnames(self.config, records, owner_id)
        }

    async def _ruled_elsewhere(self, account_id: str,
                               sessions: Mapping[str, d.Session]) -> dict[str, tuple[d.Session, str]]:
        """Session hash -> (session, why) of the sessions whose hostname already has a rule in the tunnel that no
        record proves a session's: someone else's rule (made by hand, by another tool). A record of ours would
        make it routable, and the next rule sync would take it for ours: nothing is written for them
        (``HostnameConflict``). A rule at a name that holds a record is left to the DNS sync (the session's own
        record proves the rule; another's is a conflict naming its holder). Sessions the last pass published are
        not checked again; the others cost one read of the configuration, and one listing of the zone's records
        when one of them meets a rule (e.g. at start)."""
        fresh = {session.hostname: session for session in sessions.values()
                 if session.hostname not in self._published}
        if not fresh:
            return {}
        document = await self.core.get_tunnel_config(account_id, self.config.tunnel_id) or {}
        ruled: dict[str, dict[str, Any]] = {}
        for rule in document.get("ingress") or []:
            host = str(rule.get("hostname") or "") if isinstance(rule, Mapping) else ""
            if host in fresh:
                ruled.setdefault(host, dict(rule))
        if not ruled:
            return {}
        # A record at the name, the session's (its rule is ours) or another's (the DNS sync names its holder).
        recorded = {record.name for record in await self.core.list_dns_records(self.config.zone_id)}
        return {fresh[host].hash: (fresh[host], self._foreign_rule_message(host, rule))
                for host, rule in ruled.items() if host not in recorded}

    def _foreign_rule_message(self, host: str, rule: Mapping[str, Any]) -> str:
        path = f", path {rule['path']}" if rule.get("path") else ""
        return (f"{host} already has a rule in tunnel {self.config.tunnel_id} that this operator did not make "
                f"(→ {rule.get('service')}{path}): left untouched; nothing is published")

    async def _delete_stale(self, stale: Sequence[DnsRecord]) -> tuple[str, ...]:
        """Delete the stale records (their rules are gone by now). A record Cloudflare refuses to delete is
        logged and retried next pass (the record, still proven ours, keeps being stale); a transient failure
        fails the pass."""
        if not stale:
            return ()
        try:
            return await self.core.delete_dns_records(self.config.zone_id, stale)
        except (TransientError, CredentialsInvalid):
            raise
        except CloudflareError as error:
            logger.warning("Could not delete every stale session DNS record: %s", error)
            return ()

    async def _sync_routes(self, live: list[d.Session], protected: _Protected) -> bool:
        config = self.config
        existing = await kube.list_custom_labelled(
            self.api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, d.INGRESSROUTE_PLURAL, config.ingressroute_namespace,
            f"{d.MANAGED_BY_LABEL}={d.MANAGED_BY}",
        )
        changes = d.route_changes(config, live, existing, keep=protected.route_names())  # oldest sessions first
        limit = asyncio.Semaphore(KUBE_CONCURRENCY)
        namespace = config.ingressroute_namespace
        route_api = (self.api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, d.INGRESSROUTE_PLURAL, namespace)

        async def bounded(call: Awaitable[bool]) -> bool:
            async with limit:
                return await call

        await _all(
            *(bounded(kube.create_custom(*route_api, route)) for route in changes.create),
            *(bounded(kube.patch_custom(*route_api, route["metadata"]["name"],
                                        {"metadata": {"labels": route["metadata"]["labels"]}, "spec": route["spec"]}))
              for route in changes.update),
            *(bounded(kube.delete_custom(*route_api, name)) for name in changes.delete),
        )
        return bool(changes.create or changes.update or changes.delete)


def _drop(sessions: dict[str, d.Session], gone: set[str]) -> None:
    for value in gone:
        sessions.pop(value, None)


async def _all(*steps: Awaitable[bool]) -> list[bool]:
    """Run the steps concurrently; when some fail, raise the first failure once all have ended (none is
    left running unobserved)."""
    outcomes = await asyncio.gather(*steps, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [bool(outcome) for outcome in outcomes]


class _Stopwatch:
    def __init__(self) -> None:
        self._last = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name], self._last = now - self._last, now

    async def timed(self, name: str, step: Awaitable[bool]) -> bool:
        return await self.timed_value(name, step)

    async def timed_value(self, name: str, step: Awaitable[T]) -> T:
        started = time.monotonic()
        try:
            return await step
        finally:
            self.laps[name] = time.monotonic() - started


class _Protected:
    """Sessions the watch reports alive although this pass's Pod listing did not contain them: their
    published objects are left alone in this pass (the next pass decides)."""

    def __init__(self, config: SessionConfig, listed: set[str], alive: Callable[[], set[str]]) -> None:
        self._config = config
        self._listed = listed
        self._alive = alive
        self._hostnames: set[str] | None = None

    def _hashes(self) -> set[str]:
        return self._alive() - self._listed

    def hostname(self, name: str) -> bool:
        if self._hostnames is None:  # asked at flush time, after the listing; then fixed for the pass
            self._hostnames = {d.hostname(self._config, value) for value in self._hashes()}
        return name in self._hostnames

    def route_names(self) -> set[str]:
        return {
            name
            for value in self._hashes()
            for name in d.route_names(d.Session(value, d.first_label(self._config, value), ""))
        }


def _blocked_reason(error: CloudflareError) -> str:
    return c.HOSTNAME_CONFLICT if isinstance(error, Conflict) else c.CLOUDFLARE_REJECTED


def _blocked_message(session: d.Session, error: CloudflareError) -> str:
    if isinstance(error, Conflict):
        holder = f"{error.holder}'s DNS record" if error.holder else "a DNS record this operator does not own"
        refused = f" ({adoption.NOT_PERMITTED})" if session.asked_adoption and not session.adopt else ""
        return f"{session.hostname} is held by {holder}{refused}; nothing is published"
    return f"{session.hostname}: Cloudflare refused the DNS record ({error}); nothing is published"


def _claimed_message(session: d.Session, holder: str) -> str:
    return f"{session.hostname} is claimed by {holder} (one hostname, one holder); nothing is published"
