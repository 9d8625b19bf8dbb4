"""The emulated server's entries and rules (reference §5), independent of gRPC transport: thread-safe.

- Add: §5.2 validation (ip, hostname, aliases), then ALREADY_EXISTS when a live entry has the identical ip string
  and the identical hostname string (``duplicate entry: <ip> -> <hostname>``); a new ULID, version 1.
- Update: NOT_FOUND first; one event per *changed* ip, per *changed* hostname (each validated only then), and
  one per *present* comment, tags or aliases field (aliases validated against the new hostname), even when the
  value is unchanged. No event: the current entry, no version check. Otherwise the stored version must equal
  `expected_version` (absent counts as 0), else ABORTED ``version conflict on <id>: expected E, got N``; the
  version then goes up by the number of events. No duplicate check.
- Delete: NOT_FOUND; a present `expected_version` must match (``-1`` means "unconditional", as upstream);
  the entry goes, its id is never used again.
- Ids and `expected_version` are parsed before any lookup (INVALID_ARGUMENT, with the server's texts).
- Search: case-insensitive substring of ip, hostname, comment or any tag (never aliases); "" matches all.
- List and Search answer in a shuffled order: the server promises none, so no client may depend on one.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from chutes.hosts_core.validation import alias_problems, hostname_problem, ip_problem

from .ids import UlidGenerator, canonical_id, id_problem

__all__ = ["Refusal", "Store", "StoredHost", "Update"]

_INT = re.compile(r"[+-]?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)


class Refusal(Exception):
    """The server's answer to a refused request: a status code and its message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StoredHost:
    id: str
    ip: str
    hostname: str
    comment: str | None
    tags: tuple[str, ...]
    aliases: tuple[str, ...]
    version: int
    created_at: float
    updated_at: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ip_address": self.ip,
            "hostname": self.hostname,
            "comment": self.comment,
            "tags": list(self.tags),
            "aliases": list(self.aliases),
            "version": str(self.version),
        }


@dataclass(frozen=True)
class Update:
    """An UpdateHostRequest: None means "field absent" (keep) for every field."""

    ip: str | None = None
    hostname: str | None = None
    comment: str | None = None
    tags: Sequence[str] | None = None
    aliases: Sequence[str] | None = None
    expected_version: str | None = None


def go_quote(text: str) -> str:
    """Close to Go's %q (what the server's messages use to quote ids and versions)."""
    return json.dumps(text, ensure_ascii=False)


