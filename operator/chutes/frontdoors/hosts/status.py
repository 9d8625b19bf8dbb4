"""The *report* step's decisions (pure): a HostMapping's status, and the Events every source gets.

A HostMapping's status keeps upstream's fields and words (``phase``, ``message``, ``hostId``, ``hostVersion``,
``lastSyncTime``, the ``Synced`` condition and its reasons) and adds our ``Ready`` condition: True only when
the entry is in place and nothing is wrong. ``lastSyncTime`` moves only when something was written.

Events: a Normal one per change made (``HostEntryCreated``, ``HostEntryUpdated``, upstream's ``Recreated``,
``HostEntryRemoved``), a Warning one per problem or failure not said already (the caller keeps what was said).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chutes import conditions as c
from chutes.frontdoors.changes import Change, describe
from chutes.frontdoors.hosts.decide import HostChange
from chutes.frontdoors.hosts.desired import IGNORE_LABEL
from chutes.hosts_core.models import HostEntry

__all__ = ["Summary", "change_event", "mapping_status"]

Problem = tuple[str, str]  # (reason, message)

PHASE_PENDING, PHASE_SYNCED, PHASE_ERROR = "Pending", "Synced", "Error"
IGNORED = "Ignored"


@dataclass(frozen=True)
class Summary:
    """What one reconcile of a source came to: its entry per wanted hostname after the changes (`entries`), the
    changes made and held (with why), the problems its decision found, whether they blocked every change, a
    failure of the server (reason, message), and whether the source wanted anything."""

    entries: Mapping[str, HostEntry] = field(default_factory=dict)
    made: tuple[Change[HostChange], ...] = ()
    held: tuple[tuple[Change[HostChange], str], ...] = ()
    problems: tuple[Problem, ...] = ()
    blocked: bool = False
    failure: Problem | None = None
    wanted: bool = True

    @property
    def pending(self) -> tuple[tuple[Change[HostChange], str], ...]:
        """Held creates and updates: what the source asks for and does not have."""
        return tuple((change, why) for change, why in self.held if change.action != "delete")


def change_event(change: Change[HostChange]) -> tuple[str, str]:
    """The Normal Event (reason, message) of a change made."""
    if change.action == "create":
        reason = c.RECREATED if change.payload.recreates else c.HOST_ENTRY_CREATED
    else:
        reason = c.HOST_ENTRY_UPDATED if change.action == "update" else c.HOST_ENTRY_REMOVED
    return reason, describe(change).split(" ", 1)[1]  # "create host entry nas.lan -> 10.0.0.5"


def _synced(summary: Summary, entry: HostEntry | None) -> tuple[str, c.Status, str, str]:
    """(phase, Synced status, reason, message)."""
    if summary.failure is not None:
        return PHASE_ERROR, "False", summary.failure[0], summary.failure[1]
    if summary.blocked or (entry is None and summary.problems):
        reason = summary.problems[0][0] if summary.problems else c.INVALID_SPEC
        return PHASE_ERROR, "False", reason, "; ".join(message for _, message in summary.problems)
    if summary.pending or (entry is None and summary.held):
        held = summary.pending or summary.held
        reason = c.DRY_RUN if any(why == "dry-run" for _, why in held) else c.POLICY_FORBIDS_UPDATE
        lines = [f"{describe(change)} (held: {why})" for change, why in held]
        return PHASE_PENDING, "False", reason, "; ".join(lines)
    if entry is None:
        return PHASE_PENDING, "False", IGNORED, f"not registered: the object opts out (label {IGNORE_LABEL})"
    wrote = [change for change in summary.made if change.action != "delete"]
    if any(change.action == "create" for change in wrote):
        return PHASE_SYNCED, "True", c.CREATED, "Created"
    if wrote:
        return PHASE_SYNCED, "True", c.UPDATED, "Updated"
    return PHASE_SYNCED, "True", c.ALREADY_IN_SYNC, "Already in sync"


def mapping_status(previous: Mapping[str, Any] | None, generation: int | None, summary: Summary,
                   now: str | None = None) -> dict[str, Any]:
    """The status a HostMapping gets for `summary` (its previous status: conditions' transition times, the last
    sync time and the id and version when nothing newer is known)."""
    previous = previous or {}
    entry = next(iter(summary.entries.values()), None)
    phase, synced, reason, message = _synced(summary, entry)
    extra = [m for _, m in summary.problems] if synced == "True" else []
    if extra:
        message = "; ".join([message, *extra])
    conditions = c.set_condition(previous.get("conditions"), c.SYNCED, synced, reason, message, generation,
                                 timestamp=now)
    if synced == "True" and not extra:
        conditions = c.set_condition(conditions, c.READY, "True", c.RECONCILED, "", generation, timestamp=now)
    else:
        ready_reason = summary.problems[0][0] if synced == "True" else reason
        conditions = c.set_condition(conditions, c.READY, "False", ready_reason, message, generation, timestamp=now)
    status: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "hostId": entry.id if entry is not None else (previous.get("hostId") or ""),
        "hostVersion": entry.version if entry is not None else (previous.get("hostVersion") or ""),
        "observedGeneration": generation,
        "conditions": conditions,
    }
    wrote = any(change.action != "delete" for change in summary.made)
    last = (now or c.now()) if wrote else previous.get("lastSyncTime")
    if last:
        status["lastSyncTime"] = last
    return status


def problems_said(previous: Sequence[Mapping[str, Any]] | None) -> frozenset[str]:
    """The problem messages a HostMapping's Ready condition says already (posted as Warning Events when it was
    written): not said again after a restart."""
    ready = c.find(previous, c.READY)
    message = str((ready or {}).get("message") or "") if (ready or {}).get("status") == "False" else ""
    return frozenset(part for part in message.split("; ") if part)
