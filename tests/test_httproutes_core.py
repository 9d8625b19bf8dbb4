"""Cloudflare core additions made for the HTTPRoute front door (emulator, real SDK): adopting a DNS record
by id, finding objects by natural key, listing reusable policies, rotating a service token's secret."""

from __future__ import annotations

from collections.abc import AsyncIterator

import cloudflare
import pytest

from chutes.cloudflare_core import (
    AccessAppSpec,
    AppPolicySpec,
    CloudflareCore,
    Conflict,
    DesiredRecord,
    RequestBudget,
    marker,
)
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import TOKEN_DURATION, intent

OWNER = "test"
SOURCE = "HTTPRoute/apps/web"


@pytest.fixture()
async def core(sandbox: CloudflareSandbox) -> AsyncIterator[CloudflareCore]:
    async with CloudflareCore(sandbox.token, sandbox.base_url, owner_id=OWNER, budget=RequestBudget(),
                              backoff=0.01) as instance:
        yield instance


@pytest.fixture()
async def other(sandbox: CloudflareSandbox) -> AsyncIterator[cloudflare.AsyncCloudflare]:
    async with cloudflare.AsyncCloudflare(api_token=sandbox.token, base_url=sandbox.base_url,
                                          max_retries=0) as client:
        yield client


async def test_an_unmarked_record_is_adopted_by_id_then_managed(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    zone = sandbox.zone_id("example.com")
    seed = await other.dns.records.create(zone_id=zone, name="app.example.com", type="CNAME",
                                          content="old.cfargotunnel.com", proxied=True, ttl=1)
    assert seed is not None
    wanted = DesiredRecord("app.example.com", "CNAME", "new.cfargotunnel.com", source=SOURCE)
    with pytest.raises(Conflict):
        await core.ensure_dns_record(zone, wanted)

    assert [r.id for r in await core.list_dns_records(zone)] == [seed.id]  # every record, ours or not
    adopted = await core.adopt_dns_record(zone, seed.id, "app.example.com", SOURCE)
    record = await core.ensure_dns_record(zone, wanted)

    assert adopted is not None and adopted.comment == marker(OWNER, SOURCE)
    assert (record.id, record.content) == (seed.id, "new.cfargotunnel.com")


async def test_adoption_refuses_other_owners_other_names_and_missing_ids(
    core: CloudflareCore, sandbox: CloudflareSandbox, other: cloudflare.AsyncCloudflare
) -> None:
    zone = sandbox.zone_id("example.com")
    theirs = await other.dns.records.create(zone_id=zone, name="a.example.com", type="A", content="192.0.2.1",
                                            ttl=120, comment=marker("elsewhere", "Pod/x/y"))
    plain = await other.dns.records.create(zone_id=zone, name="b.example.com", type="A", content="192.0.2.2", ttl=120)
    assert theirs is not None and plain is not None

    assert await core.adopt_dns_record(zone, theirs.id, "a.example.com", SOURCE) is None
    assert await core.adopt_dns_record(zone, plain.id, "c.example.com", SOURCE) is None
    assert await core.adopt_dns_record(zone, "0" * 32, "b.example.com", SOURCE) is None
    comments = {r["name"]: r.get("comment") for r in sandbox.snapshot()["dns_records"][zone]}
    assert comments == {"a.example.com": marker("elsewhere", "Pod/x/y"), "b.example.com": None}


async def test_lookups_by_natural_key(core: CloudflareCore, sandbox: CloudflareSandbox,
                                      other: cloudflare.AsyncCloudflare) -> None:
    account = sandbox.account_id
    for name in ("team", "admins"):
        await other.zero_trust.access.policies.create(account_id=account, name=name, decision="allow",
                                                      include=[{"everyone": {}}])
    app = await core.ensure_access_app(account, AccessAppSpec("cfzt-app.example.com", "app.example.com"), intent())
    policy = await core.ensure_app_policy(account, app.id, AppPolicySpec("cfzt-app.example.com-allow",
                                                                         include=({"email": {"email": "a@x.org"}},)))
    sandbox.reset_log()

    assert sorted(p.name for p in await core.list_reusable_policies(account)) == ["admins", "team"]
    mine = await core.find_access_app(account, "app.example.com", "cfzt-app.example.com")
    assert mine is not None and mine.id == app.id and mine.policies == (policy.id,)
    assert await core.find_access_app(account, "app.example.com", "someone-else") is None
    found = await core.find_app_policy(account, app.id, "cfzt-app.example.com-allow")
    assert found is not None and found.id == policy.id
    assert await core.find_app_policy(account, app.id, "missing") is None
    # the hit answered by the view of the apps, the miss by a new listing
    assert sandbox.counters == {"access.policies.list": 1, "access.apps.list": 1, "access.app_policies.list": 2}


async def test_service_token_is_found_without_secret_and_rotated_with_one(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account = sandbox.account_id
    created = await core.ensure_service_token(account, "cfzt-app.example.com", TOKEN_DURATION, intent())
    found = await core.find_service_token(account, "cfzt-app.example.com")
    rotated = await core.rotate_service_token(account, created.id)

    assert found is not None and found.id == created.id and found.client_secret is None
    assert await core.find_service_token(account, "cfzt-other.example.com") is None
    assert rotated.id == created.id and rotated.client_id == created.client_id
    assert rotated.client_secret and rotated.client_secret != created.client_secret
    assert rotated.client_secret not in repr(rotated)
