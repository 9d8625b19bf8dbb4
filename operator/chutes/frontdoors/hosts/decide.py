"""From what a source wants and what the server holds, the changes to make (pure).

Ownership is proven, never inferred: an entry is the source's only when its comment is the source's
provenance comment (and, for routes, it carries the ``traefik`` and ``ingress`` tags, as upstream requires
before adopting); ids recorded in status or annotations are hints, used only to pick among proven entries and
to tell a recreate from a first create. Every other entry is foreign: never changed, never deleted.

Per wanted hostname (names compared regardless of case, as DNS does):

- the oldest entry for the name holds it. A foreign entry older than ours (or any foreign entry when we have
  none) keeps the name: ``AdoptionRefused`` when it has this very ip and hostname (upstream's word: the server
  would refuse our add with ALREADY_EXISTS and the entry is not ours to adopt), else ``HostnameConflict``; ours
  for the name, if any, lost a race and is removed. A foreign entry younger than ours is reported, and ours
  kept;
- else the source's entry for the name (the hinted one among several, else the oldest: the others are our own
  duplicates and go) is updated when it differs (:func:`~chutes.hosts_core.models.in_sync`), or created when
  there is none. A HostMapping whose hostname changed updates its entry for the old name in place (its id is
  kept), as upstream does.

Every proven entry no hostname wants any more is deleted. Creates and updates come first (by hostname), deletes
last. A source whose :class:`~chutes.frontdoors.hosts.desired.Wants` *block* gets no change at all: what
exists stays as it is until the object is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from chutes import conditions as c
from chutes.frontdoors.changes import Change, Decision
from chutes.frontdoors.hosts.desired import Source, Wants
from chutes.hosts_core.models import HostEntry, HostSpec, in_sync

__all__ = ["Found", "HostChange", "decide", "describe_entry"]

KIND = "host_entry"


@dataclass(frozen=True)
class HostChange:
    """What the executor needs: the spec to write (create, update), the entry and the version it was read at
    (update, delete: the server refuses the write if it changed since), and for a create the id of the entry
    it replaces (a recreate: that entry was deleted behind our back)."""

    spec: HostSpec | None = None
    entry_id: str = ""
    version: str = ""
    recreates: str = ""


@dataclass(frozen=True)
class Found:
    """What the server holds for a source, read once: `ours`, every entry carrying its comment (search by the
    comment, filtered exactly), and `named`, by wanted hostname (lower case), every entry of that name (search
    by the hostname, filtered exactly)."""

    ours: tuple[HostEntry, ...] = ()
    named: Mapping[str, tuple[HostEntry, ...]] = field(default_factory=dict)


def describe_entry(entry: HostEntry) -> str:
    return f"entry {entry.id} ({entry.ip} {entry.hostname}, comment {entry.comment or '(none)'!r})"


def _differences(entry: HostEntry, spec: HostSpec) -> str:
    parts = []
    if entry.hostname != spec.hostname:
        parts.append(f"hostname {entry.hostname} -> {spec.hostname}")
    if entry.ip != spec.ip:
        parts.append(f"ip {entry.ip} -> {spec.ip}")
    if (entry.comment or "") != (spec.comment or ""):
        parts.append(f"comment {entry.comment or ''!r} -> {spec.comment or ''!r}")
    if sorted(entry.aliases) != sorted(spec.aliases):
        parts.append(f"aliases {list(entry.aliases)} -> {list(spec.aliases)}")
    if sorted(entry.tags) != sorted(spec.tags):
        parts.append(f"tags {list(entry.tags)} -> {list(spec.tags)}")
    return ", ".join(parts)


def _create(spec: HostSpec, recreates: str) -> Change[HostChange]:
    detail = f"-> {spec.ip}" + (f" (entry {recreates} was deleted behind our back)" if recreates else "")
    return Change("create", KIND, spec.hostname, HostChange(spec=spec, recreates=recreates), detail)


def _update(entry: HostEntry, spec: HostSpec) -> Change[HostChange]:
    return Change("update", KIND, spec.hostname, HostChange(spec=spec, entry_id=entry.id, version=entry.version),
                  _differences(entry, spec), key=f"{KIND}/{entry.id}")


def _delete(entry: HostEntry, why: str) -> Change[HostChange]:
    return Change("delete", KIND, entry.hostname, HostChange(entry_id=entry.id, version=entry.version),
                  f"({entry.ip}, id {entry.id}{', ' + why if why else ''})", key=f"{KIND}/{entry.id}")


def _refusal(source: Source, hostname: str, spec: HostSpec, foreign: Sequence[HostEntry]) -> tuple[str, str]:
    same = [e for e in foreign if e.ip == spec.ip and e.hostname == spec.hostname]
    if same:
        return c.ADOPTION_REFUSED, (f"{hostname}: {describe_entry(same[0])} is not ours ({source.comment}): "
                                    "left untouched")
    return c.HOSTNAME_CONFLICT, f"{hostname}: held by {describe_entry(min(foreign, key=_age))}: left untouched"


def _age(entry: HostEntry) -> str:
    return entry.id  # ULIDs sort by creation time


def decide(source: Source, wants: Wants, found: Found) -> Decision[HostChange]:
    """The changes that bring the server to what `source` wants, and the problems found (see the module)."""
    problems = list(wants.problems)
    if wants.block:
        return Decision((), tuple(problems))
    owned = sorted((e for e in found.ours if source.owns(e.comment, e.tags)), key=_age)
    hinted = set(wants.hints.values())
    creates: list[Change[HostChange]] = []
    deletes: list[Change[HostChange]] = []
    used: set[str] = set()
    for hostname in sorted(wants.specs, key=str.lower):
        spec = wants.specs[hostname]
        key = hostname.lower()
        mine = [e for e in owned if e.hostname.lower() == key and e.id not in used]
        foreign = [e for e in found.named.get(key, ()) if not source.owns(e.comment, e.tags)]
        if foreign and (not mine or min(map(_age, foreign)) < _age(mine[0])):
            problems.append(_refusal(source, hostname, spec, foreign))
            used.update(e.id for e in mine)
            deletes.extend(_delete(e, "another entry holds the name") for e in mine)
            continue
        problems.extend((c.HOSTNAME_CONFLICT, f"{hostname}: {describe_entry(e)} also names it: left untouched")
                        for e in foreign)
        if not mine and source.family == "HostMapping":  # its entry under an older hostname: renamed in place
            renamed = [e for e in owned if e.id not in used and e.hostname.lower() not in _lowered(wants.specs)]
            mine = sorted(renamed, key=lambda e: e.id not in hinted)[:1]  # the hinted one first
        if not mine:
            hint = wants.hints.get(hostname, "")
            creates.append(_create(spec, hint if hint and hint not in {e.id for e in owned} else ""))
            continue
        keep = next((e for e in mine if e.id in hinted), mine[0])
        used.update(e.id for e in mine)
        if not in_sync(keep, spec):
            creates.append(_update(keep, spec))
        deletes.extend(_delete(e, "a duplicate") for e in mine if e.id != keep.id)
    deletes.extend(_delete(e, "no longer wanted") for e in owned if e.id not in used)
    return Decision(tuple(creates + deletes), tuple(problems))


def _lowered(specs: Mapping[str, HostSpec]) -> set[str]:
    return {hostname.lower() for hostname in specs}
