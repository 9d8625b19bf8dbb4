"""Ownership by owner id AND source (issue 11, items 2 and 9): markers keep ``Kind/namespace/`` intact, a
record of this installation marked for another source is that source's (a Conflict naming the holder,
never changed nor deleted), records written by earlier versions are still recognised, and stale records
can be handed back (`defer_deletes`) and deleted later by id (`delete_dns_records`)."""

from __future__ import annotations

import asyncio
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
    MarkerTooLong,
    is_ours,
    legacy_marker,
    marker,
    marker_fits,
    marks,
    parse,
)
from chutes.frontdoors.sessions import desired as sessions
from chutes.frontdoors.sessions.config import SessionConfig, load_config
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import OWNER, ZONE, core_with, records, writes

LONG_OWNER = "o" * 31
LONG_NAMESPACE = "opencode-router-tenant-a-sessions"  # 33 characters
BLOG = f"blog.{ZONE}"
TEAM_A = "ChuteGateway/team-a/blog"
TEAM_B = "ChuteGateway/team-b/blog"
EVIL = "HTTPRoute/evil/x"
TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"


# --- markers (pure) -----------------------------------------------------------------------------


@pytest.mark.parametrize("owner", ["a", "default", "o" * 31, "a" * 32])
@pytest.mark.parametrize("kind", ["Session", "HTTPRoute", "ChuteGateway"])
@pytest.mark.parametrize("namespace_length", [1, 10, 16, 20, 22, 30, 63])
@pytest.mark.parametrize("name_length", [1, 12, 63, 253])
def test_a_marker_keeps_kind_and_namespace_or_refuses(owner: str, kind: str, namespace_length: int,
                                                      name_length: int) -> None:
    namespace, name = "n" * namespace_length, "x" * name_length
    source = f"{kind}/{namespace}/{name}"
    exact = f"chutes-operator owner={owner} src={source}"
    if len(exact) > 100 and not marker_fits(owner, kind, namespace):
        with pytest.raises(MarkerTooLong):
            marker(owner, source)
        return
    comment = marker(owner, source)
    assert comment == exact if len(exact) <= 100 else "~" in comment
    found = parse(comment)
    assert len(comment) <= 100 and found is not None
    assert (found.owner_id, found.kind, found.namespace) == (owner, kind, namespace)
    assert found.source.startswith(f"{kind}/{namespace}/")
    other = f"{source[:-1]}y"  # as long: it fits exactly when `source` does
    assert comment == marker(owner, source)  # stable
    assert comment != marker(owner, other)  # distinct sources stay distinct
    assert marks(comment, owner, source) and not marks(comment, owner, other)
    assert comment == legacy_marker(owner, source)  # where the old marker kept the prefix, nothing changes


def test_a_long_owner_id_and_a_long_namespace_hash_only_the_name() -> None:
    source = f"Session/{'n' * 20}/{'abc123' * 8}"
    comment = marker(LONG_OWNER, source)
    found = parse(comment)

    assert found is not None and len(comment) <= 100
    assert found.source.startswith(f"Session/{'n' * 20}/") and "~" in found.source
    assert (found.kind, found.namespace) == ("Session", "n" * 20)
    assert marks(comment, LONG_OWNER, source)


def test_a_marker_that_cannot_fit_is_refused_naming_owner_kind_and_namespace() -> None:
    source = f"Session/{LONG_NAMESPACE}/abc"

    assert not marker_fits(LONG_OWNER, "Session", LONG_NAMESPACE)
    with pytest.raises(MarkerTooLong) as refused:
        marker(LONG_OWNER, source)
    assert isinstance(refused.value, InvalidInput)
    for part in (LONG_OWNER, "Session", LONG_NAMESPACE, "use a shorter owner id"):
        assert part in refused.value.message
    assert marker_fits("blue", "Session", LONG_NAMESPACE)  # a shorter owner id fits


def test_records_written_by_earlier_versions_are_recognised() -> None:
    source = f"Session/{LONG_NAMESPACE}/abc"
    legacy = legacy_marker(LONG_OWNER, source)
    found = parse(legacy)

    assert found is not None and len(legacy) <= 100
    assert not found.source.startswith(f"Session/{LONG_NAMESPACE}/")  # what blinded the session door
    assert (found.kind, found.namespace) == ("Session", "")  # the namespace was cut: unknown
    assert marks(legacy, LONG_OWNER, source)
    assert not marks(legacy, LONG_OWNER, f"Session/{LONG_NAMESPACE}/abd")
    assert not marks(legacy, "other", source)
    assert not marks(legacy, LONG_OWNER, f"Session/{LONG_NAMESPACE}x/abc")


