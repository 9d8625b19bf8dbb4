"""One source, once: read -> decide -> admit -> apply -> report (``frontdoors/README.md``).

The decision stands on one read of the server; a write the server refuses because the entry changed since
(a stale version, an entry made or deleted meanwhile) starts the read over, at most :data:`STALE_ROUNDS` times.
A server that fails or cannot be reached stops the pass: nothing more is written (fail closed), the object says
why, and the caller retries later.

Kubernetes writes of the report: a HostMapping's finalizer (added before its first entry is made, removed once
its entries are gone or the policy keeps them), its status (when it changed), a route's host-ids annotation
(when it changed; never on an object being deleted) and upstream's route finalizer (removed from a route being
deleted once its entries are gone; never added).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.frontdoors import changes
from chutes.frontdoors.changes import Change
from chutes.frontdoors.hosts import desired as d
from chutes.frontdoors.hosts import read
from chutes.frontdoors.hosts.apply import ApplyFailed, Executor, Stale
from chutes.frontdoors.hosts.decide import Found, HostChange, decide
from chutes.frontdoors.hosts.status import Summary, change_event, mapping_status, problems_said
from chutes.hosts_core.backend import HostsBackend
from chutes.hosts_core.errors import HostsError, HostsUnavailable
from chutes.hosts_core.models import HostEntry
from chutes.observability import metrics

__all__ = ["FRONT_DOOR", "Door", "Result", "reconcile"]

logger = logging.getLogger(__name__)

FRONT_DOOR = "hosts"
STALE_ROUNDS = 3
FAILED_REASONS = {"create": c.CREATE_FAILED, "update": c.UPDATE_FAILED, "delete": c.DELETE_FAILED}

PostEvent = Callable[[dict[str, Any], str, str, str], Awaitable[None]]  # (involved, type, reason, message)


@dataclass
class Door:
    """What every reconcile of this door uses; `said` remembers, per source, the problems already posted as
    Warning Events (one per distinct problem, not one per retry); `answered` whether the server answered the
    last call (readiness)."""

    api: client.ApiClient
    backend: HostsBackend
    post_event: PostEvent
    ingress_ip: str = ""
    policy: str = "sync"
    dry_run: bool = False
    said: dict[d.Source, frozenset[str]] = field(default_factory=dict)
    answered: bool | None = None


@dataclass(frozen=True)
class Result:
    """`exists`: some object of the source is still there; `retry`: seconds until the next try (None: at the
    next event or resync); `unavailable`: the server could not be reached (a longer wait is its own)."""

    exists: bool
    retry: float | None = None
    unavailable: bool = False


def wants_of(source: d.Source, bodies: Sequence[Mapping[str, Any]], ingress_ip: str) -> d.Wants:
    if source.family == "HostMapping":
        return d.wants_of_mapping(bodies[0] if bodies else None)
    return d.wants_of_routes(bodies, source.namespace, source.name, ingress_ip)


def _entries_after(source: d.Source, wants: d.Wants, found: Found, executor: Executor) -> dict[str, HostEntry]:
    """The source's entry for each wanted hostname once the changes are made (the hinted one among several)."""
    live = {e.id: e for e in found.ours if source.owns(e.comment, e.tags)}
    live.update(executor.written)
    for removed in executor.removed:
        live.pop(removed, None)
    hinted = set(wants.hints.values())
    entries: dict[str, HostEntry] = {}
    for hostname in wants.specs:
        mine = sorted((e for e in live.values() if e.hostname.lower() == hostname.lower()),
                      key=lambda e: (e.id not in hinted, e.id))
        if mine:
            entries[hostname] = mine[0]
    return entries


async def _converge(door: Door, source: d.Source, wants: d.Wants) -> tuple[Summary, float | None]:
    """Read, decide, admit and apply, again on a stale read; what came of it and when to try again."""
    made: list[Change[HostChange]] = []
    if wants.block:  # nothing will change: no need to read
        return Summary(problems=wants.problems, blocked=True, wanted=bool(wants.specs)), None
    for _ in range(STALE_ROUNDS):
        try:
            found = await read.find(door.backend, source, list(wants.specs))
        except HostsError as exc:
            return _failed(door, wants, made, (c.PREFLIGHT_READ_FAILED, f"reading the router-hosts server: "
                                                                        f"{exc.message}"), exc)
        door.answered = True
        decision = decide(source, wants, found)
        admitted = changes.admit(decision.changes, door.policy, dry_run=door.dry_run)
        executor = Executor(door.backend)
        try:
            await changes.apply(admitted, executor, logger)
        except Stale as exc:
            made.extend(executor.made)
            logger.info("%s: %s; reading again", source.label, exc)
            continue
        except ApplyFailed as exc:
            made.extend(executor.made)
            reason = FAILED_REASONS[exc.change.action]
            return _failed(door, wants, made, (reason, str(exc)), exc.error)
        made.extend(executor.made)
        summary = Summary(entries=_entries_after(source, wants, found, executor), made=tuple(made),
                          held=admitted.held, problems=decision.problems, blocked=wants.block,
                          wanted=bool(wants.specs))
        return summary, None
    return Summary(made=tuple(made), problems=wants.problems,
                   failure=(c.PREFLIGHT_READ_FAILED, "the entries kept changing while being written")), 1.0


def _failed(door: Door, wants: d.Wants, made: list[Change[HostChange]], failure: tuple[str, str],
            error: HostsError) -> tuple[Summary, float | None]:
    if isinstance(error, HostsUnavailable):
        door.answered = False
    delay = error.delay if isinstance(error, HostsUnavailable) else None
    summary = Summary(made=tuple(made), problems=wants.problems, blocked=wants.block, failure=failure)
    return summary, delay if delay is not None else 0.0


