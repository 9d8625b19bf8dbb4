"""How many source objects a process reconciles at once (``CHUTES_MAX_RECONCILES``), the others waiting their turn.

Thousands of objects arriving at once (a mass creation, a restart: kopf resumes every object) would otherwise all be
in the middle of their reconcile together, each holding its reads, its requests and their answers (~30 KB): the
operator's memory would grow with the size of the burst, and the Python allocator keeps what it grew to. With a cap,
the memory in flight is bounded by the cap, whatever the burst.

A handler takes a slot first, before any lock or turn of its door (a slot is never awaited while one of those is
held, so no slot holder waits for a waiter), and gives it back when its reconcile ends, before kopf's retry delay:
an object waiting to retry holds nothing. Waiters are served in their order of arrival, so none is starved: the
object created last waits for the ones before it only. A reconcile nested in one that holds a slot (a resync that
reconciles an object it found) runs in that slot.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from typing import Any

from chutes.observability import metrics

__all__ = ["Slots", "of"]

_HELD: ContextVar[Slots | None] = ContextVar("chutes_reconcile_slot", default=None)


class Slots:
    """At most `limit` holders at once, first come first served; 0: no limit. Not bound to an event loop until
    used (made with the operator's memo, before kopf's loop may run); use it from one loop."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("the limit must be 0 (none) or more")
        self.limit = limit
        self.running = 0
        self.peak = 0  # the most holders there were at once
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """Hold a slot for the block (at once when the block is nested in one holding a slot of these)."""
        if self.limit == 0 or _HELD.get() is self:
            yield
            return
        await self._acquire()
        token = _HELD.set(self)
        try:
            yield
        finally:
            _HELD.reset(token)
            self._release()

    async def _acquire(self) -> None:
        if self.running < self.limit and not self._waiters:
            self.running += 1
            self.peak = max(self.peak, self.running)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        metrics.RECONCILES_WAITING.inc()
        try:
            await waiter  # resolved by a release, which counted this holder in already
        except asyncio.CancelledError:
            if not waiter.cancelled():
                self._release()  # handed a slot while being cancelled: pass it on
            with contextlib.suppress(ValueError):  # a release may have dropped it already
                self._waiters.remove(waiter)
            raise
        finally:
            metrics.RECONCILES_WAITING.dec()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to it directly: `running` stays
                return
        self.running -= 1


UNLIMITED = Slots(0)


def of(memo: Mapping[str, Any]) -> Slots:
    """The process's slots (``memo.slots``, made by the runtime), or no limit when the memo has none (a test's)."""
    found = memo.get("slots")
    return found if isinstance(found, Slots) else UNLIMITED