class Store:
    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, StoredHost] = {}
        self._ids = UlidGenerator()
        self._rng = rng or random.Random()

    # --- the RPCs ----------------------------------------------------------------------------------

    def add(
        self, ip: str, hostname: str, comment: str | None, tags: Sequence[str], aliases: Sequence[str]
    ) -> StoredHost:
        _validate_entry(ip, hostname, aliases)
        with self._lock:
            if any(h.ip == ip and h.hostname == hostname for h in self._hosts.values()):
                raise Refusal(grpc.StatusCode.ALREADY_EXISTS, f"duplicate entry: {ip} -> {hostname}")
            now = time.time()
            host = StoredHost(
                id=self._ids.new(), ip=ip, hostname=hostname, comment=comment, tags=tuple(tags),
                aliases=tuple(aliases), version=1, created_at=now, updated_at=now,
            )
            self._hosts[host.id] = host
            return host

    def get(self, raw_id: str) -> StoredHost:
        host_id = _parse_id(raw_id)
        with self._lock:
            return self._live(host_id)

    def update(self, raw_id: str, change: Update) -> StoredHost:
        host_id = _parse_id(raw_id)
        expected = 0 if change.expected_version is None else _parse_version(change.expected_version)
        with self._lock:
            current = self._live(host_id)
            fields: dict[str, Any] = {}
            events = 0
            if change.ip is not None and change.ip != current.ip:
                _raise_invalid(ip_problem(change.ip))
                fields["ip"] = change.ip
                events += 1
            hostname = current.hostname
            if change.hostname is not None and change.hostname != current.hostname:
                _raise_invalid(hostname_problem(change.hostname))
                fields["hostname"] = hostname = change.hostname
                events += 1
            if change.comment is not None:
                fields["comment"] = change.comment
                events += 1
            if change.tags is not None:
                fields["tags"] = tuple(change.tags)
                events += 1
            if change.aliases is not None:
                _raise_alias_problems(hostname, change.aliases)
                fields["aliases"] = tuple(change.aliases)
                events += 1
            if events == 0:
                return current
            if expected != current.version:
                raise _conflict(host_id, expected, current.version)
            updated = dataclasses.replace(
                current, **fields, version=current.version + events, updated_at=time.time()
            )
            self._hosts[host_id] = updated
            return updated

    def delete(self, raw_id: str, expected_version: str | None) -> None:
        host_id = _parse_id(raw_id)
        expected = -1 if expected_version is None else _parse_version(expected_version)
        with self._lock:
            current = self._live(host_id)
            if expected != -1 and expected != current.version:
                raise _conflict(host_id, expected, current.version)
            del self._hosts[host_id]

    def list_all(self) -> list[StoredHost]:
        with self._lock:
            hosts = list(self._hosts.values())
            self._rng.shuffle(hosts)
        return hosts

    def search(self, query: str) -> list[StoredHost]:
        needle = query.lower()
        return [host for host in self.list_all() if not needle or _matches(host, needle)]

    # --- direct access (tests, `chutes plan`): no validation, no log, no faults --------------------

    def put(self, host: StoredHost) -> None:
        with self._lock:
            self._hosts[host.id] = host

    def remove(self, host_id: str) -> bool:
        with self._lock:
            return self._hosts.pop(canonical_id(host_id), None) is not None

    def new_id(self) -> str:
        return self._ids.new()

    def snapshot(self) -> list[StoredHost]:
        with self._lock:
            return sorted(self._hosts.values(), key=lambda host: host.id)

    def _live(self, host_id: str) -> StoredHost:
        host = self._hosts.get(host_id)
        if host is None:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"host {go_quote(host_id)} not found")
        return host


def _matches(host: StoredHost, needle: str) -> bool:
    fields = [host.ip, host.hostname, *host.tags] + ([host.comment] if host.comment is not None else [])
    return any(needle in field.lower() for field in fields)


def _validate_entry(ip: str, hostname: str, aliases: Sequence[str]) -> None:
    _raise_invalid(ip_problem(ip))
    _raise_invalid(hostname_problem(hostname))
    _raise_alias_problems(hostname, aliases)


def _raise_invalid(problem: str | None) -> None:
    if problem is not None:
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, problem)


def _raise_alias_problems(hostname: str, aliases: Sequence[str]) -> None:
    problems = alias_problems(hostname, list(aliases))
    if problems:
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"validation failed: alias validation: {problems[0]}")


def _parse_id(raw: str) -> str:
    problem = id_problem(raw)
    if problem is not None:
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"invalid ID {go_quote(raw)}: {problem}")
    return canonical_id(raw)


def _parse_version(raw: str) -> int:
    """Go's strconv.ParseInt(raw, 10, 64), with its messages."""
    reason = None
    if not _INT.fullmatch(raw):
        reason = "invalid syntax"
    elif not _INT64[0] <= int(raw) <= _INT64[1]:
        reason = "value out of range"
    if reason is not None:
        raise Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid expected_version {go_quote(raw)}: strconv.ParseInt: parsing {go_quote(raw)}: {reason}",
        )
    return int(raw)


def _conflict(host_id: str, expected: int, actual: int) -> Refusal:
    return Refusal(grpc.StatusCode.ABORTED, f"version conflict on {host_id}: expected {expected}, got {actual}")
