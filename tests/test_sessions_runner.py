"""The session task: it survives failures, backs off, reports health, and posts each Warning once."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from chutes.cloudflare_core import RateLimited
from chutes.frontdoors.sessions import desired as d
from chutes.frontdoors.sessions.config import load_config
from chutes.frontdoors.sessions.health import HealthServer
from chutes.frontdoors.sessions.reconcile import PassResult, PodEvents
from chutes.frontdoors.sessions.runner import SessionLoop
from chutes.frontdoors.sessions.scheduler import Timing

CONFIG = load_config({
    "CF_API_TOKEN": "t", "CF_ZONE_ID": "0123456789abcdef0123456789abcdef",
    "CF_TUNNEL_ID": "6ff42ae2-765d-4adf-8112-31c55c1551ef", "DOMAIN": "example.org",
    "ROUTER_SERVICE_URL": "http://router:80",
})
FAST = Timing(quiet=0.01, max_delay=0.02, removal_quiet=0.01, removal_max_delay=0.02, settle=0.02, jitter=0.0,
              resync=60.0, backoff=(0.01, 0.02))


class FlakyPublisher:
    """Fails with the given errors first, then succeeds (writing nothing)."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def run_pass(self, alive: Any = set, gone: Any = set, explained: Any = set, *,
                       for_events: bool = False) -> PassResult:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return PassResult(wrote=False)


async def test_the_loop_survives_failures_and_honours_retry_after() -> None:
    publisher = FlakyPublisher(RuntimeError("kube went away"), RateLimited("slow down", delay=0.05))
    loop = SessionLoop(CONFIG, publisher, FAST)  # type: ignore[arg-type]
    loop.start()
    try:
        for _ in range(200):
            if loop.passes >= 1:
                break
            await asyncio.sleep(0.01)
        assert loop.healthy() and loop.passes >= 1 and loop.last_error is None
        assert publisher.calls >= 3
    finally:
        await loop.stop()
    assert not loop.healthy()


async def test_healthz_answers_ok_while_healthy_503_after_and_404_elsewhere() -> None:
    state = {"healthy": True}
    server = HealthServer(0, lambda: state["healthy"], host="127.0.0.1")
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert (response.status, await response.text()) == (200, "ok")
            async with http.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 404
            state["healthy"] = False
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 503
    finally:
        await server.stop()


async def test_each_warning_is_posted_once_and_a_failed_post_is_not_fatal() -> None:
    posted: list[tuple[str, str, str]] = []

    async def post(body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        posted.append((body["metadata"]["name"], reason, message))
        if body["metadata"]["name"] == "forbidden":
            raise PermissionError("events are forbidden")

    sink = PodEvents(post)
    pod, other = d.PodRef("ns", "p", "uid-1"), d.PodRef("ns", "forbidden", "uid-2")
    for _ in range(3):
        await sink.warn(pod, "InvalidSessionHash", "bad")
        await sink.warn(other, "InvalidSessionHash", "bad")
    await sink.warn(pod, "HostnameConflict", "taken")
    assert posted == [("p", "InvalidSessionHash", "bad"), ("forbidden", "InvalidSessionHash", "bad"),
                      ("p", "HostnameConflict", "taken")]
    sink.forget_except([])
    await sink.warn(pod, "HostnameConflict", "taken")  # a Pod that came back is told again
    assert len(posted) == 4


class GatedPublisher:
    """Each pass waits for the test to let it end, with the result it is given."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.results: asyncio.Queue[PassResult | Exception] = asyncio.Queue()

    async def run_pass(self, alive: Any = set, gone: Any = set, explained: Any = set, *,
                       for_events: bool = False) -> PassResult:
        self.started.set()
        result = await self.results.get()
        self.started.clear()
        if isinstance(result, Exception):
            raise result
        return result


async def test_the_loop_is_idle_only_between_passes_that_wrote_nothing() -> None:
    """`chutes plan` waits for SessionLoop.idle: not before a pass, nor during one, nor after a write (its
    verification is owed), nor after a failure, nor with a Pod event pending."""
    publisher = GatedPublisher()
    loop = SessionLoop(CONFIG, publisher, FAST)  # type: ignore[arg-type]
    seen: list[bool] = []

    async def one_pass(result: PassResult | Exception) -> None:
        await asyncio.wait_for(publisher.started.wait(), 5)
        seen.append(loop.idle())  # during the pass
        passes, error = loop.passes, loop.last_error
        await publisher.results.put(result)
        for _ in range(5000):  # until the loop has taken the pass's end into account
            if (loop.passes, loop.last_error) != (passes, error) and not loop.running:
                break
            await asyncio.sleep(0.001)
        seen.append(loop.idle())  # after it

    assert not loop.idle()  # no pass yet
    loop.start()
    try:
        await one_pass(PassResult(wrote=True))
        await one_pass(RuntimeError("kube went away"))
        await one_pass(PassResult(wrote=False))
        loop.pod_event("ADDED", {"metadata": {"namespace": CONFIG.watch_namespace, "name": "p", "uid": "u",
                                              "labels": {"app.kubernetes.io/managed-by": "opencode-router",
                                                         CONFIG.session_hash_label: "abc123"}}})
        seen.append(loop.idle())  # the event is pending
        # the pass for it starts (its event no longer pending); stopped there (a stop at the very moment the event
        # wakes the loop is another story)
        await asyncio.wait_for(publisher.started.wait(), 5)
        seen.append(loop.idle())
    finally:
        await loop.stop()
    assert seen == [False, False, False, False, False, True, False, False]
