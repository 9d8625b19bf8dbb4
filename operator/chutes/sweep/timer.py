"""Sweep passes run in kopf timers, which kopf does not cancel when the operator stops (it waits, then leaves
them running against closed clients): a pass is abandoned as soon as the timer's `stopped` flag is raised.
Abandoning is safe: every deletion is idempotent and the next pass starts from a fresh listing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

__all__ = ["unless_stopped"]

T = TypeVar("T")


async def unless_stopped(work: Coroutine[Any, Any, T], stopped: Awaitable[Any]) -> T | None:
    """`work`'s result, or None when `stopped` completes first (`work` is then cancelled)."""
    task = asyncio.ensure_future(work)

    async def wait() -> None:
        await stopped

    waiter = asyncio.ensure_future(wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
