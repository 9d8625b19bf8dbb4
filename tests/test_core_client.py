"""Retries, rate limits, credentials, metrics and paging of the client (emulator, real SDK)."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from chutes.cloudflare_core import (
    CloudflareCore,
    CredentialsInvalid,
    RateLimited,
    RequestBudget,
    TransientError,
)
from chutes.frontdoors.problems import problem_from_cloudflare
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import intent


def requests_total(operation: str, status: str) -> float:
    value = REGISTRY.get_sample_value("chutes_cloudflare_requests_total", {"operation": operation, "status": status})
    return value or 0.0


async def test_429_with_long_retry_after_blocks_the_budget(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    sandbox.faults.rate_limit(count=1, retry_after=300)

    with pytest.raises(RateLimited) as limited:
        await core.list_tunnels(sandbox.account_id)
    assert limited.value.delay == 300.0 and limited.value.status == 429 and 971 in limited.value.codes
    assert sandbox.counters == {"tunnels.list": 1}  # not retried: the SDK's retries are off

    with pytest.raises(RateLimited) as blocked:
        await core.ensure_tunnel(sandbox.account_id, "op-x", intent())
    assert 299.0 < blocked.value.delay <= 300.0
    assert sandbox.counters == {"tunnels.list": 1}  # refused without a request
    assert core.budget.remaining == 0


async def test_429_with_short_retry_after_is_waited_out(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    sandbox.faults.rate_limit(count=1, retry_after=1)
    assert await core.list_tunnels(sandbox.account_id) == []
    assert [c.status for c in sandbox.calls(op="tunnels.list")] == [429, 200]


async def test_429_with_retry_after_0_waits_like_a_transient_error(sandbox: CloudflareSandbox) -> None:
    async with CloudflareCore(sandbox.token, sandbox.base_url, budget=RequestBudget(), backoff=0.2) as core:
        answered: list[tuple[int, float]] = []
        sandbox.on_response = lambda event: answered.append((event.status, time.monotonic()))
        sandbox.faults.rate_limit(count=1, retry_after=0)
        assert await core.list_tunnels(sandbox.account_id) == []
        [(limited_status, limited_at), (ok_status, ok_at)] = answered
        assert (limited_status, ok_status) == (429, 200)
        assert ok_at - limited_at >= 0.15  # the backoff's least pause (0.75 x 0.2 s), not none

        sandbox.reset_log()
        sandbox.faults.rate_limit(count=3, retry_after=0)
        with pytest.raises(RateLimited) as limited:
            await core.list_tunnels(sandbox.account_id)
    assert sandbox.counters == {"tunnels.list": 3}
    assert limited.value.delay > 0
    # The object is retried no sooner than after a transient error (not at once, in a loop).
    unavailable = problem_from_cloudflare(TransientError("HTTP 503", delay=0), "listing tunnels")
    assert problem_from_cloudflare(limited.value, "listing tunnels").delay == unavailable.delay == 10.0


async def test_5xx_is_retried_then_transient(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    before = requests_total("tunnels.list", "503")
    sandbox.faults.fail(op="tunnels.list", status=503, count=1)
    assert await core.list_tunnels(sandbox.account_id) == []
    assert [c.status for c in sandbox.calls(op="tunnels.list")] == [503, 200]

    sandbox.reset_log()
    sandbox.faults.fail(op="tunnels.list", status=502, count=3)
    with pytest.raises(TransientError) as failed:
        await core.list_tunnels(sandbox.account_id)
    assert not isinstance(failed.value, RateLimited) and failed.value.status == 502
    assert sandbox.counters == {"tunnels.list": 3}  # max_attempts
    assert requests_total("tunnels.list", "503") == before + 1
    assert requests_total("tunnels.list", "502") >= 3


async def test_invalid_token_is_credentials_invalid(sandbox: CloudflareSandbox) -> None:
    async with CloudflareCore("not-the-token", sandbox.base_url, budget=RequestBudget()) as bad:
        with pytest.raises(CredentialsInvalid) as refused:
            await bad.verify_access(sandbox.account_id, sandbox.zone_id("example.com"))
    assert "not-the-token" not in str(refused.value)
    assert refused.value.status in (401, 403)


async def test_verify_access(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    verified = await core.verify_access(sandbox.account_id, sandbox.zone_id("example.com"))
    assert verified.name == "example.com"
    with pytest.raises(CredentialsInvalid):
        await core.verify_access(sandbox.account_id, "0" * 32)
    zone = await core.get_zone(sandbox.zone_id("example.net"))
    assert (zone.name, zone.plan, zone.account_id) == ("example.net", "pro", sandbox.account_id)
    assert await core.find_zone("example.com") == await core.get_zone(sandbox.zone_id("example.com"))
    assert await core.find_zone("example.org") is None


async def test_bearer_token_is_sent(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    await core.list_tunnels(sandbox.account_id)  # the emulator answers 401 to anything but the token
    assert sandbox.calls(op="tunnels.list")[0].status == 200


async def test_listing_stops_at_the_first_page_that_is_not_full(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    for i in range(5):
        await core.ensure_tunnel(sandbox.account_id, f"op-{i}", intent())
    sandbox.reset_log()

    items = await core.client.list_all(
        "tunnels.list",
        core.client.sdk.zero_trust.tunnels.cloudflared.list,
        account_id=sandbox.account_id,
        is_deleted=False,
        per_page=2,
    )

    assert sorted(item["name"] for item in items) == [f"op-{i}" for i in range(5)]
    assert [c.query.get("page") for c in sandbox.calls(op="tunnels.list")] == [None, "2", "3"]
    sandbox.reset_log()
    assert len(await core.list_tunnels(sandbox.account_id, prefix="op-")) == 5
    assert sandbox.counters == {"tunnels.list": 1}


async def test_objects_reach_the_core_as_cloudflare_sent_them(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    """The SDK's models of records and apps (unions of a dozen types, each tried in turn) are never built: the
    objects of a listing, a read and a create are the JSON that was sent, to the letter. A model would have
    re-rendered this timestamp (nanoseconds, as some Cloudflare timestamps have) to microseconds."""
    client, zone_id = core.client, sandbox.zone_id("example.com")
    created = await client.call("dns.create", client.sdk.dns.records.create, zone_id=zone_id, name="raw.example.com",
                                type="CNAME", content="target.example.net", ttl=1, proxied=True)
    assert isinstance(created, dict) and created["name"] == "raw.example.com"
    with sandbox.state.lock:
        stored = sandbox.state.dns[zone_id][created["id"]]
        stored["created_on"] = "2026-12-07T10:11:12.123456789Z"
        stored["meta"] = {"origin_worker_id": "w1"}  # a field the SDK's model does not know
        sent = {key: value for key, value in stored.items()}
    [listed] = await client.list_all("dns.list", client.sdk.dns.records.list, zone_id=zone_id, per_page=100)
    read = await client.get("dns.get", client.sdk.dns.records.get, created["id"], zone_id=zone_id)
    for seen in (listed, read):
        assert seen is not None
        assert seen["created_on"] == "2026-12-07T10:11:12.123456789Z"
        assert seen["meta"] == {"origin_worker_id": "w1"}
        assert {key: seen[key] for key in ("id", "name", "type", "content", "proxied", "ttl")} == {
            key: sent[key] for key in ("id", "name", "type", "content", "proxied", "ttl")}
    app = await client.call("access.apps.create", client.sdk.zero_trust.access.applications.create,
                            account_id=sandbox.account_id, name="raw", domain="raw.example.com", type="self_hosted")
    assert isinstance(app, dict) and app["domain"] == "raw.example.com" and app["type"] == "self_hosted"
