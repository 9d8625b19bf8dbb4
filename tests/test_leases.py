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

from chutes import kube
from chutes.leases import TunnelLeases, default_identity, expired, lease_name, micro_time
from chutes.sandbox.kubernetes import KubeSandbox
from harness.ledger import LEDGER, api, cluster, other_api

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
        await asyncio.sleep(seconds)  # the work done under the Lease (a duration of the scenario, not a wait)
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
            await asyncio.sleep(0.4)  # holds it that long (the scenario's duration)
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
            await asyncio.sleep(0.6)  # holds it beyond the waiter's 0.2 s (the scenario's duration)

    async def waiter() -> None:
        await entered.wait()
        async with locks.lock(ACCOUNT, "t-local-busy"):
            pytest.fail("entered a Lease this process holds")

    results = await asyncio.gather(owner(), waiter(), return_exceptions=True)
    assert results[0] is None and isinstance(results[1], TimeoutError)
    assert "held by this process" in str(results[1])


# --- expiry on the observer's clock --------------------------------------------------------------------------


async def test_a_lease_lapses_on_the_observers_clock_whatever_its_renew_time_says(api: client.ApiClient) -> None:
    seconds = [100.0]
    locks = TunnelLeases(api, LEDGER, OWNER, "replica-a", clock=lambda: seconds[0])
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    ahead = "2025-01-02T12:00:00.000000Z"  # a holder whose clock runs a day ahead
    lease = {"metadata": {"resourceVersion": "7"},
             "spec": {"holderIdentity": "fast-clock", "leaseDurationSeconds": 30, "renewTime": ahead}}

    assert not locks.lapsed("l", lease, now)  # first seen now
    seconds[0] = 129.9
    assert not locks.lapsed("l", lease, now)
    seconds[0] = 130.0
    assert locks.lapsed("l", lease, now)  # unchanged for its whole duration, as this process saw it

    renewed = {"metadata": {"resourceVersion": "8"}, "spec": {**lease["spec"], "renewTime": ahead}}
    assert not locks.lapsed("l", renewed, now)  # a new version: a live holder, seen again from now
    seconds[0] = 159.0
    assert not locks.lapsed("l", renewed, now)
    moved = {"metadata": {"resourceVersion": "8"}, "spec": {**renewed["spec"], "holderIdentity": "other"}}
    seconds[0] = 170.0
    assert not locks.lapsed("l", moved, now)  # another holder: seen again from now
    assert not locks.lapsed("other-lease", lease, now)  # each Lease its own observation

    seconds[0] = 0.0  # the wall clock still counts: renewTime + duration in the past lapses at once
    stale = {"metadata": {"resourceVersion": "9"},
             "spec": {"holderIdentity": "dead", "leaseDurationSeconds": 30, "renewTime": "2025-01-01T11:59:00.000000Z"}}
    assert locks.lapsed("stale", stale, now)


async def test_a_lease_never_renewed_while_watched_is_taken_over_after_its_duration(
        api: client.ApiClient, cluster: KubeSandbox) -> None:
    ahead = micro_time(datetime.now(UTC) + timedelta(hours=1))
    cluster.seed("coordination.k8s.io/v1/leases", {
        "metadata": {"name": lease_name(OWNER, ACCOUNT, "t-ahead"), "namespace": LEDGER},
        "spec": {"holderIdentity": "fast-clock", "leaseDurationSeconds": 1, "acquireTime": ahead, "renewTime": ahead}})
    started = time.monotonic()
    async with leases(api, "replica-a").lock(ACCOUNT, "t-ahead"):
        assert await holder(api, "t-ahead") == "replica-a"
    assert 0.9 < time.monotonic() - started < 3.0  # one duration on this process's clock, not an hour


# --- a Lease written with our identity is never left held ------------------------------------------------------


async def test_an_acquisition_cancelled_after_its_write_releases_the_lease(
        api: client.ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    real_create = kube.create_lease
    written = asyncio.Event()

    async def create_then_hang(*args: Any, **kwargs: Any) -> Any:
        await real_create(*args, **kwargs)  # the server wrote it; the response never comes back
        written.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(kube, "create_lease", create_then_hang)
    locks = leases(api, "replica-a")

    async def flush() -> None:
        async with locks.lock(ACCOUNT, "t-cut"):
            pytest.fail("entered without the Lease")

    task = asyncio.create_task(flush())
    await written.wait()
    assert await holder(api, "t-cut") == "replica-a"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await holder(api, "t-cut") is None


async def test_an_acquisition_failing_after_its_write_releases_the_lease(
        api: client.ApiClient, cluster: KubeSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    long_ago = micro_time(datetime.now(UTC) - timedelta(minutes=2))
    cluster.seed("coordination.k8s.io/v1/leases", {
        "metadata": {"name": lease_name(OWNER, ACCOUNT, "t-reset"), "namespace": LEDGER},
        "spec": {"holderIdentity": "crashed-replica", "leaseDurationSeconds": 30, "acquireTime": long_ago,
                 "renewTime": long_ago}})
    real_replace = kube.replace_lease
    failed: list[bool] = []

    async def replace_then_fail(*args: Any, **kwargs: Any) -> Any:
        result = await real_replace(*args, **kwargs)
        if not failed:  # the take-over lands, then the connection drops before the response
            failed.append(True)
            raise ConnectionResetError("connection reset by peer")
        return result

    monkeypatch.setattr(kube, "replace_lease", replace_then_fail)
    with pytest.raises(ConnectionResetError):
        async with leases(api, "replica-a").lock(ACCOUNT, "t-reset"):
            pytest.fail("entered without the Lease")
    assert failed and await holder(api, "t-reset") is None


async def test_a_release_runs_to_its_end_through_repeated_cancellations(
        api: client.ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator stopping at the end of a pass: the pass's task is cancelled while the release is in flight
    (twice here); the Lease is free once the task has ended, so a restarted process need not wait for it."""
    real_replace = kube.replace_lease
    releasing = asyncio.Event()

    async def slow_release(api_: Any, namespace: str, name: str, body: dict[str, Any]) -> Any:
        if "holderIdentity" not in body["spec"]:
            releasing.set()
            await asyncio.sleep(0.3)
        return await real_replace(api_, namespace, name, body)

    monkeypatch.setattr(kube, "replace_lease", slow_release)
    locks = leases(api, "replica-a")
    done = asyncio.Event()

    async def flush() -> None:
        async with locks.lock(ACCOUNT, "t-stopping"):
            done.set()

    task = asyncio.create_task(flush())
    await releasing.wait()
    assert done.is_set() and await holder(api, "t-stopping") == "replica-a"
    task.cancel()
    await asyncio.sleep(0.05)  # within the 0.3 s release: the second cancellation lands while it is in flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await holder(api, "t-stopping") is None
    await locks.aclose()  # nothing left under way


async def test_a_block_cancelled_while_held_releases_the_lease(api: client.ApiClient) -> None:
    locks = leases(api, "replica-a")
    entered = asyncio.Event()

    async def flush() -> None:
        async with locks.lock(ACCOUNT, "t-cancelled"):
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(flush())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await holder(api, "t-cancelled") is None
    async with leases(api, "replica-b", wait=0.5).lock(ACCOUNT, "t-cancelled"):  # free at once
        pass