def _involved(source: d.Source, bodies: Sequence[Mapping[str, Any]], hostname: str = "") -> dict[str, Any]:
    """The object an Event about `hostname` goes to: the route naming it, else the first one there, else (the
    source is gone) a reference by name."""
    for body in bodies:
        if hostname and hostname.lower() in {n.lower() for n in d.route_hostnames(body)}:
            return dict(body)
    if bodies:
        return dict(bodies[0])
    kind = "HostMapping" if source.family == "HostMapping" else "IngressRoute"
    api_version = f"{d.GROUP}/{d.VERSION}" if kind == "HostMapping" else f"{d.TRAEFIK_GROUP}/{d.TRAEFIK_VERSION}"
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"namespace": source.namespace, "name": source.name}}


async def _post(door: Door, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
    try:
        await door.post_event(involved, type_, reason, message)
    except Exception as exc:  # an Event is worth a log line, never a failed pass
        logger.warning("could not post Event %s on %s: %s", reason, involved.get("metadata"), exc)


async def _events(door: Door, source: d.Source, bodies: Sequence[Mapping[str, Any]], summary: Summary) -> None:
    for change in summary.made:
        reason, message = change_event(change)
        await _post(door, _involved(source, bodies, change.name), "Normal", reason, message)
    said = door.said.get(source)
    if said is None and source.family == "HostMapping" and bodies:
        said = problems_said((bodies[0].get("status") or {}).get("conditions"))
    problems = [*summary.problems, *([summary.failure] if summary.failure else [])]
    for reason, message in problems:
        if message not in (said or ()):
            await _post(door, _involved(source, bodies), "Warning", reason, message)
    door.said[source] = frozenset(message for _, message in problems)


def _settled(summary: Summary) -> bool:
    """No deletion is still to be made: every one was made, or the policy keeps the entry (not dry-run)."""
    return summary.failure is None and not any(change.action == "delete" and why == "dry-run"
                                               for change, why in summary.held)


async def _report_mapping(door: Door, body: Mapping[str, Any], summary: Summary) -> None:
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    if meta.get("deletionTimestamp"):
        if _settled(summary) and d.FINALIZER in (meta.get("finalizers") or []):
            await kube.remove_finalizer(door.api, d.GROUP, d.VERSION, d.PLURAL, name, namespace, d.FINALIZER)
            return
        if summary.failure is None:
            return  # dry-run: the entry stays, and so does the object, until a real run removes it
    previous = body.get("status") or {}
    status = mapping_status(previous, meta.get("generation"), summary)
    if {key: previous.get(key) for key in status} != status:
        await kube.patch_custom_status(door.api, d.GROUP, d.VERSION, d.PLURAL, name, namespace, status)


async def _report_routes(door: Door, bodies: Sequence[Mapping[str, Any]], summary: Summary) -> None:
    for body in bodies:
        meta = body["metadata"]
        plural = d.ROUTE_PLURALS.get(str(body.get("kind")), "ingressroutes")
        name, namespace = meta["name"], meta["namespace"]
        if meta.get("deletionTimestamp"):
            if _settled(summary) and d.ROUTE_FINALIZER in (meta.get("finalizers") or []):
                await kube.remove_finalizer(door.api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, plural, name, namespace,
                                            d.ROUTE_FINALIZER)
            continue
        if summary.failure is not None or summary.blocked:
            continue  # the map is rebuilt from a complete read only
        wanted = {hostname.lower() for hostname in d.route_hostnames(body)}
        ids = {hostname: entry.id for hostname, entry in summary.entries.items() if hostname.lower() in wanted}
        value = d.render_host_ids(ids)
        if (meta.get("annotations") or {}).get(d.HOST_IDS_ANNOTATION) != value:
            await kube.patch_custom_metadata(door.api, d.TRAEFIK_GROUP, d.TRAEFIK_VERSION, plural, name, namespace,
                                             {"annotations": {d.HOST_IDS_ANNOTATION: value}})


async def _ensure_finalizer(door: Door, body: Mapping[str, Any]) -> None:
    meta = body["metadata"]
    if d.FINALIZER not in (meta.get("finalizers") or []):
        await kube.add_finalizer(door.api, d.GROUP, d.VERSION, d.PLURAL, meta["name"], meta["namespace"], d.FINALIZER)


async def reconcile(door: Door, source: d.Source) -> Result:
    """Bring the server to what `source` wants, and say so on its objects."""
    bodies = await read.read_sources(door.api, source)
    wants = wants_of(source, bodies, door.ingress_ip)
    if source.family == "HostMapping" and bodies and wants.specs:
        try:
            await _ensure_finalizer(door, bodies[0])  # before its first entry: a deletion always finds it
        except kube.StaleObject:  # its finalizers changed meanwhile: read it again
            return Result(exists=True, retry=0.0)
    async with metrics.reconcile_timer(FRONT_DOOR):
        summary, retry = await _converge(door, source, wants)
    await _events(door, source, bodies, summary)
    if source.family == "HostMapping":
        if bodies:
            await _report_mapping(door, bodies[0], summary)
    else:
        await _report_routes(door, bodies, summary)
    if summary.failure is None and not summary.blocked:  # else what is registered is not known
        metrics.HOSTNAMES.publish(FRONT_DOOR, source.label, summary.entries)
    metrics.REFUSALS.refuse(FRONT_DOOR, source.label, [reason for reason, _ in summary.problems])
    return Result(exists=bool(bodies), retry=retry, unavailable=door.answered is False)
