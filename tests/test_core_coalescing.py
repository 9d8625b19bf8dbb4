"""The coalescing writers settle before they flush: requests that trickle in (each caller paced by its own ledger
writes) share a flush, and so do passes declared in flight that reach the writer one after the other; a pass that
never asks delays a flush by `max_linger` at most, and a lone request by `linger` once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from chutes.cloudflare_core.coalescing import CoalescingWriter, Request, in_flight


@dataclass(eq=False)
class _Ask(Request):
    value: int = field(kw_only=True)


class _Recorder(CoalescingWriter[_Ask]):
    """Answers each request with its value; records what each flush took."""

    linger = 0.02
    max_linger = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.flushes: list[list[int]] = []

    async def ask(self, value: int) -> int:
        result: int = await self._submit(_Ask(value=value))
        return result

    async def _flush(self, requests: list[_Ask]) -> None:
        self.flushes.append([request.value for request in requests])
        for request in requests:
            request.resolve(request.value)


async def test_requests_that_trickle_in_share_one_flush() -> None:
    writer = _Recorder()

    async def paced(value: int) -> int:
        await asyncio.sleep(0.002 * value)  # a ledger write each, before asking
        return await writer.ask(value)

    assert await asyncio.gather(*(paced(i) for i in range(10))) == list(range(10))
    assert writer.flushes == [list(range(10))]


async def test_passes_in_flight_are_waited_for_then_share_one_flush() -> None:
    writer = _Recorder()
    go = asyncio.Event()

    async def early() -> int:
        async with in_flight():
            return await writer.ask(1)

    async def late() -> int:
        async with in_flight():
            await go.wait()  # still reading: longer than the linger
            return await writer.ask(2)

    tasks = [asyncio.ensure_future(early()), asyncio.ensure_future(late())]
    await asyncio.sleep(0.1)
    assert writer.flushes == []  # the early one waits for the late one
    go.set()
    assert await asyncio.gather(*tasks) == [1, 2]
    assert writer.flushes == [[1, 2]]


async def test_a_pass_that_never_asks_delays_a_flush_by_max_linger_at_most() -> None:
    writer = _Recorder()
    never = asyncio.Event()

    async def idle() -> None:
        async with in_flight():
            await never.wait()

    waiting = asyncio.ensure_future(idle())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await writer.ask(7) == 7
    assert 0.4 <= loop.time() - started < 2.0
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    started = loop.time()  # no pass in flight any more: a lone request waits the linger only
    assert await writer.ask(8) == 8
    assert loop.time() - started < 0.4


async def test_a_pass_nested_in_another_is_part_of_it() -> None:
    writer = _Recorder()
    loop = asyncio.get_running_loop()
    async with in_flight(), in_flight():
        started = loop.time()
        assert await writer.ask(3) == 3  # not waiting for itself until max_linger
    assert loop.time() - started < 0.4
