"""A queue drained by one task: the shape both writers share.

Callers enqueue a request holding a future and await it. One drain task takes what is queued
(`_take`), flushes it (`_flush`, which resolves or fails each request) and repeats while
requests arrived in the meantime. A flush that raises fails every request it took.

A request the writer cannot answer because it was closed meanwhile (its tunnel deleted, the operator stopping)
fails with a :class:`TransientError`: nothing was wrong with it, and the caller's next pass asks again (of the
writer of whatever its target is by then).

A burst of requests rarely arrives in one tick: each caller reads Kubernetes and records an intent in the ledger
(Kubernetes writes) right before it asks, so N passes started together reach a writer one by one, paced by the API
server, and a writer that flushed as soon as anything was queued flushed once per wave of them. The drain therefore
*settles* before it takes, at most `MAX_LINGER` in all:

- while a pass declared :func:`in_flight` (a front door's reconcile, from its first read) is still running, that is,
  has no request queued in any writer: it is on its way (its requests would make the next wave);
- then while requests keep arriving (`LINGER` after the last one): the requests of one pass, paced by its ledger
  writes. A lone request waits `LINGER` once.

A pass blocked on anything but a writer (a lock, a lookup another pass makes) counts as running: it only delays the
flushes, never beyond `MAX_LINGER`.

A request remembers the front door repairing drift when it was queued (`drift.repairing`): the flush
runs in the drain task, whose context is not the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import drift
from .errors import CloudflareError, TransientError

__all__ = ["LINGER", "MAX_LINGER", "CoalescingWriter", "Request", "in_flight"]

LINGER = 0.03  # seconds without a new request after which a drain takes what is queued
MAX_LINGER = 1.5  # seconds a drain waits in all for a burst to settle


class _Passes:
    """The passes in flight on one event loop: how many are running (no request of theirs in a writer)."""

    def __init__(self) -> None:
        self.running = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, count: int) -> None:
        self.running += count
        if self.running > 0:
            self.idle.clear()
        else:
            self.idle.set()


@dataclass(eq=False)
class _Pass:
    passes: _Passes
    waiting: int = 0  # its requests in a writer
    over: bool = False

    def asked(self) -> None:
        self.waiting += 1
        if self.waiting == 1 and not self.over:
            self.passes.add(-1)

    def answered(self) -> None:
        self.waiting -= 1
        if self.waiting == 0 and not self.over:
            self.passes.add(1)


_PASSES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Passes] = weakref.WeakKeyDictionary()
_PASS: ContextVar[_Pass | None] = ContextVar("chutes_writer_pass", default=None)


def _passes() -> _Passes:
    loop = asyncio.get_running_loop()
    found = _PASSES.get(loop)
    if found is None:
        found = _PASSES[loop] = _Passes()
    return found


@contextlib.asynccontextmanager
async def in_flight() -> AsyncIterator[None]:
    """A pass that will ask the writers soon (see the module): they wait for it, within `MAX_LINGER`. Nested in
    another, it is part of that one."""
    if _PASS.get() is not None:
        yield
        return
    passes = _passes()
    mine = _Pass(passes)
    token = _PASS.set(mine)
    passes.add(1)
    try:
        yield
    finally:
        _PASS.reset(token)
        mine.over = True
        if mine.waiting == 0:
            passes.add(-1)


@dataclass(eq=False)
class Request:
    done: asyncio.Future[Any] = field(init=False)
    front_door: str | None = field(init=False)  # repairing drift when queued (drift.repairing)
    reuse_listings: bool = field(init=False)  # a repair a pass's last listing may answer (drift.reusing_listings)

    def __post_init__(self) -> None:
        self.done = asyncio.get_running_loop().create_future()
        self.front_door = drift.current()
        self.reuse_listings = drift.reusing_listings()

    def resolve(self, value: Any) -> None:
        if not self.done.done():
            self.done.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)


R = TypeVar("R", bound=Request)


class CoalescingWriter(Generic[R]):
    label = "writer"
    linger = LINGER
    max_linger = MAX_LINGER

    def __init__(self) -> None:
        self._queue: list[R] = []
        self._drain: asyncio.Task[None] | None = None
        self._closed = False

    async def _submit(self, request: R) -> Any:
        if self._closed:
            raise TransientError(f"the {self.label} is closed")
        self._queue.append(request)
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._drain_queue(), name=self.label)
        mine = _PASS.get()
        if mine is None:
            return await request.done
        mine.asked()
        try:
            return await request.done
        finally:
            mine.answered()

    def _take(self) -> list[R]:
        """The requests of the next flush (default: everything queued)."""
        taken = [request for request in self._queue if not request.done.done()]
        self._queue = []
        return taken

    async def _flush(self, requests: list[R]) -> None:
        raise NotImplementedError

    async def _settle(self) -> None:
        """Wait while a pass in flight is running, then while requests keep arriving (until none came for
        `linger`), at most `max_linger` in all (see the module)."""
        if self.linger <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_linger
        passes = _passes()
        while (left := deadline - loop.time()) > 0:
            if passes.running > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):  # not wait_for: on 3.11 it may swallow a cancel as it wakes
                        await passes.idle.wait()
                continue
            seen = len(self._queue)
            await asyncio.sleep(min(self.linger, left))
            if len(self._queue) == seen and passes.running == 0:
                return

    async def _drain_queue(self) -> None:
        _PASS.set(None)  # the drain task's own context (a copy of its first caller's) is part of no pass
        while self._queue:
            await self._settle()
            requests = self._take()
            try:
                if requests:
                    await self._flush(requests)
            except Exception as error:
                for request in requests:
                    request.fail(error)
            except BaseException:
                self._fail_all(requests, TransientError(f"the {self.label} flush was cancelled"))
                raise
            for request in requests:  # defensive: nobody waits forever
                request.fail(CloudflareError(f"the {self.label} left a request unanswered"))

    def _fail_all(self, requests: list[R], error: Exception) -> None:
        pending, self._queue = [*requests, *self._queue], []
        for request in pending:
            request.fail(error)

    async def aclose(self) -> None:
        self._closed = True
        drain = self._drain
        if drain is not None and not drain.done():
            drain.cancel()
            await asyncio.wait([drain])
        self._fail_all([], TransientError(f"the {self.label} is closed"))
