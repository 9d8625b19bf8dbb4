"""A queue drained by one task: the shape both writers share.

Callers enqueue a request holding a future and await it. One drain task takes what is queued
(`_take`), flushes it (`_flush`, which resolves or fails each request) and repeats while
requests arrived in the meantime. A flush that raises fails every request it took.

A request the writer cannot answer because it was closed meanwhile (its tunnel deleted, the operator stopping)
fails with a :class:`TransientError`: nothing was wrong with it, and the caller's next pass asks again (of the
writer of whatever its target is by then).

A request remembers the front door repairing drift when it was queued (`drift.repairing`): the flush
runs in the drain task, whose context is not the caller's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import drift
from .errors import CloudflareError, TransientError

__all__ = ["CoalescingWriter", "Request"]


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
        return await request.done

    def _take(self) -> list[R]:
        """The requests of the next flush (default: everything queued)."""
        taken = [request for request in self._queue if not request.done.done()]
        self._queue = []
        return taken

    async def _flush(self, requests: list[R]) -> None:
        raise NotImplementedError

    async def _drain_queue(self) -> None:
        while self._queue:
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
