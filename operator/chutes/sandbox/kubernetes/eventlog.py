"""Per-resource watch event logs, so that a watch can resume from any recent resourceVersion.

Every change gets a cluster-wide, monotonic resourceVersion. A watch started from version N replays the
logged events after N and then follows new ones; when the log has dropped events after N, the watch
gets 410 Gone (``too old resource version``) like on a real apiserver.
"""

from __future__ import annotations

import asyncio
import bisect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    """One change: ``obj`` is the new state (the last state for DELETED), ``old`` the previous one."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


class EventLog:
    """An append-only list of events ordered by resourceVersion, keeping at least the last ``capacity``."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self.horizon = 0  # every event with rv > horizon is still in the log
        self._events: list[Event] = []
        self._changed: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._events)

    def append(self, event: Event) -> None:
        self._events.append(event)
        if len(self._events) > self.capacity + self.capacity // 4:  # trim in batches: amortised O(1)
            drop = len(self._events) - self.capacity
            self.horizon = self._events[drop - 1].rv
            del self._events[:drop]
        self.wake()

    def wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def expired(self, rv: int) -> bool:
        return rv < self.horizon

    def since(self, rv: int) -> list[Event]:
        start = bisect.bisect_right(self._events, rv, key=lambda event: event.rv)
        return self._events[start:]

    async def changed(self) -> None:
        """Wait until the next append (or an explicit wake-up)."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._changed)
