"""One level-based pass of the session door, in the front-door shape (``frontdoors/README.md``), batch form:
read (the session Pods, listed afresh; the hostname claims; one listing of the zone, the tunnel's rules when a
session is new, our IngressRoutes) -> :mod:`.decide` (pure: the change set of the whole pass, and the problems) ->
:func:`chutes.frontdoors.changes.admit` (the write policy and dry-run, on the set as a whole; what is held is logged)
-> :mod:`.apply` (one DNS batch, one tunnel flush, the IngressRoutes, one DNS batch of deletions) -> report
(Warnings on the Pods, once per distinct problem; a Normal Event when a hostname is published). This door writes
no claims: its DNS record is its claim.

Replicas take turns: each pass holds a Lease of its own (see ``SessionPublisher._exclusive``), so no replica sets a
rule from a record another replica is deleting; within the pass, each tunnel flush also holds the tunnel's Lease
(shared with the other doors of the installation). Both replicas see the same Pod events: a pass leaves on that
Lease the digest of the state it made true when it ended clean, and a pass for Pod events that finds its own digest
there, fresh, ends at once without a Cloudflare call (``desired.answered_by_note``): two replicas cost what one
does. Timed passes (start, verification, resync, retry) never end so.

Removals the watch explains (the session's last Pod was seen going) are never held back; any other is an orphan's,
capped by every door's rule (:mod:`chutes.sweep.cap`) per time window, not per pass: at most sweep_max_deletions
such sessions per sweep_interval, and a Warning ``SweepCapReached`` on the operator's Pod says what waits and until
when. The Pod listing of a pass can be older than what another replica just did: ``alive`` (hashes of Pods the
watch reports alive right now) protects a session from removal, and ``gone`` (hashes whose last Pod the watch saw
go since the pass started) keeps a session from being published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.authorization import HostnameRules
from chutes.claims import ClaimStore
from chutes.cloudflare_core import CloudflareCore
from chutes.frontdoors import changes
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.apply import Stopwatch, apply
from chutes.frontdoors.sessions.config import SessionConfig
from chutes.frontdoors.sessions.decide import Inputs, blocked_message, blocked_reason, decide
from chutes.leases import Held
from chutes.sweep.cap import RemovalBudget, per_window_message

logger = logging.getLogger(__name__)

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
        clock = Stopwatch()
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

    async def _run_pass(self, clock: Stopwatch, account_id: str, alive: Callable[[], set[str]],
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

    async def _reconcile(self, clock: Stopwatch, account_id: str, sessions: dict[str, d.Session],
                         refused: list[d.Refusal], listed: set[str], alive: Callable[[], set[str]],
                         gone: Callable[[], set[str]], explained: Callable[[], set[str]]) -> PassResult:
        config, core = self.config, self.core
        result = PassResult(sessions=len(sessions), refused=len(refused))
        reasons = {d.hostname(config, value) for value in explained()}
        room = None if self.removals is None else self.removals.available()
        inputs = dataclasses.replace(await self._read(account_id, sessions), protected=frozenset(alive() - listed),
                                     explained=frozenset(reasons), room=room, may_adopt=core.gate.may_adopt)
        clock.lap("read")
        outcome = decide(config, sessions, inputs, core.owner_id)
        admitted = changes.admit(outcome.decision.changes, core.policy, dry_run=core.dry_run)
        for change, why in admitted.held:
            logger.info("sessions of %s: not made: %s (%s)", config.watch_namespace, changes.describe(change), why)
        applied = await apply(core, self.api, config, account_id, admitted, inputs.records, gone, clock)
        blocked = [*outcome.blocked, *((s, blocked_reason(error), blocked_message(s, error))
                                       for s in outcome.live if (error := applied.failed.get(s.hostname)))]
        result.blocked = {session.hostname: message for session, _, message in blocked}
        await asyncio.gather(*(self.events.warn(pod, reason, message)
                               for session, reason, message in blocked for pod in session.pods))
        live = [s for s in outcome.live if s.hostname not in applied.failed and s.hostname not in applied.left]
        result.held, result.removed, result.wrote = outcome.held, len(applied.removed), applied.wrote
        await self._spend(outcome.allowed, applied.removed, result)
        result.seconds = clock.laps
        result.published = tuple(session.hostname for session in live)
        await asyncio.gather(*(
            self.events.published(session.pods[0], f"{session.hostname} → {config.router_service_url} "
                                  "(CNAME, tunnel rule, IngressRoutes)")
            for session in live if session.hostname not in self._announced and session.pods))
        self._announced = set(result.published)
        self._published = set(result.published)
        self.events.forget_except([*(pod.uid for s in sessions.values() for pod in s.pods),
                                   *(refusal.pod.uid for refusal in refused)])
        return result

    async def _read(self, account_id: str, sessions: Mapping[str, d.Session]) -> Inputs:
        """What the pass decides on, read once: the claims of the wanted hostnames held by another source (one
        listing; a failure fails the pass, retried), the zone's records, the tunnel's rules when a session is new
        (not published by the last pass: checked for a foreign rule), and our IngressRoutes."""
        config = self.config
        wanted = {session.hostname: d.source(config, session.hash) for session in sessions.values()}
        claimed = {claim.key: claim.source for claim in (await self.claims.list(kind="hostname") if wanted else ())
                   if claim.key in wanted and claim.source != wanted[claim.key]}
        fresh = frozenset(wanted) - self._published
        records, document, routes = await asyncio.gather(
            self.core.list_dns_records(config.zone_id),
            self.core.get_tunnel_config(account_id, config.tunnel_id) if fresh else _none(),
            kube.list_custom_labelled(self.api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, d.INGRESSROUTE_PLURAL,
                                      config.ingressroute_namespace, f"{d.MANAGED_BY_LABEL}={d.MANAGED_BY}"))
        rules = None if not fresh else list((document or {}).get("ingress") or [])
        return Inputs(records, rules, routes, claimed, fresh=fresh)

    async def _spend(self, allowed: Iterable[str], removed: Iterable[str], result: PassResult) -> None:
        """Charge the budget with the unexplained removals made; when some wait, say until when."""
        budget = self.removals
        if budget is None:
            return
        budget.spend(len(set(allowed) & set(removed)))
        if not result.held:
            return
        opens = budget.opens_at()
        result.held_for = None if opens is None else max(0.0, opens - budget.now())
        if self.operator_pod is not None:
            await self.events.cap_reached(self.operator_pod, per_window_message(budget, result.held, opens))


def _drop(sessions: dict[str, d.Session], gone: set[str]) -> None:
    for value in gone:
        sessions.pop(value, None)


async def _none() -> None:
    return None
