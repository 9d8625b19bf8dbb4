"""The seam between a front door and a router-hosts store: ``HostsBackend``.

One implementation talks to a real server (``GrpcHostsBackend``, gRPC over mutual TLS); the emulator of
``chutes.sandbox.routerhosts`` serves the same wire contract to it, so tests run the real client.

Every method raises only ``chutes.hosts_core.errors`` exceptions. Entries are looked up by id (a hint kept in
Kubernetes) or found with ``search`` (a server-side, case-insensitive substring match over ip, hostname,
comment and tags: callers filter its result exactly). Ownership is the caller's business: the backend writes
what it is told.
"""

from __future__ import annotations

from typing import Protocol

from .models import HostEntry, HostSpec

__all__ = ["HostsBackend"]


class HostsBackend(Protocol):
    async def add(self, spec: HostSpec) -> HostEntry:
        """Create an entry (a new id, version "1"). The comment is sent whenever it is not None, also when empty.
        Raises HostAlreadyExists (a live entry has this ip and hostname), InvalidHost."""
        ...

    async def get(self, host_id: str) -> HostEntry:
        """The live entry `host_id`. Raises HostNotFound, InvalidHost (a malformed id)."""
        ...

    async def update(self, host_id: str, spec: HostSpec, expected_version: str) -> HostEntry:
        """Make entry `host_id` exactly `spec`: ip, hostname, comment ("" for None), aliases and tags are all
        sent (so an empty list clears), with `expected_version`. An update that changes nothing succeeds with
        any version. Raises VersionConflict (re-read, retry), HostNotFound, InvalidHost."""
        ...

    async def delete(self, host_id: str, expected_version: str | None = None) -> None:
        """Delete entry `host_id` (only at `expected_version`, when given). Raises HostNotFound (already gone:
        callers count it as done), VersionConflict."""
        ...

    async def search(self, query: str) -> list[HostEntry]:
        """Entries whose ip, hostname, comment or a tag contains `query`, ignoring case (never aliases; "": all).
        A superset of what a caller wants: filter it exactly."""
        ...

    async def list_all(self) -> list[HostEntry]:
        """Every live entry, in no particular order."""
        ...

    async def close(self) -> None:
        """Release the connection; the backend is not used afterwards."""
        ...
