"""One long-running asyncio task owned by an object (a loop, a watch): started, stopped (cancelled and
awaited), and healthy while it runs. For liveness: a task that ended by itself is not healthy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, Self


class BackgroundTask:
    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def healthy(self) -> bool:
        return self._task is not None and not self._task.done()


class InBackground:
    """An object whose work is one :class:`BackgroundTask` (its ``_background``): started (the object returned),
    stopped, and healthy as that task is."""

    _background: BackgroundTask

    def start(self) -> Self:
        self._background.start()
        return self

    async def stop(self) -> None:
        await self._background.stop()

    def healthy(self) -> bool:
        return self._background.healthy()
