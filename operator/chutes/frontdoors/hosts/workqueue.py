"""A keyed work queue: each key is worked on at most once at a time, at the earliest time it was wanted for; a
key wanted again while being worked on is worked on again afterwards (so no change is missed), and a failed
key comes back after a growing delay. The door's watch events, retries and resync all go through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from chutes.frontdoors.retries import backoff

__all__ = ["WorkQueue"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
Work = Callable[[K], Awaitable[float | None]]  # the next try in seconds (None: only when wanted again)


class WorkQueue(Generic[K]):
    def __init__(self, work: Work[K], workers: int = 8, clock: Callable[[], float] = time.monotonic) -> None:
        self._work = work
        self._clock = clock
        self._due: dict[K, float] = {}
        self._running: set[K] = set()
        self._again: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(workers)
        self._tasks: set[asyncio.Task[None]] = set()

    def want(self, key: K, delay: float = 0.0) -> None:
        """Work on `key` in `delay` seconds at the latest (sooner if it is wanted sooner)."""
        at = self._clock() + max(delay, 0.0)
        if key in self._running:
            self._again[key] = min(self._again.get(key, math.inf), at)
        elif at < self._due.get(key, math.inf):
            self._due[key] = at
            self._wake.set()

    def idle(self) -> bool:
        """Nothing due now nor being worked on (tests and benchmarks wait for it)."""
        now = self._clock()
        return not self._running and not any(at <= now for at in self._due.values())

    async def run(self) -> None:
        """Work until cancelled (then the keys being worked on are cancelled too)."""
        try:
            while True:
                self._wake.clear()
                now = self._clock()
                for key in sorted((k for k, at in self._due.items() if at <= now), key=self._due.__getitem__):
                    await self._slots.acquire()
                    if key not in self._due:  # taken meanwhile: cannot happen, but never work twice
                        self._slots.release()
                        continue
                    del self._due[key]
                    self._running.add(key)
                    task = asyncio.create_task(self._one(key), name=f"hosts {key}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                upcoming = min(self._due.values(), default=None)
                timeout = None if upcoming is None else max(upcoming - self._clock(), 0.0)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):  # not wait_for: on 3.11 it may swallow a cancel as it wakes
                        await self._wake.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _one(self, key: K) -> None:
        retry: float | None
        try:
            retry = await self._work(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("working on %s failed; retried", key)
            retry = 0.0
        finally:
            self._running.discard(key)
            self._slots.release()
        if retry is None:
            self._failures.pop(key, None)
        else:
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            self.want(key, max(retry, backoff(failures)))
        again = self._again.pop(key, None)
        if again is not None:
            self.want(key, again - self._clock())
