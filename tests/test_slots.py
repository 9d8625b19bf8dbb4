"""The cap on reconciles in flight (``CHUTES_MAX_RECONCILES``, :mod:`chutes.frontdoors.slots`): never more holders
than the limit, served in their order of arrival (the one that came last is not starved), a nested reconcile runs
in its holder's slot (no deadlock at a limit of 1), a cancelled waiter leaves no slot taken. The operator test:
a burst of HTTPRoutes under a cap of 2 is published in full, and the cap held."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from chutes.frontdoors import slots as s
from chutes.frontdoors.slots import Slots
from harness.httproutes import World, home, world_fixture  # noqa: F401


async def _crowd(slots: Slots, count: int) -> tuple[list[int], int]:
    """`count` tasks started in order, each holding a slot until all have asked: (the order they got in, the most
    holders seen at once)."""
    order: list[int] = []
    release = asyncio.Event()
    inside = 0
    most = 0

    async def one(i: int) -> None:
        nonlocal inside, most
        async with slots.held():
            order.append(i)
            inside += 1
            most = max(most, inside)
            await release.wait()
            await asyncio.sleep(0)
            inside -= 1

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    await asyncio.sleep(0)  # each task's first step: in, or in the queue
    admitted = min(count, slots.limit or count)
    assert (len(order), slots.waiting) == (admitted, count - admitted)
    release.set()
    await asyncio.gather(*tasks)
    return order, most


async def test_never_more_holders_than_the_limit_and_first_come_first_served() -> None:
    slots = Slots(3)
    order, most = await _crowd(slots, 20)
    assert most == 3 and slots.peak == 3
    assert order == list(range(20))  # the last to arrive got in last, but got in
    assert (slots.running, slots.waiting) == (0, 0)


async def test_a_newcomer_queues_behind_the_waiters_even_when_a_slot_is_handed_over() -> None:
    slots = Slots(1)
    got: list[str] = []
    first = asyncio.Event()

    async def holder(name: str, hold: asyncio.Event | None = None) -> None:
        async with slots.held():
            got.append(name)
            if hold is not None:
                await hold.wait()

    a = asyncio.create_task(holder("a", first))
    await asyncio.sleep(0)
    b = asyncio.create_task(holder("b"))
    await asyncio.sleep(0)
    assert slots.waiting == 1
    first.set()  # a leaves: the slot goes to b, before c, which arrives now, can take it
    c = asyncio.create_task(holder("c"))
    await asyncio.gather(a, b, c)
    assert got == ["a", "b", "c"]


async def test_the_waiters_are_counted_in_a_gauge() -> None:
    def waiting() -> float:
        return REGISTRY.get_sample_value("chutes_reconciles_waiting") or 0.0

    slots, before = Slots(1), waiting()
    hold = asyncio.Event()

    async def holder() -> None:
        async with slots.held():
            await hold.wait()

    tasks = [asyncio.create_task(holder()) for _ in range(4)]
    await asyncio.sleep(0)
    assert waiting() - before == 3
    hold.set()
    await asyncio.gather(*tasks)
    assert waiting() == before


async def test_no_limit() -> None:
    order, most = await _crowd(Slots(0), 10)
    assert most == 10 and order == list(range(10))


async def test_a_nested_reconcile_runs_in_its_holders_slot() -> None:
    slots = Slots(1)

    async def nested() -> str:
        async with slots.held(), slots.held():  # the inner one: e.g. a resync reconciling an object it found
            return "done"

    assert await asyncio.wait_for(nested(), 5) == "done"
    assert slots.running == 0


async def test_a_waiter_cancelled_takes_no_slot_with_it() -> None:
    slots = Slots(1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with slots.held():
            await hold.wait()

    async def waiter() -> None:
        async with slots.held():
            raise AssertionError("a cancelled waiter must not run")

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    queued = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    queued.cancel()  # while it waits
    with pytest.raises(asyncio.CancelledError):
        await queued
    hold.set()
    await first
    assert (slots.running, slots.waiting) == (0, 0)
    async with slots.held():  # free again
        assert slots.running == 1


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    slots = Slots(1)
    got: list[str] = []

    async def holder(name: str) -> None:
        async with slots.held():
            got.append(name)

    go = asyncio.Event()

    async def first() -> None:
        async with slots.held():
            await go.wait()
        handed.cancel()  # handed the slot by the release just above, not resumed yet

    releasing = asyncio.create_task(first())
    await asyncio.sleep(0)
    handed = asyncio.create_task(holder("handed"))
    last = asyncio.create_task(holder("last"))
    await asyncio.sleep(0)
    assert slots.waiting == 2
    go.set()
    await releasing
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(last, 5)
    assert got == ["last"] and (slots.running, slots.waiting) == (0, 0)


def test_a_memo_without_slots_has_no_limit() -> None:
    assert s.of({}).limit == 0
    mine = Slots(2)
    assert s.of({"slots": mine}) is mine
    with pytest.raises(ValueError):
        Slots(-1)


def test_a_burst_of_routes_under_a_cap_of_two_is_published_in_full(world: World) -> None:
    home(world, max_reconciles=2)
    names = [f"r{i}" for i in range(8)]
    for name in names:
        world.route(name, f"{name}.example.com")
    for name in reversed(names):  # the one created last first
        world.wait_ready(name)
    operator = world.operator
    assert operator is not None and operator.memo is not None
    assert 1 <= operator.memo.slots.peak <= 2
