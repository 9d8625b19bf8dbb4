"""Level-based sync through the core: `SyncRules` (tunnel configuration) and `sync_dns_records`."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Mapping
from typing import Any

import cloudflare
import pytest

from chutes.cloudflare_core import (
    CloudflareCore,
    Conflict,
    DesiredRecord,
    DnsRecord,
    IngressRule,
    RequestBudget,
    RuleSync,
    SetRule,
    SyncRules,
    TransientError,
    merge_ingress,
)
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import intent, rules_at

OWNER = "test"
SERVICE = "http://router:80"
FOREIGN = {"hostname": "foreign.example.com", "service": "http://foreign:80"}
CATCH_ALL = {"service": "http_status:503"}


def mine(rule: Mapping[str, Any]) -> bool:
    return str(rule.get("hostname", "")).endswith("-s.example.com") and rule.get("service") == SERVICE


def session_rule(name: str) -> IngressRule:
    return IngressRule(f"{name}-s.example.com", SERVICE)


# --- SyncRules (pure) -------------------------------------------------------------------------


def test_sync_rules_removes_owned_stale_rules_adds_wanted_and_keeps_foreign_and_catch_all() -> None:
    current = {
        "ingress": [
            {"hostname": "old-s.example.com", "service": SERVICE},
            copy.deepcopy(FOREIGN),
            {"hostname": "keep-s.example.com", "service": SERVICE},
            {"hostname": "other-s.example.com", "service": "http://elsewhere:80"},  # not ours: other service
            copy.deepcopy(CATCH_ALL),
        ],
        "originRequest": {"connectTimeout": 10},
    }
    merged = merge_ingress(current, [SyncRules((session_rule("keep"), session_rule("new")), mine)])

    assert merged["ingress"] == [
        FOREIGN,
        {"hostname": "keep-s.example.com", "service": SERVICE},
        {"hostname": "other-s.example.com", "service": "http://elsewhere:80"},
        {"hostname": "new-s.example.com", "service": SERVICE},
        CATCH_ALL,
    ]
    assert merged["originRequest"] == {"connectTimeout": 10}


def test_sync_rules_in_steady_state_returns_the_same_document() -> None:
    current = {"ingress": [{"hostname": "a-s.example.com", "service": SERVICE}, copy.deepcopy(CATCH_ALL)]}
    assert merge_ingress(current, [SyncRules((session_rule("a"),), mine)]) == current


def test_sync_rules_with_nothing_wanted_removes_every_owned_rule_and_never_the_catch_all() -> None:
    current = {"ingress": [{"hostname": "a-s.example.com", "service": SERVICE}, copy.deepcopy(FOREIGN),
                           copy.deepcopy(CATCH_ALL)]}
    assert merge_ingress(current, [SyncRules((), lambda rule: True)])["ingress"] == [CATCH_ALL]
    assert merge_ingress(current, [SyncRules((), mine)])["ingress"] == [FOREIGN, CATCH_ALL]


def test_sync_rules_composes_with_other_edits_in_order() -> None:
    merged = merge_ingress(None, [SetRule(session_rule("a"), mine), SyncRules((session_rule("b"),), mine)])
    assert [rule.get("hostname") for rule in merged["ingress"]] == ["b-s.example.com", None]


# --- against the emulator ---------------------------------------------------------------------


@pytest.fixture()
async def core(sandbox: CloudflareSandbox) -> AsyncIterator[CloudflareCore]:
    async with CloudflareCore(
        sandbox.token, sandbox.base_url, owner_id=OWNER, budget=RequestBudget(), backoff=0.01
    ) as instance:
        yield instance


def cname(name: str, source: str = "Session/ns/x") -> DesiredRecord:
    return DesiredRecord(name, "CNAME", "t1.cfargotunnel.com", source=f"{source}{name.split('.')[0]}")


def names(sandbox: CloudflareSandbox, zone: str) -> set[str]:
    return {record["name"] for record in sandbox.snapshot()["dns_records"][zone]}


def is_session(record: DnsRecord) -> bool:
    return "src=Session/" in (record.comment or "")


async def test_sync_rules_coalesces_with_concurrent_edits_into_one_get_and_one_put(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    tunnel = await core.ensure_tunnel(sandbox.account_id, "shared", intent())
    await core.set_ingress_rule(sandbox.account_id, tunnel.id, session_rule("stale"), mine)
    sandbox.reset_log()

    synced, _ = await asyncio.gather(
        core.sync_ingress_rules(sandbox.account_id, tunnel.id, [session_rule("a"), session_rule("b")], mine),
        core.set_ingress_rule(sandbox.account_id, tunnel.id, IngressRule("web.example.com", "http://web:80"),
                              rules_at("web.example.com")),
    )
    assert synced == RuleSync(written=True, refused=frozenset())

    assert (sandbox.counters["tunnels.config.get"], sandbox.counters["tunnels.config.put"]) == (1, 1)
    again = await core.sync_ingress_rules(sandbox.account_id, tunnel.id, [session_rule("a"), session_rule("b")], mine)
    assert again == RuleSync(written=False) and sandbox.counters["tunnels.config.put"] == 1
    config = await core.get_tunnel_config(sandbox.account_id, tunnel.id)
    assert config is not None
    assert [rule.get("hostname") for rule in config["ingress"]] == [
        "a-s.example.com", "b-s.example.com", "web.example.com", None
    ]


async def test_sync_dns_creates_deletes_only_claimed_records_and_reports_foreign_names(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    zone = sandbox.zone_id("example.com")
    await core.ensure_dns_record(zone, cname("stale.example.com", "Session/ns/"))
    await core.ensure_dns_record(zone, cname("gateway.example.com", "ChuteGateway/ns/"))  # ours, not claimed
    other = cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0)
    async with other:
        await other.dns.records.create(zone_id=zone, name="taken.example.com", type="A", content="192.0.2.1", ttl=1)
    sandbox.reset_log()

    result = await core.sync_dns_records(
        zone, [cname("a.example.com"), cname("b.example.com"), cname("taken.example.com")], is_session
    )

    assert set(result.records) == {"a.example.com", "b.example.com"}
    assert isinstance(result.failed["taken.example.com"], Conflict)
    assert result.deleted == ("stale.example.com",)
    assert result.foreign == frozenset({"taken.example.com"}) and result.written
    assert names(sandbox, zone) == {"a.example.com", "b.example.com", "gateway.example.com", "taken.example.com"}
    assert (sandbox.counters["dns.list"], sandbox.counters["dns.batch"]) == (1, 1)

    sandbox.reset_log()
    again = await core.sync_dns_records(zone, [cname("a.example.com"), cname("b.example.com")], is_session)
    assert set(again.records) == {"a.example.com", "b.example.com"} and not again.failed and not again.deleted
    assert not again.written
    assert (sandbox.counters["dns.list"], sandbox.counters["dns.batch"]) == (1, 0)  # steady state: no write


async def test_sync_dns_of_many_records_costs_one_listing_and_one_batch_in_a_paid_zone(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    zone = sandbox.zone_id("example.net")
    desired = [cname(f"s{i}.example.net") for i in range(300)]
    result = await core.sync_dns_records(zone, desired, is_session)
    assert len(result.records) == 300
    assert (sandbox.counters["dns.list"], sandbox.counters["dns.batch"]) == (1, 1)

    sandbox.reset_log()
    gone = await core.sync_dns_records(zone, [], is_session)
    assert len(gone.deleted) == 300 and names(sandbox, zone) == set()
    assert (sandbox.counters["dns.list"], sandbox.counters["dns.batch"]) == (1, 1)


async def test_sync_dns_waits_for_queued_single_requests_and_they_for_it(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    zone = sandbox.zone_id("example.com")
    ensured, synced, deleted = await asyncio.gather(
        core.ensure_dns_record(zone, cname("one.example.com", "ChuteGateway/ns/")),
        core.sync_dns_records(zone, [cname("two.example.com")], is_session),
        core.delete_dns_record(zone, "one.example.com", "CNAME", "ChuteGateway/ns/one"),
    )
    assert ensured.name == "one.example.com" and set(synced.records) == {"two.example.com"} and deleted is None
    assert names(sandbox, zone) == {"two.example.com"}


async def test_sync_dns_transient_failure_raises_for_the_whole_call(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    zone = sandbox.zone_id("example.com")
    sandbox.faults.fail(op="dns.batch", status=503, count=3)
    with pytest.raises(TransientError):
        await core.sync_dns_records(zone, [cname("a.example.com")], is_session)
    sandbox.faults.clear()
    result = await core.sync_dns_records(zone, [cname("a.example.com")], is_session)
    assert set(result.records) == {"a.example.com"}
