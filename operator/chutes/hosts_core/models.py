"""What a router-hosts entry is, what we want one to be, and whether the two agree (pure).

``HostEntry`` is an entry as the server has it; ``HostSpec`` is what a source object wants. ``in_sync`` decides
whether an update is needed. The validation functions of ``chutes.hosts_core.validation`` are re-exported here:
a door checks a spec with them before any call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .validation import MAX_ALIASES, alias_problems, hostname_problem, ip_problem

__all__ = [
    "MAX_ALIASES",
    "HostEntry",
    "HostSpec",
    "alias_problems",
    "hostname_problem",
    "in_sync",
    "ip_problem",
    "spec_problems",
]


@dataclass(frozen=True)
class HostEntry:
    """One entry on the server. `version` is opaque: pass it back as `expected_version`, compare for equality.
    `comment` is None when the entry has none (the field is absent on the wire)."""

    id: str
    ip: str
    hostname: str
    comment: str | None
    aliases: tuple[str, ...]
    tags: tuple[str, ...]
    version: str


@dataclass(frozen=True)
class HostSpec:
    """What an entry should be. `comment` None: no comment (the client omits the field on add)."""

    ip: str
    hostname: str
    comment: str | None
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


def in_sync(entry: HostEntry, spec: HostSpec) -> bool:
    """True when `entry` already is `spec`: ip and hostname exactly (no IP normalisation, case kept), aliases
    and tags as multisets (order is not ours to keep), and the comment.

    Upstream ignores the comment (its v0.10.x client never read it back). We compare it because the comment is
    our ownership marker (``k8s:<ns>/<name>``): an entry that no longer carries the marker we want is not in the
    state we want, and the caller decides by its ownership rule whether to restore it or report a conflict. None
    and "" are equal here: the wire has no way back from a present comment to an absent one (UpdateHost's absent
    comment means "keep"), so an update can only bring a spec without comment to an empty one."""
    return (
        entry.ip == spec.ip
        and entry.hostname == spec.hostname
        and (entry.comment or "") == (spec.comment or "")
        and Counter(entry.aliases) == Counter(spec.aliases)
        and Counter(entry.tags) == Counter(spec.tags)
    )


def spec_problems(spec: HostSpec) -> list[str]:
    """Every reason the server would refuse `spec` (ip, hostname, then aliases); [] when it would accept it."""
    problems = [problem for problem in (ip_problem(spec.ip), hostname_problem(spec.hostname)) if problem]
    return problems + alias_problems(spec.hostname, spec.aliases)
