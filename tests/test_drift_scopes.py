"""Which reconciles count their writes as drift repairs (pure): a ChuteGateway generation published in full
before, an HTTPRoute whose inputs are published already (on the resync or a resume), a session pass the
scheduler ran for the resync or a verification, never one for Pod events."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chutes import conditions as c
from chutes.cloudflare_core import drift
from chutes.frontdoors import repairs
from chutes.frontdoors.sessions.scheduler import PassScheduler, Timing


def gateway(generation: int, dns: tuple[str, int] | None) -> dict[str, Any]:
    conditions = [] if dns is None else c.set_condition(None, c.DNS_READY, dns[0], c.RECONCILED, "", dns[1])  # type: ignore[arg-type]
    return {"metadata": {"name": "blog", "generation": generation}, "status": {"conditions": conditions}}


@pytest.mark.parametrize(("generation", "dns", "published"), [
    (1, ("True", 1), True),  # resume or resync of what was published
    (2, ("True", 1), False),  # a spec change not yet applied
    (1, ("False", 1), False),  # a first publish that stopped half-way
    (1, None, False),  # a new gateway
])
def test_a_gateway_repairs_only_a_generation_it_published_in_full(
        generation: int, dns: tuple[str, int] | None, published: bool) -> None:
    assert repairs.gateway_published(gateway(generation, dns)) is published


def test_a_gateway_without_status_is_not_published() -> None:
    assert not repairs.gateway_published({"metadata": {"name": "blog", "generation": 1}})


@pytest.mark.parametrize(("state", "published"), [
    ((True, "h1", "app.example.com"), True),
    ((True, "h0", "app.example.com"), False),  # annotations or templates changed
    ((True, "h1", "old.example.com"), False),  # the hostname changed
    ((False, "", ""), False),  # never published (or pending)
])
def test_a_route_repairs_only_inputs_it_published(state: tuple[bool, str, str], published: bool) -> None:
    assert repairs.route_published(*state, "h1", "app.example.com") is published


def test_the_scope_sets_the_front_door_for_the_core_and_an_unprompted_pass_reaches_its_tasks() -> None:
    assert drift.current() is None
    with repairs.scope("chutes", True):
        assert drift.current() == "chutes"
    with repairs.scope("chutes", False):
        assert drift.current() is None

    async def pass_() -> list[bool]:
        async def route() -> bool:
            return repairs.is_unprompted()

        with repairs.unprompted():
            inside = await asyncio.gather(route(), route())
        return [*inside, await route()]

    assert asyncio.run(pass_()) == [True, True, False]


# --- the session scheduler says why a pass runs ---------------------------------------------------------

TIMING = Timing(quiet=0.3, max_delay=1.5, removal_quiet=1.0, removal_max_delay=4.0, settle=1.0, jitter=0.0,
                resync=300.0, backoff=(1.0, 2.0))


def test_the_scheduler_names_the_cause_of_each_pass() -> None:
    scheduler = PassScheduler(TIMING, now=0.0)
    assert scheduler.cause() == "start"
    scheduler.started(0.0)
    scheduler.finished(1.0, wrote=True)
    assert (scheduler.due(), scheduler.cause()) == (2.0, "verify")
    scheduler.started(2.0)
    scheduler.finished(2.5, wrote=False)
    assert (scheduler.due(), scheduler.cause()) == (302.5, "resync")
    scheduler.changed(10.0, addition=True)  # a Pod event: the next pass is for it
    assert scheduler.cause() == "events"
    scheduler.started(scheduler.due())
    assert scheduler.cause() == "resync"
    scheduler.failed(11.0)
    assert scheduler.cause() == "retry"


@pytest.mark.parametrize(("cause", "repairing"), [
    ("resync", True), ("verify", True), ("events", False), ("start", False), ("retry", False),
])
def test_only_resync_and_verification_passes_are_repairs(cause: str, repairing: bool) -> None:
    assert repairs.session_pass_repairs(cause) is repairing
