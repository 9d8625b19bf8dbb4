"""Adoption on request: a DNS record or an Access app without any chutes-operator marker is taken over only
when asked; another owner's is never; without the flag (or under create-only) it stays a conflict."""

from __future__ import annotations

import logging
from typing import Any

import cloudflare
import pytest

from chutes.cloudflare_core import AccessAppSpec, CloudflareCore, Conflict, DesiredRecord, Recorded, access, marker
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import OWNER, ZONE, Site, core_with, intent, live, publish, records, writes

HOST = f"app.{ZONE}"
SOURCE = "HTTPRoute/ns/app"


def wanted(adopt: bool, type_: str = "CNAME", content: str = "t1.cfargotunnel.com") -> DesiredRecord:
    return DesiredRecord(HOST, type_, content, source=SOURCE, adopt=adopt)


async def foreign_record(cf: cloudflare.AsyncCloudflare, sandbox: CloudflareSandbox, comment: str | None,
                         type_: str = "CNAME", content: str = "old.example.net") -> dict[str, Any]:
    fields: dict[str, Any] = {"name": HOST, "type": type_, "content": content, "ttl": 1}
    if comment is not None:
        fields["comment"] = comment
    await cf.dns.records.create(zone_id=sandbox.zone_id(ZONE), **fields)
    sandbox.reset_log()
    return records(sandbox, HOST)[0]


async def foreign_app(cf: cloudflare.AsyncCloudflare, sandbox: CloudflareSandbox, name: str) -> None:
    await cf.zero_trust.access.applications.create(
        account_id=sandbox.account_id, type="self_hosted", domain=HOST, name=name, session_duration="1h"
    )


@pytest.mark.parametrize("comment", [None, "made by hand"])
async def test_dns_record_without_any_marker_is_adopted_only_when_asked(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare,
    caplog: pytest.LogCaptureFixture, comment: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="chutes.cloudflare_core")
    zone = sandbox.zone_id(ZONE)
    existing = await foreign_record(cf, sandbox, comment)

    with pytest.raises(Conflict):
        await core.check_dns_name_available(zone, HOST, SOURCE)
    with pytest.raises(Conflict):
        await core.ensure_dns_record(zone, wanted(adopt=False))
    assert records(sandbox, HOST) == [existing] and writes(sandbox) == []

    await core.check_dns_name_available(zone, HOST, SOURCE, adopt=True)
    adopted = await core.ensure_dns_record(zone, wanted(adopt=True))

    assert (adopted.id, adopted.content, adopted.comment) == (existing["id"], "t1.cfargotunnel.com",
                                                              marker(OWNER, SOURCE))
    assert [r["id"] for r in records(sandbox, HOST)] == [existing["id"]]
    assert f"DNS CNAME {HOST} (id {existing['id']}) has no chutes-operator marker: adopting it" in caplog.text
    await core.ensure_dns_record(zone, wanted(adopt=False))  # ours now, flag or not


@pytest.mark.parametrize("comment", [
    "chutes-operator owner=blue src=HTTPRoute/ns/app",  # another installation's
    "chutes-operator owner=blue",  # a damaged marker is still a marker
])
async def test_dns_record_with_a_marker_of_another_owner_is_never_adopted(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare, comment: str
) -> None:
    zone = sandbox.zone_id(ZONE)
    existing = await foreign_record(cf, sandbox, comment)

    with pytest.raises(Conflict):
        await core.check_dns_name_available(zone, HOST, SOURCE, adopt=True)
    with pytest.raises(Conflict):
        await core.ensure_dns_record(zone, wanted(adopt=True))
    sync = await core.sync_dns_records(zone, [wanted(adopt=True)], lambda record: True)

    assert isinstance(sync.failed[HOST], Conflict)
    assert records(sandbox, HOST) == [existing] and writes(sandbox) == []


