"""Tunnel Leases (chutes.leases) against the Kubernetes emulator: two holders of one tunnel never overlap,
within a process or across processes, a lapsed Lease is taken over, a held one is renewed, release lets
the next one in, and a holder that never lets go makes the waiter give up."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes_asyncio import client

from chutes.leases import TunnelLeases, default_identity, expired, lease_name, micro_time
from chutes.sandbox.kubernetes import KubeSandbox
from ledger_harness import LEDGER, api, cluster, other_api

__all__ = ["api", "cluster", "other_api"]  # fixtures

OWNER = "test"
ACCOUNT = "acc1"


def leases(api: client.ApiClient, identity: str, **options: Any) -> TunnelLeases:
    return TunnelLeases(api, LEDGER, OWNER, identity, **({"poll": 0.02, "wait": 5.0} | options))


async def lease(api: client.ApiClient, tunnel: str) -> dict[str, Any]:
    found = await client.CoordinationV1Api(api).read_namespaced_lease(lease_name(OWNER, ACCOUNT, tunnel), LEDGER,
                                                                       _preload_content=False)
    return dict(await found.json())


async def holder(api: client.ApiClient, tunnel: str) -> str | None:
    return (await lease(api, tunnel))["spec"].get("holderIdentity")


async def hold(locks: TunnelLeases, tunnel: str, log: list[str], label: str, seconds: float) -> None:
    async with locks.lock(ACCOUNT, tunnel):
        log.append(f"{label} in")
        await asyncio.sleep(seconds)
        log.append(f"{label} out")


async def test_two_holders_of_one_tunnel_never_overlap(api: client.ApiClient, other_api: client.ApiClient) -> None:
    first, second = leases(api, "replica-a"), leases(other_api, "replica-b")
    log: list[str] = []
    await asyncio.gather(hold(first, "t-exclusive", log, "a", 0.3), hold(second, "t-exclusive", log, "b", 0.3),
                         hold(first, "t-exclusive", log, "a2", 0.1), hold(second, "t-exclusive", log, "b2", 0.1))
    assert len(log) == 8
    for index in range(0, 8, 2):  # every "in" is followed by its own "out"
        assert log[index].endswith(" in") and log[index + 1] == log[index].replace(" in", " out"), log
    assert await holder(api, "t-exclusive") is None  # released


async def test_the_lease_names_its_holder_while_held(api: client.ApiClient) -> None:
    locks = leases(api, "replica-a")
    async with locks.lock(ACCOUNT, "t-held"):
        held = await lease(api, "t-held")
        assert held["metadata"]["name"] == lease_name(OWNER, ACCOUNT, "t-held")
        assert held["metadata"]["name"].startswith("chutes-tunnel-")
        assert held["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "chutes-operator"
        assert held["metadata"]["annotations"]["chutes.troubleshat.com/tunnel"] == f"{ACCOUNT}/t-held"
        spec = held["spec"]
        assert spec["holderIdentity"] == "replica-a" and spec["leaseDurationSeconds"] == 30
        for stamp in (spec["acquireTime"], spec["renewTime"]):
            assert datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")  # MicroTime
    released = (await lease(api, "t-held"))["spec"]
    assert "holderIdentity" not in released and released["leaseDurationSeconds"] == 30


async def test_release_lets_the_waiting_holder_in(api: client.ApiClient, other_api: client.ApiClient) -> None:
    first, second = leases(api, "replica-a"), leases(other_api, "replica-b")
    entered = asyncio.Event()
    log: list[str] = []

    async def waiter() -> float:
        await entered.wait()
        started = time.monotonic()
        async with second.lock(ACCOUNT, "t-handover"):
            log.append("b in")
            assert await holder(other_api, "t-handover") == "replica-b"
        return time.monotonic() - started

    async def owner() -> None:
        async with first.lock(ACCOUNT, "t-handover"):
            entered.set()
            await asyncio.sleep(0.4)
            log.append("a out")

    _, waited = await asyncio.gather(owner(), waiter())
    assert log == ["a out", "b in"]
    assert 0.3 < waited < 2.0  # it waited for the release, not for the Lease to lapse (30 s)


async def test_an_expired_lease_is_taken_over(api: client.ApiClient, cluster: KubeSandbox) -> None:
    name = lease_name(OWNER, ACCOUNT, "t-expired")
    long_ago = micro_time(datetime.now(UTC) - timedelta(minutes=2))
    cluster.seed("coordination.k8s.io/v1/leases", {
        "metadata": {"name": name, "namespace": LEDGER},
        "spec": {"holderIdentity": "crashed-replica", "leaseDurationSeconds": 30, "acquireTime": long_ago,
                 "renewTime": long_ago, "leaseTransitions": 3}})
    started = time.monotonic()
    async with leases(api, "replica-a").lock(ACCOUNT, "t-expired"):
        spec = (await lease(api, "t-expired"))["spec"]
        assert spec["holderIdentity"] == "replica-a" and spec["leaseTransitions"] == 4
        assert spec["acquireTime"] != long_ago
    assert time.monotonic() - started < 2.0


async def test_a_live_foreign_holder_makes_the_waiter_give_up(api: client.ApiClient, cluster: KubeSandbox) -> None:
    now = micro_time(datetime.now(UTC))
    cluster.seed("coordination.k8s.io/v1/leases", {
        "metadata": {"name": lease_name(OWNER, ACCOUNT, "t-busy"), "namespace": LEDGER},
        "spec": {"holderIdentity": "other-replica", "leaseDurationSeconds": 30, "acquireTime": now,
                 "renewTime": now}})
    with pytest.raises(TimeoutError, match="held by other-replica"):
        async with leases(api, "replica-a", wait=0.3).lock(ACCOUNT, "t-busy"):
            pytest.fail("entered a Lease held by someone else")
    assert await holder(api, "t-busy") == "other-replica"


async def test_our_own_leftover_lease_is_taken_at_once(api: client.ApiClient, cluster: KubeSandbox) -> None:
    now = micro_time(datetime.now(UTC))
    cluster.seed("coordination.k8s.io/v1/leases", {
        "metadata": {"name": lease_name(OWNER, ACCOUNT, "t-mine"), "namespace": LEDGER},
        "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 30, "acquireTime": now, "renewTime": now}})
    async with leases(api, "replica-a", wait=0.5).lock(ACCOUNT, "t-mine"):  # e.g. a release that failed
        assert await holder(api, "t-mine") == "replica-a"
    assert await holder(api, "t-mine") is None


async def test_one_process_serialises_its_own_holders(api: client.ApiClient) -> None:
    locks = leases(api, "replica-a")  # one identity: the Lease alone could not tell them apart
    log: list[str] = []
    await asyncio.gather(*(hold(locks, "t-local", log, str(index), 0.05) for index in range(4)))
    for index in range(0, 8, 2):
        assert log[index + 1] == log[index].replace(" in", " out"), log


async def test_different_tunnels_do_not_wait_for_each_other(api: client.ApiClient,
                                                            other_api: client.ApiClient) -> None:
    first, second = leases(api, "replica-a"), leases(other_api, "replica-b")
    log: list[str] = []
    await asyncio.gather(hold(first, "t-one", log, "a", 0.3), hold(second, "t-two", log, "b", 0.3))
    assert sorted(log[:2]) == ["a in", "b in"]


async def test_a_slow_holder_keeps_its_lease_by_renewing_it(api: client.ApiClient,
                                                            other_api: client.ApiClient) -> None:
    slow = leases(api, "replica-a", duration=1)  # renewed every third of a second
    other = leases(other_api, "replica-b", wait=1.5)
    entered = asyncio.Event()

    async def owner() -> None:
        async with slow.lock(ACCOUNT, "t-slow"):
            entered.set()
            await asyncio.sleep(2.0)  # twice the duration

    async def taker() -> None:
        await entered.wait()
        async with other.lock(ACCOUNT, "t-slow"):
            pytest.fail("took a Lease that was being renewed")

    results = await asyncio.gather(owner(), taker(), return_exceptions=True)
    assert results[0] is None and isinstance(results[1], TimeoutError), results


async def test_a_lease_deleted_while_held_is_no_error(api: client.ApiClient) -> None:
    locks = leases(api, "replica-a")
    async with locks.lock(ACCOUNT, "t-vanishing"):
        await client.CoordinationV1Api(api).delete_namespaced_lease(lease_name(OWNER, ACCOUNT, "t-vanishing"),
                                                                    LEDGER)
    # Gone while held: nothing to release, no error; the next holder creates it again.
    async with locks.lock(ACCOUNT, "t-vanishing"):
        assert await holder(api, "t-vanishing") == "replica-a"


def test_expiry_and_identity() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    fresh = {"renewTime": "2025-01-01T11:59:50.000000Z", "leaseDurationSeconds": 30}
    assert not expired(fresh, now)
    assert expired({**fresh, "renewTime": "2025-01-01T11:59:29.000000Z"}, now)
    assert not expired({"acquireTime": "2025-01-01T11:59:50.000000Z", "leaseDurationSeconds": 30}, now)
    assert expired({"renewTime": "garbage", "leaseDurationSeconds": 30}, now)
    assert expired({"renewTime": "2025-01-01T11:59:50.000000Z"}, now)  # no duration
    first, second = default_identity({"POD_ID": "op-0"}), default_identity({"POD_ID": "op-0"})
    assert first.startswith("op-0-") and first != second
    assert default_identity({"HOSTNAME": "router-x"}).startswith("router-x-")
    assert lease_name("a", "acc", "t") != lease_name("b", "acc", "t")


async def test_a_waiter_of_this_process_gives_up_too(api: client.ApiClient) -> None:
    locks = leases(api, "replica-a", wait=0.2)
    entered = asyncio.Event()

    async def owner() -> None:
        async with locks.lock(ACCOUNT, "t-local-busy"):
            entered.set()
            await asyncio.sleep(0.6)

    async def waiter() -> None:
        await entered.wait()
        async with locks.lock(ACCOUNT, "t-local-busy"):
            pytest.fail("entered a Lease this process holds")

    results = await asyncio.gather(owner(), waiter(), return_exceptions=True)
    assert results[0] is None and isinstance(results[1], TimeoutError)
    assert "held by this process" in str(results[1])