@pytest.mark.parametrize("comment", [None, "", "hand-made", marker("blue", TEAM_A), marker(OWNER, TEAM_B),
                                     "chutes-operator owner=test"])
def test_marks_needs_the_owner_id_and_the_source(comment: str | None) -> None:
    assert not marks(comment, OWNER, TEAM_A)


def test_marks_accepts_the_source_as_read_from_a_marker() -> None:
    comment = marker(OWNER, f"HTTPRoute/ns/{'x' * 90}")
    found = parse(comment)
    assert found is not None and "~" in found.source
    assert marks(comment, OWNER, found.source)  # the orphan sweep asks with what the marker says
    assert marks(f"  {marker(OWNER, TEAM_A)} ", OWNER, TEAM_A)


def test_a_conflict_names_no_holder_unless_told() -> None:
    assert Conflict("taken").holder is None
    assert Conflict("taken", holder=TEAM_A).holder == TEAM_A


# --- DNS against the emulator: item 2 --------------------------------------------------------------


def cname(name: str, source: str, target: str = "t1.cfargotunnel.com", *, adopt: bool = False) -> DesiredRecord:
    return DesiredRecord(name, "CNAME", target, source=source, adopt=adopt)


def assert_held_by(conflict: Conflict, holder: str) -> None:
    assert conflict.holder == holder and f"held by {holder}" in conflict.message