async def test_dns_adoption_takes_over_the_same_type_only_and_never_under_create_only(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    zone = sandbox.zone_id(ZONE)
    existing = await foreign_record(cf, sandbox, None, type_="A", content="192.0.2.1")

    with pytest.raises(Conflict):  # a CNAME cannot take over an A record (that would be a delete)
        await core.ensure_dns_record(zone, wanted(adopt=True))
    async with core_with(sandbox, policy="create-only") as create_only:
        with pytest.raises(Conflict):
            await create_only.check_dns_name_available(zone, HOST, SOURCE, "A", adopt=True)
        with pytest.raises(Conflict):
            await create_only.ensure_dns_record(zone, wanted(adopt=True, type_="A", content="192.0.2.2"))
    assert records(sandbox, HOST) == [existing] and writes(sandbox) == []

    adopted = await core.ensure_dns_record(zone, wanted(adopt=True, type_="A", content="192.0.2.2"))
    assert (adopted.id, adopted.content) == (existing["id"], "192.0.2.2")


async def test_dns_adoption_in_dry_run_is_logged_and_not_written(
    sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chutes.cloudflare_core")
    existing = await foreign_record(cf, sandbox, "made by hand")
    async with core_with(sandbox, dry_run=True) as dry:
        assumed = await dry.ensure_dns_record(sandbox.zone_id(ZONE), wanted(adopt=True))

    assert (assumed.id, assumed.comment) == (existing["id"], marker(OWNER, SOURCE))
    assert records(sandbox, HOST) == [existing] and writes(sandbox) == []
    assert f"dry-run: would update DNS CNAME {HOST} → t1.cfargotunnel.com (adopting it)" in caplog.text


async def test_access_app_of_someone_else_is_adopted_only_when_asked(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chutes.cloudflare_core")
    account = sandbox.account_id
    await foreign_app(cf, sandbox, "hand-made")
    [before] = live(sandbox, "access_apps")

    with pytest.raises(Conflict):
        await core.ensure_access_app(account, AccessAppSpec("cfzt-app", HOST), intent())
    async with core_with(sandbox, policy="create-only") as create_only:
        with pytest.raises(Conflict):
            await create_only.ensure_access_app(account, AccessAppSpec("cfzt-app", HOST, adopt=True), intent())
    assert live(sandbox, "access_apps") == [before]

    app = await core.ensure_access_app(account, AccessAppSpec("cfzt-app", HOST, session_duration="8h", adopt=True),
                                       intent())

    assert (app.id, app.name, app.session_duration) == (before["id"], "cfzt-app", "8h")
    assert [(a["id"], a["name"]) for a in live(sandbox, "access_apps")] == [(before["id"], "cfzt-app")]
    assert f"Adopting Access app 'hand-made' ({before['id']}) for {HOST} as cfzt-app" in caplog.text
    again = await core.ensure_access_app(account, AccessAppSpec("cfzt-app", HOST, session_duration="8h"),
                                         Recorded(id=app.id))
    assert again.id == app.id  # ours now (the ledger records its id)


@pytest.mark.parametrize(("theirs", "ours"), [
    ("cfzt-app@blue", "cfzt-app"),  # another installation's (owner suffix)
    ("cfzt-app", "cfzt-app@green"),  # the default owner's app for the same object
])
async def test_access_app_of_another_installation_is_never_adopted(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare, theirs: str, ours: str
) -> None:
    await foreign_app(cf, sandbox, theirs)
    before = live(sandbox, "access_apps")

    with pytest.raises(Conflict, match="not adopted"):
        await core.ensure_access_app(sandbox.account_id, AccessAppSpec(ours, HOST, adopt=True), intent())
    assert live(sandbox, "access_apps") == before


def test_access_app_adoption_needs_exactly_one_other_app() -> None:
    # Cloudflare keeps one app per domain today; should several ever protect it, none is taken over.
    apps: list[dict[str, Any]] = [{"id": "a1", "name": "hand-made", "domain": HOST},
                                  {"id": "a2", "name": "other", "domain": HOST}]
    spec = AccessAppSpec("cfzt-app", HOST, adopt=True)
    with pytest.raises(Conflict, match="not adopted"):
        access._recorded_app(apps, spec, intent(), adopt=True)
    assert access._recorded_app(apps[:1], spec, intent(), adopt=True) == (apps[0], True)


async def test_a_whole_publish_adopts_record_and_app_when_asked(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    site = Site("app", adopt=True)
    existing = await foreign_record(cf, sandbox, None)
    await foreign_app(cf, sandbox, "hand-made")
    with pytest.raises(Conflict):
        await publish(core, sandbox, Site("app"))

    done = await publish(core, sandbox, site)

    assert done.record.id == existing["id"] and done.record.content == f"{done.tunnel.id}.cfargotunnel.com"
    assert [a["name"] for a in live(sandbox, "access_apps")] == [site.cloudflare_name]


async def test_a_record_kubernetes_state_proves_is_adopted_by_the_core_and_only_that_one(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    """The seed's records have no marker; the route's state ConfigMap lists their ids. Given those ids as proof,
    the core adopts them itself (the door only passes the proof); an id the state does not list, or a record of
    another installation, proves nothing."""
    zone = sandbox.zone_id(ZONE)
    seed_made = await foreign_record(cf, sandbox, None)

    with pytest.raises(Conflict):  # an id that is not the record's proves nothing
        await core.check_dns_name_available(zone, HOST, SOURCE, proven_ids=("0" * 32,))
    assert writes(sandbox) == []

    await core.check_dns_name_available(zone, HOST, SOURCE, proven_ids=(seed_made["id"],))
    ensured = await core.ensure_dns_record(zone, wanted(adopt=False), proven_ids=(seed_made["id"],))
    assert (ensured.id, ensured.content, ensured.comment) == (seed_made["id"], "t1.cfargotunnel.com",
                                                              marker(OWNER, SOURCE))


async def test_a_proven_id_never_adopts_another_installations_record(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    zone = sandbox.zone_id(ZONE)
    theirs = await foreign_record(cf, sandbox, "chutes-operator owner=blue src=HTTPRoute/ns/app")
    with pytest.raises(Conflict):
        await core.ensure_dns_record(zone, wanted(adopt=False), proven_ids=(theirs["id"],))
    assert records(sandbox, HOST) == [theirs] and writes(sandbox) == []
