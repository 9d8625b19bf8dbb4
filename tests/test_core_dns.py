"""DNS records: ownership, coalesced batches, bad-item isolation, replays (emulator, real SDK)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable
from typing import Any

import cloudflare
import pytest

from chutes.cloudflare_core import (
    CloudflareCore,
    Conflict,
    DesiredRecord,
    DnsRecord,
    DnsWriter,
    InvalidInput,
    RequestBudget,
    marker,
)
from chutes.cloudflare_core import dns as dns_module
from chutes.sandbox.cloudflare import CloudflareSandbox

OWNER = "test"


@pytest.fixture()
async def core(sandbox: CloudflareSandbox) -> AsyncIterator[CloudflareCore]:
    async with CloudflareCore(
        sandbox.token, sandbox.base_url, owner_id=OWNER, budget=RequestBudget(), backoff=0.01
    ) as instance:
        yield instance


@pytest.fixture()
def zone(sandbox: CloudflareSandbox) -> str:
    return sandbox.zone_id("example.com")


def cname(name: str, target: str = "t1.cfargotunnel.com") -> DesiredRecord:
    return DesiredRecord(name, "CNAME", target, source=f"Pod/ns/{name.split('.')[0]}")


def records(sandbox: CloudflareSandbox, zone: str, name: str | None = None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = sandbox.snapshot()["dns_records"][zone]
    return [r for r in found if name is None or r["name"] == name]


async def create_foreign(sandbox: CloudflareSandbox, zone: str, **fields: Any) -> None:
    other = cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url, max_retries=0)
    async with other:
        await other.dns.records.create(zone_id=zone, **fields)


def ops(sandbox: CloudflareSandbox, names: Iterable[str] = ("dns.list", "dns.batch")) -> dict[str, int]:
    return {name: sandbox.counters[name] for name in names}


async def test_ensure_twice_gives_one_record_and_steady_state_writes_nothing(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str
) -> None:
    first = await core.ensure_dns_record(zone, cname("app.example.com"))
    sandbox.reset_log()
    second = await core.ensure_dns_record(zone, cname("app.example.com"))

    assert second == first
    await core.check_dns_name_available(zone, "app.example.com", "Pod/ns/app")  # ours: available
    await core.check_dns_name_available(zone, "free.example.com", "Pod/ns/free")
    assert (first.type, first.proxied, first.ttl) == ("CNAME", True, 1)
    assert first.comment == marker(OWNER, "Pod/ns/app")
    stored = records(sandbox, zone, "app.example.com")
    assert len(stored) == 1 and stored[0]["tags"] == []
    assert sandbox.counters == {"dns.list": 3}
    assert {c.query.get("name.exact") for c in sandbox.calls(op="dns.list")} == {
        "app.example.com",
        "free.example.com",
    }


async def test_our_record_is_updated_when_different(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str
) -> None:
    created = await core.ensure_dns_record(zone, cname("app.example.com", "t1.cfargotunnel.com"))
    updated = await core.ensure_dns_record(zone, cname("app.example.com", "t2.cfargotunnel.com"))

    assert updated.id == created.id and updated.content == "t2.cfargotunnel.com"
    assert [r["content"] for r in records(sandbox, zone, "app.example.com")] == ["t2.cfargotunnel.com"]


async def test_replayed_batch_after_dropped_connection_is_adopted(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str
) -> None:
    sandbox.faults.drop_after_write(op="dns.batch", count=1)

    record = await core.ensure_dns_record(zone, cname("app.example.com"))

    assert [r["id"] for r in records(sandbox, zone, "app.example.com")] == [record.id]
    assert sandbox.counters["dns.batch"] == 2  # applied + replayed (refused: identical record)
    assert sandbox.counters["dns.list"] == 2  # listed again, found ours: adopted


@pytest.mark.parametrize(
    "foreign",
    [
        {"type": "A", "content": "203.0.113.10", "proxied": True, "ttl": 1},
        {"type": "CNAME", "content": "elsewhere.example.org", "proxied": False, "ttl": 300},
        {
            "type": "CNAME",
            "content": "elsewhere.example.org",
            "proxied": False,
            "ttl": 300,
            "comment": marker("other-cluster", "Pod/ns/app"),
        },
    ],
)
async def test_foreign_record_is_refused_and_left_unchanged(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str, foreign: dict[str, Any]
) -> None:
    await create_foreign(sandbox, zone, name="app.example.com", **foreign)
    before = records(sandbox, zone, "app.example.com")

    with pytest.raises(Conflict):
        await core.check_dns_name_available(zone, "app.example.com", "Pod/ns/app")
    with pytest.raises(Conflict):
        await core.ensure_dns_record(zone, cname("app.example.com"))
    with pytest.raises(Conflict):
        await core.delete_dns_record(zone, "app.example.com", foreign["type"], "Pod/ns/app")

    assert records(sandbox, zone, "app.example.com") == before
    assert sandbox.counters["dns.batch"] == 0


async def test_concurrent_ensures_coalesce_into_one_listing_and_one_batch(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str
) -> None:
    names = [f"host-{i}.example.com" for i in range(30)]
    created = await asyncio.gather(*(core.ensure_dns_record(zone, cname(name)) for name in names))

    assert [r.name for r in created] == names
    assert ops(sandbox) == {"dns.list": 1, "dns.batch": 1}
    assert "name.exact" not in sandbox.calls(op="dns.list")[0].query  # several names: whole zone
    assert {r.name for r in await core.list_owned_dns_records(zone)} == set(names)


async def test_foreign_record_created_between_listing_and_batch_fails_only_its_caller(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    listings = 0
    real_list = dns_module.list_records

    async def list_then_race(*args: Any, **kwargs: Any) -> list[DnsRecord]:
        nonlocal listings
        found = await real_list(*args, **kwargs)
        listings += 1
        if listings == 1:  # someone else creates an A record right after our first listing
            await create_foreign(sandbox, zone, name="b.example.com", type="A", content="203.0.113.7", ttl=300)
        return found

    monkeypatch.setattr(dns_module, "list_records", list_then_race)
    names = ["a.example.com", "b.example.com", "c.example.com", "d.example.com"]
    results = await asyncio.gather(
        *(core.ensure_dns_record(zone, cname(name)) for name in names), return_exceptions=True
    )

    assert isinstance(results[1], Conflict)
    assert [type(r) for i, r in enumerate(results) if i != 1] == [DnsRecord] * 3
    assert [(r["type"], r["content"]) for r in records(sandbox, zone, "b.example.com")] == [("A", "203.0.113.7")]
    assert {r["name"] for r in records(sandbox, zone) if r["type"] == "CNAME"} == set(names) - {"b.example.com"}
    assert ops(sandbox) == {"dns.list": 2, "dns.batch": 2}


async def test_invalid_record_is_isolated_by_bisection(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str
) -> None:
    good = [cname(f"ok-{i}.example.com") for i in range(7)]
    bad = DesiredRecord("bad.example.com", "A", "300.1.2.3", proxied=False, ttl=300, source="Pod/ns/bad")
    results = await asyncio.gather(
        *(core.ensure_dns_record(zone, d) for d in [*good[:3], bad, *good[3:]]), return_exceptions=True
    )

    assert isinstance(results[3], InvalidInput) and "9005" in str(results[3])
    assert all(isinstance(r, DnsRecord) for i, r in enumerate(results) if i != 3)
    assert {r["name"] for r in records(sandbox, zone)} == {d.name for d in good}


async def test_transient_batch_failure_reaches_every_caller_of_the_flush(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str
) -> None:
    sandbox.faults.fail(op="dns.batch", status=503, count=3)
    results = await asyncio.gather(
        *(core.ensure_dns_record(zone, cname(f"h{i}.example.com")) for i in range(3)), return_exceptions=True
    )
    assert [type(r).__name__ for r in results] == ["TransientError"] * 3
    assert records(sandbox, zone) == []


async def test_delete_ours_absent_and_type_swap(core: CloudflareCore, sandbox: CloudflareSandbox, zone: str) -> None:
    await core.ensure_dns_record(
        zone, DesiredRecord("app.example.com", "A", "203.0.113.5", proxied=True, source="Pod/ns/app")
    )
    swapped = await core.ensure_dns_record(zone, cname("app.example.com"))  # our A → our CNAME in one batch
    assert [r["type"] for r in records(sandbox, zone, "app.example.com")] == ["CNAME"]

    await core.delete_dns_record(zone, "app.example.com", "CNAME", "Pod/ns/app")
    sandbox.reset_log()
    await core.delete_dns_record(zone, "app.example.com", "CNAME", "Pod/ns/app")  # absent: no-op

    assert records(sandbox, zone) == [] and swapped.type == "CNAME"
    assert sandbox.counters == {"dns.list": 1}


@pytest.mark.parametrize(("theirs", "ours"), [(("AAAA", "2001:db8::25"), ("A", "203.0.113.66")),
                                             (("A", "203.0.113.66"), ("AAAA", "2001:db8::25"))])
async def test_an_address_record_not_ours_blocks_the_other_address_type(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str, theirs: tuple[str, str], ours: tuple[str, str]
) -> None:
    """A hand-made IPv6-only (or IPv4-only) name gets no address record of ours of the other type beside it."""
    await create_foreign(sandbox, zone, name="mail.example.com", type=theirs[0], content=theirs[1], ttl=300)
    before = records(sandbox, zone, "mail.example.com")
    wanted = DesiredRecord("mail.example.com", ours[0], ours[1], proxied=False, ttl=300, source="Pod/ns/mail")

    with pytest.raises(Conflict, match=f"a {theirs[0]} record not owned by {OWNER}"):
        await core.check_dns_name_available(zone, "mail.example.com", "Pod/ns/mail", ours[0])
    with pytest.raises(Conflict, match=f"a {theirs[0]} record not owned by {OWNER}"):
        await core.check_dns_name_available(zone, "mail.example.com", "Pod/ns/mail", ours[0], adopt=True)
    with pytest.raises(Conflict):
        await core.ensure_dns_record(zone, wanted)
    with pytest.raises(Conflict):
        await core.ensure_dns_record(zone, dataclasses.replace(wanted, adopt=True))  # only its own type is adopted
    sync = await core.sync_dns_records(zone, [wanted], lambda record: False)

    assert isinstance(sync.failed.get("mail.example.com"), Conflict) and not sync.written
    assert records(sandbox, zone, "mail.example.com") == before
    assert sandbox.counters["dns.batch"] == 0


async def test_an_address_record_held_by_another_source_blocks_the_other_type_naming_its_holder(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str
) -> None:
    await core.ensure_dns_record(zone, DesiredRecord("mail.example.com", "AAAA", "2001:db8::25", proxied=False,
                                                     ttl=300, source="Pod/ns/first"))
    before = records(sandbox, zone, "mail.example.com")
    wanted = DesiredRecord("mail.example.com", "A", "203.0.113.66", proxied=False, ttl=300, source="Pod/ns/second")

    with pytest.raises(Conflict, match="held by Pod/ns/first") as checked:
        await core.check_dns_name_available(zone, "mail.example.com", "Pod/ns/second", "A")
    with pytest.raises(Conflict, match="held by Pod/ns/first") as ensured:
        await core.ensure_dns_record(zone, wanted)

    assert checked.value.holder == ensured.value.holder == "Pod/ns/first"
    assert records(sandbox, zone, "mail.example.com") == before


@pytest.mark.parametrize(("first", "then"), [(("A", "203.0.113.5"), ("AAAA", "2001:db8::5")),
                                             (("AAAA", "2001:db8::5"), ("A", "203.0.113.5"))])
async def test_our_own_address_type_swap_replaces_the_other_type_in_one_batch(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str, first: tuple[str, str], then: tuple[str, str]
) -> None:
    def address(kind: tuple[str, str]) -> DesiredRecord:
        return DesiredRecord("app.example.com", kind[0], kind[1], proxied=False, ttl=300, source="Pod/ns/app")

    old = await core.ensure_dns_record(zone, address(first))
    await core.check_dns_name_available(zone, "app.example.com", "Pod/ns/app", then[0])  # ours: available
    sandbox.reset_log()
    new = await core.ensure_dns_record(zone, address(then))

    assert [(r["type"], r["content"]) for r in records(sandbox, zone, "app.example.com")] == [then]
    assert ops(sandbox) == {"dns.list": 1, "dns.batch": 1}
    [batch] = sandbox.calls(op="dns.batch")
    assert batch.body["deletes"] == [{"id": old.id}] and [p["type"] for p in batch.body["posts"]] == [then[0]]
    assert new.type == then[0]


async def test_batches_respect_the_batch_limit(core: CloudflareCore, sandbox: CloudflareSandbox, zone: str) -> None:
    async def three() -> int:
        return 3

    writer = DnsWriter(core.client, zone, three)
    await asyncio.gather(*(writer.ensure_record(cname(f"n{i}.example.com"), OWNER) for i in range(7)))
    assert ops(sandbox) == {"dns.list": 1, "dns.batch": 3}
    assert max(len(c.body["posts"]) for c in sandbox.calls(op="dns.batch")) == 3


async def test_concurrent_name_checks_share_one_listing_and_refuse_only_the_held_name(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str
) -> None:
    await create_foreign(sandbox, zone, name="taken.example.com", type="A", content="192.0.2.1", ttl=1)
    sandbox.reset_log()
    names = ["taken.example.com", *(f"free-{i}.example.com" for i in range(20))]
    results = await asyncio.gather(*(core.check_dns_name_available(zone, name, f"Pod/ns/{name}") for name in names),
                                   return_exceptions=True)

    assert isinstance(results[0], Conflict) and "not owned by test" in results[0].message
    assert results[1:] == [None] * 20
    assert ops(sandbox) == {"dns.list": 1, "dns.batch": 0}


async def test_concurrent_clears_delete_only_each_sources_records_in_one_listing_and_one_batch(
    core: CloudflareCore, sandbox: CloudflareSandbox, zone: str
) -> None:
    names = [f"host-{i}.example.com" for i in range(20)]
    await asyncio.gather(*(core.ensure_dns_record(zone, cname(name)) for name in names))
    hand_made = "hand.example.com"
    await create_foreign(sandbox, zone, name=hand_made, type="CNAME", content="elsewhere.example.net", ttl=1)
    sandbox.reset_log()

    asked = [(name, f"Pod/ns/{name.split('.')[0]}") for name in names[1:]]
    asked += [(hand_made, "Pod/ns/hand"), (names[0], "Pod/ns/someone-else")]
    cleared = await asyncio.gather(*(core.clear_dns_name(zone, name, source) for name, source in asked))

    assert [[(r.type, r.name) for r in c.deleted] for c in cleared[:-2]] == [[("CNAME", n)] for n in names[1:]]
    for theirs, name in zip(cleared[-2:], (hand_made, names[0]), strict=True):
        assert theirs.deleted == () and [r.name for r in theirs.others] == [name]
    assert ops(sandbox) == {"dns.list": 1, "dns.batch": 1}
    assert sorted(r["name"] for r in records(sandbox, zone)) == sorted([hand_made, names[0]])
