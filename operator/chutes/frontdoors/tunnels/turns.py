"""Turns per source in this process: the passes that publish or withdraw one annotated Service (its own handler, its
delete event's withdrawal, a Tunnel's resync and orphan sweep) never run at once. A Service deleted and made again
with the same name is two objects to kopf, handled concurrently, but one source to the ledger: without turns, the
old one's withdrawal removed the Access application while the new one's pass wrote its rule and record (a hostname
routable without Access), and released the claim under a rule it then left behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class SourceTurns:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def held(self, source: str) -> AsyncIterator[None]:
        """Wait for `source`'s turn, and hold it."""
        lock = self._locks.setdefault(source, asyncio.Lock())
        async with lock:
            yield
