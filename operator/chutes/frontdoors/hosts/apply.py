"""The *apply* step's executor: one change through the router-hosts backend. Each write carries the version
its decision read (an update or delete of an entry changed since is refused: :class:`Stale`, the caller reads
and decides again); a delete of an entry already gone is done; whatever else fails is raised as
:class:`ApplyFailed`, naming the change.
"""

from __future__ import annotations

from chutes.frontdoors.changes import Change
from chutes.frontdoors.hosts.decide import HostChange
from chutes.hosts_core.backend import HostsBackend
from chutes.hosts_core.errors import HostAlreadyExists, HostNotFound, HostsError, VersionConflict
from chutes.hosts_core.models import HostEntry

__all__ = ["ApplyFailed", "Executor", "Stale"]


class Stale(Exception):
    """The server changed since the read the decision stands on: read again, decide again."""


class ApplyFailed(Exception):
    """`change` failed with `error` (the server down, or refusing it)."""

    def __init__(self, change: Change[HostChange], error: HostsError) -> None:
        super().__init__(f"{change.action} {change.name}: {error.message}")
        self.change = change
        self.error = error


class Executor:
    """Makes changes through `backend`: `made` lists them in order, `written` holds the entries its creates and
    updates returned (by id), `removed` the ids of the entries it deleted (or found gone)."""

    def __init__(self, backend: HostsBackend) -> None:
        self.backend = backend
        self.written: dict[str, HostEntry] = {}
        self.removed: set[str] = set()
        self.made: list[Change[HostChange]] = []

    async def __call__(self, change: Change[HostChange]) -> None:
        payload = change.payload
        try:
            if change.action == "create" and payload.spec is not None:
                entry = await self.backend.add(payload.spec)
                self.written[entry.id] = entry
            elif change.action == "update" and payload.spec is not None:
                entry = await self.backend.update(payload.entry_id, payload.spec, payload.version)
                self.written[entry.id] = entry
            elif change.action == "delete":
                await self.backend.delete(payload.entry_id, payload.version)
                self.removed.add(payload.entry_id)
        except HostAlreadyExists as exc:  # made meanwhile (another replica, a retry whose answer was lost)
            raise Stale(f"create {change.name}: {exc.message}") from exc
        except VersionConflict as exc:
            raise Stale(f"{change.action} {change.name}: {exc.message}") from exc
        except HostNotFound as exc:
            if change.action == "delete":
                self.removed.add(payload.entry_id)  # gone already: what we wanted
                self.made.append(change)
                return
            raise Stale(f"{change.action} {change.name}: {exc.message}") from exc
        except HostsError as exc:
            raise ApplyFailed(change, exc) from exc
        self.made.append(change)
