"""A sweep pass judges from the claims as it listed them; a claim written since (a pass of its source, e.g. one that
started before its source was deleted, or another replica's, recorded what it created meanwhile) must not be
released on that old reading: its release would drop the proof of what was recorded since, leaving those objects
unprovable forever. Found by the soak: an HTTPRoute deleted while a pass (started before) published it; the tenant's
sweep, waiting on the route's lock, then released the claim it had read with an Access intent alone: the route's
tunnel rule stayed in the shared tunnel, nobody's. The claim is read again before the deletions, and its release is
conditional on its resourceVersion."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from kubernetes_asyncio import client

from chutes.claims import ClaimChanged, ClaimStore
from chutes.cloudflare_core import AccessAppSpec, DesiredRecord
from chutes.frontdoors.httproutes.orphans import NAMES
from chutes.sweep import engine
from chutes.sweep.verdict import Deletion, Wants
from harness.core import core_with
from harness.ledger import LEDGER, api, cluster  # noqa: F401  (fixtures)

SOURCE = "HTTPRoute/apps/late"
HOST = "late.example.com"


async def _nothing_wanted() -> Wants:
    return Wants()  # the route is gone


async def test_a_claim_written_while_the_pass_waited_is_not_released_and_the_next_pass_judges_it(
        api: client.ApiClient, sandbox: Any) -> None:  # noqa: F811
    claims = ClaimStore(api, LEDGER, "owner-1")
    async with core_with(sandbox, owner_id="owner-1") as core:
        account = sandbox.account_id
        claim = await claims.acquire("hostname", HOST, SOURCE)
        claim = await claims.intend(claim, "access_app", account=account, name=f"cfzt-{HOST}")
        made: list[str] = []

        @contextlib.asynccontextmanager
        async def pass_finishing_meanwhile(deletions: Sequence[Deletion],
                                           listed: Mapping[str, Any]) -> AsyncIterator[Sequence[Deletion]]:
            # the verdict: the intent found no application, so the claim alone is an orphan, to be released
            assert [(d.object, d.name) for d in deletions] == [("claim", HOST)]
            spec = AccessAppSpec(f"cfzt-{HOST}", HOST)
            app = await core.ensure_access_app(account, spec, claim.recorded("access_app"))
            await claims.complete(claim, "access_app", app.id, account=account, name=f"cfzt-{HOST}")
            made.append(app.id)
            yield deletions

        scope = engine.Scope(NAMES, account, None)
        report = await engine.sweep(core, scope, _nothing_wanted, 50, claims, pass_finishing_meanwhile)
        assert report.deleted == [] and report.failed == []
        [kept] = await claims.list(source=SOURCE)
        assert kept.recorded("access_app").id == made[0]  # the proof of the application stays
        assert [a.id for a in await core.list_access_apps(account) if a.domain == HOST] == made

        report = await engine.sweep(core, scope, _nothing_wanted, 50, claims)  # judged as it is now
        assert sorted(d.object for d in report.deleted) == ["access_app", "claim"]
        assert await claims.list(source=SOURCE) == []
        assert [a for a in await core.list_access_apps(account) if a.domain == HOST] == []


async def test_a_conditional_release_of_a_claim_written_since_raises_and_keeps_it(api: client.ApiClient) -> None:  # noqa: F811
    claims = ClaimStore(api, LEDGER, "owner-2")
    read = await claims.acquire("hostname", "cond.example.com", SOURCE)
    await claims.intend(read, "dns", zone="z", type="CNAME")
    with pytest.raises(ClaimChanged):
        await claims.release(read, unchanged=True)
    assert [c.key for c in await claims.list(source=SOURCE)] == ["cond.example.com"]
    [now] = await claims.list(source=SOURCE)
    await claims.release(now, unchanged=True)
    assert await claims.list(source=SOURCE) == []
    await claims.release(now, unchanged=True)  # already gone: fine


async def test_an_access_application_is_not_deleted_while_its_hostname_became_routable_again(
        api: client.ApiClient, sandbox: Any) -> None:  # noqa: F811
    """The pass of a source that started before the source went publishes from what it read: its claim records
    the objects already (not written again), so only reading the hostname's records and rules again right before
    the Access deletions shows it routable; deleting the application then would leave it unprotected (found by the
    soak: r4-a routable without Access for ~2 s)."""
    claims = ClaimStore(api, LEDGER, "owner-3")
    host, zone = "again.example.com", sandbox.zone_id("example.com")
    async with core_with(sandbox, owner_id="owner-3") as core:
        account = sandbox.account_id
        claim = await claims.acquire("hostname", host, SOURCE)
        claim = await claims.intend(claim, "access_app", account=account, name=f"cfzt-{host}")
        app = await core.ensure_access_app(account, AccessAppSpec(f"cfzt-{host}", host), claim.recorded("access_app"))
        await claims.complete(claim, "access_app", app.id, account=account, name=f"cfzt-{host}")

        @contextlib.asynccontextmanager
        async def pass_publishing_meanwhile(deletions: Sequence[Deletion],
                                            listed: Mapping[str, Any]) -> AsyncIterator[Sequence[Deletion]]:
            assert sorted(d.object for d in deletions) == ["access_app", "claim"]
            await core.ensure_dns_record(zone, DesiredRecord(host, "CNAME", "t.cfargotunnel.com", source=SOURCE))
            yield deletions

        scope = engine.Scope(NAMES, account, None)
        report = await engine.sweep(core, scope, _nothing_wanted, 50, claims, pass_publishing_meanwhile)
        assert report.deleted == [] and report.failed == []
        assert [a.id for a in await core.list_access_apps(account) if a.domain == host] == [app.id]
        assert [c.key for c in await claims.list(source=SOURCE)] == [host]

        report = await engine.sweep(core, scope, _nothing_wanted, 50, claims)  # the record first, then Access
        assert [d.object for d in report.deleted] == ["dns_record", "access_app", "claim"]
        assert [a for a in await core.list_access_apps(account) if a.domain == host] == []
