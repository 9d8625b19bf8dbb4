"""One level-based pass: live session Pods (listed afresh) against what is published in Cloudflare and
Kubernetes, and the writes that make them agree.

Order: DNS first (one listing of the zone + batches, through the core's DNS writer): a name held by a
record we do not own blocks that session only, and a blocked session gets nothing else. Then, at once,
the tunnel rules (one GET + one PUT through the core's tunnel-config writer: our rules are replaced as a
set, foreign rules and the catch-all stay) and the IngressRoutes.

What is "ours": DNS records whose marker carries our owner id and source ``Session/<ns>/``; tunnel rules
on a session hostname (``[a-z0-9]+<suffix>.<domain>``, no path) routed to ``ROUTER_SERVICE_URL`` whose
name is not held by someone else's DNS record; IngressRoutes labelled
``app.kubernetes.io/managed-by=opencode-cloudflare-operator`` named ``opencode-session-<label>-signin|app``.

Removals the watch explains (the session's last Pod was seen going) are never held back. Any other removal
(Pods deleted while no replica was watching, a selector or hostname rules that no longer match) is an orphan
sweep and is capped: at most ``max_removals`` such sessions per pass (the CLI's sweep_max_deletions); the
rest keep their record and rule until the next pass, and a Warning Event ``SweepCapReached`` on the
operator's Pod says so. A misconfiguration therefore cannot wipe the zone's sessions in one pass.

The Pod listing of a pass can be older than what another replica just did. Two reports of the watch
cover that window: ``alive`` (hashes of Pods the watch reports alive right now) protects a session from
removal, and ``gone`` (hashes whose last Pod the watch saw go since the pass started) keeps a session
from being published again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from chutes import kube
from chutes.authorization import HostnameRules
from chutes.cloudflare_core import CloudflareCore, CloudflareError, Conflict
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.config import SessionConfig

logger = logging.getLogger(__name__)

HOSTNAME_CONFLICT = "HostnameConflict"
CLOUDFLARE_REJECTED = "CloudflareRejected"
KUBE_CONCURRENCY = 16
SWEEP_CAP_REACHED = "SweepCapReached"

PostEvent = Callable[[dict[str, Any], str, str, str], Awaitable[None]]  # (involved object, type, reason, message)


class EventSink:
    """Warning Events on Pods, one per distinct (Pod, reason, message), not one per pass. A failure to
    post (e.g. no RBAC for Events, as in the seed's Role) is logged, never fatal."""

    def __init__(self, post: PostEvent) -> None:
        self._post = post
        self._sent: dict[str, tuple[str, str]] = {}

    async def warn(self, pod: d.PodRef, reason: str, message: str) -> None:
        if self._sent.get(pod.uid) == (reason, message):
            return
        self._sent[pod.uid] = (reason, message)
        logger.warning("Pod %s/%s: %s: %s", pod.namespace, pod.name, reason, message)
        try:
            await self._post(pod.body(), "Warning", reason, message)
        except Exception as error:  # the log line above still tells the story
            logger.warning("Could not post an Event on Pod %s/%s: %s", pod.namespace, pod.name, error)

    async def published(self, pod: d.PodRef, message: str) -> None:
        """A Normal Event on the session's Pod when its hostname is published (once per hostname)."""
        try:
            await self._post(pod.body(), "Normal", "Published", message)
        except Exception as error:
            logger.warning("Could not post an Event on Pod %s/%s: %s", pod.namespace, pod.name, error)

    async def cap_reached(self, involved: Mapping[str, Any], message: str) -> None:
        """A Warning Event on the operator's own Pod: removals were held back by the cap."""
        logger.warning("%s: %s", SWEEP_CAP_REACHED, message)
        try:
            await self._post(dict(involved), "Warning", SWEEP_CAP_REACHED, message)
        except Exception as error:
            logger.warning("Could not post the %s Event: %s", SWEEP_CAP_REACHED, error)

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
    held: tuple[str, ...] = ()  # hostnames whose unexplained removal waits for the next pass (the cap)
    wrote: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # duration of each step


class SessionPublisher:
    def __init__(self, config: SessionConfig, api: client.ApiClient, core: CloudflareCore, events: EventSink,
                 rules: HostnameRules | None = None, *, max_removals: int | None = None,
                 operator_pod: Mapping[str, Any] | None = None) -> None:
        self.config = config
        self.api = api
        self.core = core
        self.events = events
        self.rules = rules or HostnameRules.allow_all()
        self.max_removals = max_removals  # unexplained removals per pass; None: no cap
        self.operator_pod = operator_pod  # the Event's involved object when the cap is hit
        self._account_id: str | None = None
        self._announced: set[str] = set()  # hostnames whose publication was announced with an Event

    async def account_id(self) -> str:
        """Derived from the zone (one zones.get per process), as the seed does."""
        if self._account_id is None:
            zone = await self.core.get_zone(self.config.zone_id)
            self._account_id = zone.account_id
        return self._account_id

    async def run_pass(self, alive: Callable[[], set[str]] = set, gone: Callable[[], set[str]] = set,
                       explained: Callable[[], set[str]] = set) -> PassResult:
        config = self.config
        clock = _Stopwatch()
        account_id = await self.account_id()
        pods = await kube.list_pods(self.api, config.watch_namespace, config.pod_selector.text)
        sessions, refused = d.sessions_from_pods(config, pods)
        sessions, unauthorized = d.authorized_sessions(config, sessions, self.rules)
        refused += unauthorized
        clock.lap("pods")
        _drop(sessions, gone())
        await asyncio.gather(*(self.events.warn(r.pod, r.reason, r.message) for r in refused))

        # Listed, so not protected: what an unauthorized session had published goes like a removed one's.
        protected = _Protected(config, set(sessions) | {r.session_hash for r in unauthorized}, alive)
        cap = _RemovalCap(self.max_removals, {d.hostname(config, value) for value in explained()})
        dns = await self.core.sync_dns_records(
            config.zone_id,
            [d.dns_record(config, session) for session in sessions.values()],
            lambda record: (d.owns_record(config, record) and not protected.hostname(record.name)
                            and cap.allows(record.name)),
        )
        clock.lap("dns")
        result = PassResult(sessions=len(sessions), refused=len(refused), removed=len(dns.deleted), wrote=dns.written,
                            held=tuple(sorted(cap.held)), seconds=clock.laps)
        if cap.held and self.operator_pod is not None:
            await self.events.cap_reached(self.operator_pod, cap.message())
        warnings = []
        for session in sessions.values():
            error = dns.failed.get(session.hostname)
            if error is not None:
                result.blocked[session.hostname] = _blocked_message(session, error)
                warnings += [self.events.warn(pod, _blocked_reason(error), result.blocked[session.hostname])
                             for pod in session.pods]
        await asyncio.gather(*warnings)
        _drop(sessions, gone())
        live = [session for session in sessions.values() if session.hostname not in dns.failed]
        for name, error in dns.failed.items():
            if name not in result.blocked:
                logger.warning("Could not delete the DNS record %s: %s", name, error)

        def owns_rule(rule: Mapping[str, Any]) -> bool:
            hostname = str(rule.get("hostname"))
            owned = d.owns_rule(config, rule, dns.foreign)
            return owned and not protected.hostname(hostname) and hostname not in cap.held

        rules_written, routes_written = await _all(
            clock.timed("tunnel", self.core.sync_ingress_rules(
                account_id, config.tunnel_id, [d.tunnel_rule(config, session) for session in live], owns_rule
            )),
            clock.timed("routes", self._sync_routes(live, protected)),
        )
        result.wrote = result.wrote or rules_written or routes_written
        result.published = tuple(session.hostname for session in live)
        await asyncio.gather(*(
            self.events.published(session.pods[0], f"{session.hostname} → {config.router_service_url} "
                                  "(CNAME, tunnel rule, IngressRoutes)")
            for session in live if session.hostname not in self._announced and session.pods))
        self._announced = set(result.published)
        self.events.forget_except([*(pod.uid for s in sessions.values() for pod in s.pods),
                                   *(refusal.pod.uid for refusal in refused)])
        return result

    async def _sync_routes(self, live: list[d.Session], protected: _Protected) -> bool:
        config = self.config
        existing = await kube.list_custom_labelled(
            self.api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, d.INGRESSROUTE_PLURAL, config.ingressroute_namespace,
            f"{d.MANAGED_BY_LABEL}={d.MANAGED_BY}",
        )
        plan = d.plan_routes(config, live, existing, keep=protected.route_names())  # oldest sessions first
        limit = asyncio.Semaphore(KUBE_CONCURRENCY)
        namespace = config.ingressroute_namespace
        route_api = (self.api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, d.INGRESSROUTE_PLURAL, namespace)

        async def bounded(call: Awaitable[bool]) -> bool:
            async with limit:
                return await call

        await _all(
            *(bounded(kube.create_custom(*route_api, route)) for route in plan.create),
            *(bounded(kube.patch_custom(*route_api, route["metadata"]["name"],
                                        {"metadata": {"labels": route["metadata"]["labels"]}, "spec": route["spec"]}))
              for route in plan.update),
            *(bounded(kube.delete_custom(*route_api, name)) for name in plan.delete),
        )
        return bool(plan.create or plan.update or plan.delete)


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
        started = time.monotonic()
        try:
            return await step
        finally:
            self.laps[name] = time.monotonic() - started


class _RemovalCap:
    """Which of our records a pass may remove: every one the watch explained, and at most `limit` others (in
    the order the DNS sync asks; asking again about an allowed name is free)."""

    def __init__(self, limit: int | None, explained: set[str]) -> None:
        self._limit = limit
        self._explained = explained
        self._allowed: set[str] = set()
        self.held: set[str] = set()

    def allows(self, name: str) -> bool:
        if self._limit is None or name in self._explained or name in self._allowed:
            return True
        if len(self._allowed) < self._limit:
            self._allowed.add(name)
            return True
        self.held.add(name)
        return False

    def message(self) -> str:
        first = ", ".join(sorted(self.held)[:3])
        return (f"removed {len(self._allowed)} session hostname(s) no watched Pod was seen leaving, the cap per pass "
                f"(sweep_max_deletions={self._limit}); {len(self.held)} more wait for the next pass: {first}")


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
    return HOSTNAME_CONFLICT if isinstance(error, Conflict) else CLOUDFLARE_REJECTED


def _blocked_message(session: d.Session, error: CloudflareError) -> str:
    if isinstance(error, Conflict):
        return f"{session.hostname} is held by a DNS record this operator does not own; nothing is published"
    return f"{session.hostname}: Cloudflare refused the DNS record ({error}); nothing is published"