async def test_a_record_held_by_another_source_of_ours_is_never_touched(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    zone = sandbox.zone_id(ZONE)
    held = await core.ensure_dns_record(zone, cname(BLOG, TEAM_A))
    before = records(sandbox, BLOG)
    sandbox.reset_log()

    with pytest.raises(Conflict) as checked:
        await core.check_dns_name_available(zone, BLOG, EVIL)
    with pytest.raises(Conflict) as checked_adopting:
        await core.check_dns_name_available(zone, BLOG, EVIL, adopt=True)
    with pytest.raises(Conflict) as ensured:
        await core.ensure_dns_record(zone, cname(BLOG, EVIL, "evil.cfargotunnel.com", adopt=True))
    with pytest.raises(Conflict) as deleted:
        await core.delete_dns_record(zone, BLOG, "CNAME", EVIL)
    with pytest.raises(Conflict) as swapped:  # an A record would need our CNAME deleted
        await core.ensure_dns_record(zone, DesiredRecord(BLOG, "A", "192.0.2.1", source=EVIL))
    synced = await core.sync_dns_records(zone, [cname(BLOG, EVIL, "evil.cfargotunnel.com")], lambda r: True)
    adopted = await core.adopt_dns_record(zone, held.id, BLOG, EVIL)

    for conflict in (checked.value, checked_adopting.value, ensured.value, deleted.value, swapped.value):
        assert_held_by(conflict, TEAM_A)
    failure = synced.failed[BLOG]
    assert isinstance(failure, Conflict)
    assert_held_by(failure, TEAM_A)
    assert synced.holders == {BLOG: TEAM_A} and BLOG not in synced.foreign and not synced.written
    assert adopted is None
    assert records(sandbox, BLOG) == before and writes(sandbox) == []

    await core.check_dns_name_available(zone, BLOG, TEAM_A)  # its holder: available
    await core.delete_dns_record(zone, BLOG, "CNAME", TEAM_A)  # its holder deletes it
    assert records(sandbox, BLOG) == []


async def test_a_retried_delete_never_removes_the_record_of_the_next_holder(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    zone = sandbox.zone_id(ZONE)
    await core.ensure_dns_record(zone, cname(BLOG, TEAM_A))
    await core.delete_dns_record(zone, BLOG, "CNAME", TEAM_A)
    await core.ensure_dns_record(zone, cname(BLOG, TEAM_B, "t2.cfargotunnel.com"))  # team-b publishes it next
    before = records(sandbox, BLOG)

    with pytest.raises(Conflict) as retried:  # team-a's finalizer retries its delete
        await core.delete_dns_record(zone, BLOG, "CNAME", TEAM_A)

    assert_held_by(retried.value, TEAM_B)
    assert records(sandbox, BLOG) == before


async def test_a_foreign_record_stays_a_conflict_without_holder(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    zone = sandbox.zone_id(ZONE)
    await cf.dns.records.create(zone_id=zone, name=BLOG, type="CNAME", content="x.example.org", ttl=1,
                                comment=marker("blue", TEAM_A))
    with pytest.raises(Conflict) as checked:
        await core.check_dns_name_available(zone, BLOG, TEAM_A)
    with pytest.raises(Conflict) as deleted:
        await core.delete_dns_record(zone, BLOG, "CNAME", TEAM_A)
    assert checked.value.holder is None and deleted.value.holder is None


async def test_a_marker_that_cannot_fit_publishes_nothing(sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id(ZONE)
    async with core_with(sandbox, owner_id=LONG_OWNER) as core:
        with pytest.raises(MarkerTooLong):
            await core.ensure_dns_record(zone, cname(BLOG, f"Session/{LONG_NAMESPACE}/abc"))
        synced = await core.sync_dns_records(zone, [cname(BLOG, f"Session/{LONG_NAMESPACE}/abc")], lambda r: True)
    assert isinstance(synced.failed[BLOG], MarkerTooLong)
    assert records(sandbox) == [] and writes(sandbox) == []


# --- the session door's records: item 9 ------------------------------------------------------------


def session_config(namespace: str, sandbox: CloudflareSandbox) -> SessionConfig:
    return load_config({
        "CF_API_TOKEN": "t", "CF_ZONE_ID": sandbox.zone_id(ZONE), "CF_TUNNEL_ID": TUNNEL_ID, "DOMAIN": ZONE,
        "ROUTE_SUFFIX": "-oc", "ROUTER_SERVICE_URL": "http://router:80", "WATCH_NAMESPACE": namespace,
    })


async def test_stale_session_records_of_a_long_owner_id_and_namespace_are_removed(
    sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    zone = sandbox.zone_id(ZONE)
    config = session_config(LONG_NAMESPACE, sandbox)
    neighbour = session_config(LONG_NAMESPACE + "-b", sandbox)  # cut to the same visible prefix
    for cfg, value in ((config, "stale1"), (neighbour, "theirs1")):  # written by an earlier version
        await cf.dns.records.create(zone_id=zone, name=sessions.hostname(cfg, value), type="CNAME", ttl=1,
                                    content="t.cfargotunnel.com", proxied=True,
                                    comment=legacy_marker(LONG_OWNER, sessions.source(cfg, value)))
    [stale] = records(sandbox, sessions.hostname(config, "stale1"))
    found = parse(stale["comment"])
    assert found is not None and not found.source.startswith(f"Session/{LONG_NAMESPACE}/")  # the old test failed

    async with core_with(sandbox, owner_id=LONG_OWNER) as core:
        result = await core.sync_dns_records(zone, [], lambda r: sessions.owns_record(config, r, LONG_OWNER))

    assert result.deleted == (sessions.hostname(config, "stale1"),)
    assert {r["name"] for r in records(sandbox)} == {sessions.hostname(neighbour, "theirs1")}


async def test_session_records_with_a_hashed_source_are_published_and_removed(sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id(ZONE)
    config = session_config("opencode-router", sandbox)
    value = "a1b2c3d4" * 7  # a long hash: the marker's source is hashed, its prefix kept
    session = sessions.Session(value, sessions.first_label(config, value), sessions.hostname(config, value))

    async with core_with(sandbox, owner_id=LONG_OWNER) as core:
        def owns(record: DnsRecord) -> bool:
            return sessions.owns_record(config, record, LONG_OWNER)

        published = await core.sync_dns_records(zone, [sessions.dns_record(config, session)], owns)
        record = published.records[session.hostname]
        mark = parse(record.comment)
        assert mark is not None and "~" in mark.source and mark.namespace == "opencode-router"
        assert owns(record) and not sessions.owns_record(session_config("other", sandbox), record, LONG_OWNER)

        removed = await core.sync_dns_records(zone, [], owns)
    assert removed.deleted == (session.hostname,) and records(sandbox) == []


# --- deferred deletes and deletes by id ------------------------------------------------------------


def is_session(record: DnsRecord) -> bool:
    found = parse(record.comment)
    return found is not None and found.kind == "Session"


async def test_defer_deletes_hands_stale_records_back_and_delete_dns_records_removes_them(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    zone = sandbox.zone_id(ZONE)
    names = [f"s{i}.{ZONE}" for i in range(4)]
    await core.sync_dns_records(zone, [cname(name, f"Session/ns/s{i}") for i, name in enumerate(names)], is_session)
    await core.ensure_dns_record(zone, cname(BLOG, TEAM_A))
    sandbox.reset_log()

    result = await core.sync_dns_records(zone, [cname(names[0], "Session/ns/s0")], is_session, defer_deletes=True)

    assert [r.name for r in result.stale] == names[1:] and result.deleted == () and not result.written
    assert result.holders == {**{name: f"Session/ns/s{i}" for i, name in enumerate(names)}, BLOG: TEAM_A}
    assert len(records(sandbox)) == 5 and writes(sandbox) == []

    sandbox.reset_log()
    deleted = await core.delete_dns_records(zone, result.stale)

    assert deleted == tuple(names[1:])
    assert {r["name"] for r in records(sandbox)} == {names[0], BLOG}
    assert (sandbox.counters["dns.list"], sandbox.counters["dns.batch"]) == (0, 1)  # no listing, one batch
    assert [len(c.body["deletes"]) for c in sandbox.calls(op="dns.batch")] == [3]
    assert await core.delete_dns_records(zone, []) == ()


async def test_delete_dns_records_respects_the_batch_limit(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    zone = sandbox.zone_id(ZONE)
    made = await asyncio.gather(*(core.ensure_dns_record(zone, cname(f"n{i}.{ZONE}", f"Session/ns/n{i}"))
                                  for i in range(7)))
    sandbox.reset_log()

    async def three() -> int:
        return 3

    writer = DnsWriter(core.client, zone, three)
    try:
        deleted = await writer.delete_records(made, OWNER)
    finally:
        await writer.aclose()
    assert set(deleted) == {r.name for r in made} and records(sandbox) == []
    assert (sandbox.counters["dns.list"], sandbox.counters["dns.batch"]) == (0, 3)


async def test_delete_dns_records_skips_what_is_gone_or_changed_since_it_was_listed(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    zone = sandbox.zone_id(ZONE)
    made = await asyncio.gather(*(core.ensure_dns_record(zone, cname(f"n{i}.{ZONE}", f"Session/ns/n{i}"))
                                  for i in range(3)))
    await cf.dns.records.delete(made[0].id, zone_id=zone)  # gone since the listing
    await cf.dns.records.edit(made[1].id, zone_id=zone, name=made[1].name, type="CNAME",  # taken over by hand
                              content="elsewhere.example.org", ttl=1, comment="hand-made")
    sandbox.reset_log()

    deleted = await core.delete_dns_records(zone, made)

    assert deleted == (made[0].name, made[2].name)
    assert [(r["name"], r["comment"]) for r in records(sandbox)] == [(made[1].name, "hand-made")]
    assert sandbox.counters["dns.batch"] == 2  # refused (a record was gone), then the rest after a listing


async def test_delete_dns_records_refuses_a_record_that_is_not_ours(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    zone = sandbox.zone_id(ZONE)
    ours = await core.ensure_dns_record(zone, cname(f"ours.{ZONE}", "Session/ns/ours"))
    await cf.dns.records.create(zone_id=zone, name=BLOG, type="CNAME", content="x.example.org", ttl=1,
                                comment=marker("blue", TEAM_A))
    [theirs] = [r for r in await core.list_dns_records(zone) if r.name == BLOG]

    with pytest.raises(Conflict):
        await core.delete_dns_records(zone, [ours, theirs])

    assert [r["name"] for r in records(sandbox)] == [BLOG]  # ours went, theirs stayed


@pytest.mark.parametrize(("policy", "dry_run"), [("sync", True), ("upsert-only", False)])
async def test_delete_dns_records_under_dry_run_or_upsert_only_deletes_nothing(
    core: CloudflareCore, sandbox: CloudflareSandbox, policy: str, dry_run: bool
) -> None:
    zone = sandbox.zone_id(ZONE)
    made = [await core.ensure_dns_record(zone, cname(f"n{i}.{ZONE}", f"Session/ns/n{i}")) for i in range(2)]
    before: list[dict[str, Any]] = records(sandbox)
    sandbox.reset_log()

    async with core_with(sandbox, policy=policy, dry_run=dry_run) as gated:
        deleted = await gated.delete_dns_records(zone, made)
        synced = await gated.sync_dns_records(zone, [], is_session, defer_deletes=True)

    assert deleted == tuple(r.name for r in made)  # the caller sees success, as for every skipped change
    assert [r.name for r in synced.stale] == [r.name for r in made]
    assert records(sandbox) == before and writes(sandbox) == []
    assert all(is_ours(r.comment, OWNER) for r in made)
