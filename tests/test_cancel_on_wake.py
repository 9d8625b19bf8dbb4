"""A stop that lands just as a sleeping loop is woken still stops it. On Python 3.11 ``asyncio.wait_for`` returns
the inner result and swallows the cancellation when both arrive in one turn of the event loop (fixed in 3.12): a
loop sleeping in it ran on after its ``stop()``, which then waited forever (the operator's shutdown, ``chutes plan``).
Each loop that sleeps until woken or due is cancelled in the very turn a wake-up fires, and must end."""

from __future__ import annotations

import asyncio

from chutes.frontdoors.hosts.workqueue import WorkQueue
from chutes.frontdoors.sessions.runner import SessionLoop
from harness import sessions
from test_sessions_runner import CONFIG, FAST, FlakyPublisher

POD = sessions.pod("p", "a1b2c3d4e5f6")
POD["metadata"] |= {"namespace": CONFIG.watch_namespace, "uid": "u1"}


async def ended(task: asyncio.Task[object]) -> bool:
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:
        task.cancel()  # the test's own clean-up: a second cancel does end it
    return bool(done)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_router_hosts_work_queue_stops_when_cancelled_as_a_key_is_wanted() -> None:
    async def work(key: str) -> float | None:
        return None

    queue: WorkQueue[str] = WorkQueue(work)
    queue.want("later", delay=3600)
    task = asyncio.create_task(queue.run())
    await settle()  # asleep until "later" is due
    queue.want("sooner", delay=1800)  # wakes it...
    task.cancel()  # ...in the same turn as the stop
    assert await ended(task)


async def test_the_session_loop_stops_when_cancelled_as_a_pod_event_wakes_it() -> None:
    publisher = FlakyPublisher()
    loop = SessionLoop(CONFIG, publisher, FAST)  # type: ignore[arg-type]
    loop.start()
    for _ in range(200):
        if loop.passes >= 1:
            break
        await asyncio.sleep(0.01)
    assert loop.passes >= 1
    await settle()  # asleep until the resync, a minute away
    task = loop._background._task
    assert task is not None
    loop.pod_event("ADDED", POD)  # wakes it...
    assert loop.scheduler.pending
    task.cancel()  # ...in the same turn as the stop
    assert await ended(task)
