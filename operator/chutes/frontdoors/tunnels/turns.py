"""Turns per source in this process: the passes that publish or withdraw one annotated Service or TunnelBinding (its
own handlers, a Service's delete event's withdrawal, a Tunnel's resync and orphan sweep, the deletion of the Tunnel
its rule is in) never run at once. A Service deleted and made again with the same name is two objects to kopf,
handled concurrently, but one source to the ledger: without turns, the old one's withdrawal removed the Access
application while the new one's pass wrote its rule and record (a hostname routable without Access), and released
the claim under a rule it then left behind. A Tunnel's deletion tears down the claims routed into its tunnel as it
read them: without turns, a Service moving to another tunnel meanwhile lost the CNAME and Access application it
had just made there, and the rule entry that proved its new rule."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable


class SourceTurns:
    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def held(self, source: str) -> AsyncIterator[None]:
        """Wait for `source`'s turn, and hold it."""
        lock = self._locks.setdefault(source, asyncio.Lock())
        async with lock:
            yield

    @contextlib.asynccontextmanager
    async def all_held(self, sources: Iterable[str]) -> AsyncIterator[None]:
        """Wait for the turn of each of `sources` (taken in order of name: two callers never wait for each other's
        next one), and hold them all."""
        async with contextlib.AsyncExitStack() as stack:
            for source in sorted(set(sources)):
                await stack.enter_async_context(self.held(source))
            yield
