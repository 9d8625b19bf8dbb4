"""Reads the core saves, and why none of them weakens a decision (issue 17; emulator, real SDK).

Drift repairs read a zone's records and a tunnel's configuration once per pass, not once per flush: a repair
flush that finds everything in place in the writer's last listing (younger than half the resync interval, no
write of ours since) answers from it; anything to write or refuse is decided on a fresh read, so a stale
listing can postpone a repair, never cause a wrong write. A new CNAME whose name a listing just found empty
is created without listing again (Cloudflare refuses a CNAME beside any record). Concurrent lookups of one
zone share one request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import cloudflare
import pytest

from chutes.cloudflare_core import (
    CloudflareCore,
    Conflict,
    DesiredRecord,
    IngressRule,
    RequestBudget,
    drift,
    marker,
)
from chutes.cloudflare_core.zones import MISS_SECONDS, ZoneDirectory
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import intent, rules_at

OWNER = "test"
SOURCE = "HTTPRoute/apps/web"


@pytest.fixture()
async def core(sandbox: CloudflareSandbox) -> AsyncIterator[CloudflareCore]:
    async with CloudflareCore(sandbox.token, sandbox.base_url, owner_id=OWNER, budget=RequestBudget(),
                              backoff=0.01, resync_interval=60.0) as instance:
        yield instance


def cname(name: str, target: str = "t1.cfargotunnel.com") -> DesiredRecord:
    return DesiredRecord(name, "CNAME", target, source=SOURCE)


async def publish(core: CloudflareCore, zone: str, names: list[str]) -> None:
    await asyncio.gather(*(core.ensure_dns_record(zone, cname(name)) for name in names))


async def repair(core: CloudflareCore, zone: str, names: list[str], target: str = "t1.cfargotunnel.com") -> None:
    """A resync pass: each route re-ensures its record, one after another (one flush each)."""
    with drift.repairing("httproutes"):
        for name in names:
            await core.ensure_dns_record(zone, cname(name, target))


async def edit_behind_our_back(sandbox: CloudflareSandbox, zone: str, name: str, **fields: Any) -> None:
    """Another tool edits record `name` (plain SDK, its own client)."""
    other = cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0)
    async with other:
        found = [r async for r in other.dns.records.list(zone_id=zone, name={"exact": name})]
        await other.dns.records.edit(found[0].id, zone_id=zone, name=name, ttl=1, **fields)


def stored(sandbox: CloudflareSandbox, zone: str, name: str) -> dict[str, Any]:
    [record] = [r for r in sandbox.snapshot()["dns_records"][zone] if r["name"] == name]
    return dict(record)


NAMES = [f"r{i}.example.com" for i in range(6)]


async def test_a_repair_pass_lists_the_zone_once_for_every_route(core: CloudflareCore,
                                                                 sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id("example.com")
    await publish(core, zone, NAMES)
    sandbox.reset_log()
    await repair(core, zone, NAMES)
    await repair(core, zone, NAMES)  # the same pass again, within the snapshot's life: no call at all
    assert sandbox.counters == {"dns.list": 1}


async def test_repairs_outside_a_pass_and_prompted_ensures_list_afresh(core: CloudflareCore,
                                                                      sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id("example.com")
    await publish(core, zone, NAMES)
    sandbox.reset_log()
    for name in NAMES[:3]:  # prompted by a change: each flush reads what is there now
        await core.ensure_dns_record(zone, cname(name))
    assert sandbox.counters == {"dns.list": 3}

    stale = CloudflareCore(sandbox.token, sandbox.base_url, owner_id=OWNER, budget=RequestBudget(),
                           resync_interval=0.02)  # snapshots live 10 ms: every repair flush lists
    async with stale:
        await repair(stale, zone, NAMES[:1])
        await asyncio.sleep(0.05)
        sandbox.reset_log()
        await repair(stale, zone, NAMES[:2])
    assert sandbox.counters["dns.list"] >= 1


async def test_a_repair_that_must_write_reads_afresh_and_never_writes_over_what_it_cannot_prove_ours(
        core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id("example.com")
    await publish(core, zone, NAMES)
    await repair(core, zone, NAMES[:1])  # the pass's listing: every record ours, as published
    # Someone takes r1 over (another owner's marker, another target) after that listing.
    await edit_behind_our_back(sandbox, zone, NAMES[1], type="CNAME", content="elsewhere.example.net",
                               comment="somebody else's")
    taken = stored(sandbox, zone, NAMES[1])
    sandbox.reset_log()
    # A repair that wants r1 changed (the route's target moved) is not answered by the stale listing, whose
    # r1 would be ours to patch: it lists again, finds r1 foreign and refuses, leaving it byte-identical.
    with pytest.raises(Conflict):
        await repair(core, zone, NAMES[1:2], target="t2.cfargotunnel.com")
    assert sandbox.counters == {"dns.list": 1}
    assert stored(sandbox, zone, NAMES[1]) == taken


async def test_our_own_write_ends_the_snapshot(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id("example.com")
    await publish(core, zone, NAMES)
    await repair(core, zone, NAMES[:1])
    await core.delete_dns_record(zone, NAMES[0], "CNAME", SOURCE)  # a write: the listing is out of date
    sandbox.reset_log()
    await repair(core, zone, NAMES[1:])
    assert sandbox.counters == {"dns.list": 1}
    await repair(core, zone, NAMES[:1])  # gone since the listing: repaired (a write after a fresh listing)
    assert stored(sandbox, zone, NAMES[0])["comment"] == marker(OWNER, SOURCE)
    assert sandbox.counters == {"dns.list": 2, "dns.batch": 1}


async def test_a_record_changed_behind_our_back_is_repaired_by_the_next_pass(core: CloudflareCore,
                                                                           sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id("example.com")
    await publish(core, zone, NAMES[:2])
    await repair(core, zone, NAMES[:2])
    await edit_behind_our_back(sandbox, zone, NAMES[0], type="CNAME", proxied=False,
                               content="t1.cfargotunnel.com", comment=marker(OWNER, SOURCE))
    await repair(core, zone, NAMES[:1])  # within this pass's listing: not seen yet (the documented delay)
    assert stored(sandbox, zone, NAMES[0])["proxied"] is False
    core.forget_listings()  # the next pass (the listing older than half the interval: see the test above)
    await repair(core, zone, NAMES[:1])
    assert stored(sandbox, zone, NAMES[0])["proxied"] is True


# --- tunnel configuration -------------------------------------------------------------------------------------


def rule(hostname: str, service: str = "http://web.apps:80") -> IngressRule:
    return IngressRule(hostname=hostname, service=service)


async def test_a_repair_pass_reads_the_tunnel_configuration_once(core: CloudflareCore,
                                                                  sandbox: CloudflareSandbox) -> None:
    account = sandbox.account_id
    tunnel = await core.ensure_tunnel(account, "shared", intent())
    owns = rules_at(*NAMES)
    await asyncio.gather(*(core.set_ingress_rule(account, tunnel.id, rule(name), owns) for name in NAMES))
    sandbox.reset_log()
    with drift.repairing("httproutes"):
        for name in NAMES:
            await core.set_ingress_rule(account, tunnel.id, rule(name), owns)
    assert sandbox.counters == {"tunnels.config.get": 1}

    # A repair that must change a rule reads afresh and merges onto that read: a foreign rule added after
    # the pass's read survives, and our rule is written.
    other = cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0)
    async with other:
        current = await other.zero_trust.tunnels.cloudflared.configurations.get(tunnel.id, account_id=account)
        ingress = [dict(r) for r in (current.config.ingress if current.config else [])]  # type: ignore[union-attr]
        wire = [{k: v for k, v in r.items() if v is not None and k in ("hostname", "service", "path")}
                for r in ingress]
        wire.insert(0, {"hostname": "foreign.example.com", "service": "http://foreign:80"})
        await other.zero_trust.tunnels.cloudflared.configurations.update(tunnel.id, account_id=account,
                                                                         config={"ingress": wire})
    sandbox.reset_log()
    with drift.repairing("httproutes"):
        await core.set_ingress_rule(account, tunnel.id, rule(NAMES[0], "http://moved.apps:80"), owns)
    assert sandbox.counters == {"tunnels.config.get": 1, "tunnels.config.put": 1}
    ingress = sandbox.snapshot()["tunnel_configs"][tunnel.id]["config"]["ingress"]
    hostnames = {r.get("hostname"): r["service"] for r in ingress}
    assert hostnames["foreign.example.com"] == "http://foreign:80"
    assert hostnames[NAMES[0]] == "http://moved.apps:80"


async def test_a_refusal_is_never_decided_on_a_snapshot(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    account = sandbox.account_id
    tunnel = await core.ensure_tunnel(account, "shared", intent())
    await core.set_ingress_rule(account, tunnel.id, rule(NAMES[0]), rules_at(NAMES[0]))
    with drift.repairing("httproutes"):
        await core.set_ingress_rule(account, tunnel.id, rule(NAMES[0]), rules_at(NAMES[0]))
    sandbox.reset_log()
    with drift.repairing("httproutes"), pytest.raises(Conflict):  # the proof no longer covers the rule
        await core.set_ingress_rule(account, tunnel.id, rule(NAMES[0]), rules_at())
    assert sandbox.counters == {"tunnels.config.get": 1}


async def test_concurrent_lookups_of_one_zone_share_one_request(core: CloudflareCore,
                                                                sandbox: CloudflareSandbox) -> None:
    sandbox.reset_log()
    found = await asyncio.gather(*(core.find_zone("example.com") for _ in range(20)))
    assert {zone.id if zone else None for zone in found} == {sandbox.zone_id("example.com")}
    missing = await asyncio.gather(*(core.find_zone("nowhere.example.net") for _ in range(5)))
    assert missing == [None] * 5
    assert sandbox.counters == {"zones.list": 2}


async def test_a_name_found_to_be_no_zone_is_not_asked_again_for_a_while(sandbox: CloudflareSandbox) -> None:
    """Routes in a zone below its apex (``r1.routes.example.org`` in zone ``routes.example.org``) look the apex up
    first: a burst of them, one after another, asks Cloudflare once, not once per route (bench/scale.py); a zone
    made later is found once the miss is older than a minute."""
    now = [0.0]
    async with CloudflareCore(sandbox.token, sandbox.base_url, owner_id=OWNER, budget=RequestBudget()) as core:
        zones = ZoneDirectory(core.client, clock=lambda: now[0])
        sandbox.reset_log()
        for _ in range(5):
            assert await zones.find_zone("nowhere.example.net") is None
            now[0] += 10.0
        assert sandbox.counters == {"zones.list": 1}
        now[0] += MISS_SECONDS
        assert await zones.find_zone("nowhere.example.net") is None
        found = await zones.find_zone("example.com")
        assert found is not None and found.id == sandbox.zone_id("example.com")
        assert sandbox.counters == {"zones.list": 3}


async def test_a_new_cname_after_its_name_check_costs_no_second_listing(core: CloudflareCore,
                                                                      sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id("example.com")
    sandbox.reset_log()
    await core.check_dns_name_available(zone, NAMES[0], SOURCE)
    record = await core.ensure_dns_record(zone, cname(NAMES[0]))
    assert {op: n for op, n in sandbox.counters.items() if op.startswith("dns.")} == {"dns.list": 1, "dns.batch": 1}
    assert stored(sandbox, zone, NAMES[0])["id"] == record.id
    sandbox.reset_log()
    await core.ensure_dns_record(zone, cname(NAMES[0]))  # written since: listed again, nothing to do
    assert sandbox.counters == {"dns.list": 1}


async def test_a_record_appearing_between_the_name_check_and_the_create_is_found_and_left_alone(
        core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id("example.com")
    await core.check_dns_name_available(zone, NAMES[0], SOURCE)
    await core.check_dns_name_available(zone, NAMES[1], SOURCE)
    other = cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0)
    async with other:  # someone else takes both names meanwhile: a TXT record, an A record
        await other.dns.records.create(zone_id=zone, name=NAMES[0], type="TXT", content="hello", ttl=1)
        await other.dns.records.create(zone_id=zone, name=NAMES[1], type="A", content="192.0.2.1", ttl=1)
    before = sandbox.snapshot()["dns_records"][zone]
    sandbox.reset_log()
    results = await asyncio.gather(core.ensure_dns_record(zone, cname(NAMES[0])),
                                   core.ensure_dns_record(zone, cname(NAMES[1])), return_exceptions=True)
    assert all(isinstance(result, Conflict) for result in results), results
    assert sandbox.snapshot()["dns_records"][zone] == before  # nothing created, nothing changed
    assert sandbox.counters["dns.batch"] == 1 and sandbox.counters["dns.list"] == 1  # refused, then listed


async def test_an_address_record_is_never_created_without_a_listing_of_its_own(core: CloudflareCore,
                                                                               sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id("example.com")
    await core.check_dns_name_available(zone, NAMES[0], SOURCE, type="A")
    other = cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0)
    async with other:  # Cloudflare would accept a second A record beside this one: only a listing can tell
        await other.dns.records.create(zone_id=zone, name=NAMES[0], type="A", content="192.0.2.1", ttl=1)
    with pytest.raises(Conflict):
        await core.ensure_dns_record(zone, DesiredRecord(NAMES[0], "A", "192.0.2.7", source=SOURCE, proxied=False))
    assert [r["content"] for r in sandbox.snapshot()["dns_records"][zone] if r["name"] == NAMES[0]] == ["192.0.2.1"]


async def test_reusable_policies_by_name_come_from_one_listing_and_a_new_name_lists_again(
        core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    account = sandbox.account_id
    other = cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0)
    async with other:
        team = await other.zero_trust.access.policies.create(account_id=account, name="Team", decision="allow",
                                                             include=[{"everyone": {}}])
        sandbox.reset_log()
        answers = await asyncio.gather(*(core.reusable_policy_ids(account, ("Team",)) for _ in range(10)))
        assert answers == [((team.id,), ())] * 10
        assert await core.reusable_policy_ids(account, ("Team", "Ops")) == ((team.id,), ("Ops",))
        assert sandbox.counters == {"access.policies.list": 2}  # the unknown name listed again at once
        ops = await other.zero_trust.access.policies.create(account_id=account, name="Ops", decision="allow",
                                                            include=[{"everyone": {}}])
        assert await core.reusable_policy_ids(account, ("Ops", "Team")) == ((ops.id, team.id), ())
        assert sandbox.counters["access.policies.list"] == 3
