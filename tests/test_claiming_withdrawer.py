"""A hostname claim taken down change by change (:class:`chutes.frontdoors.claiming.Withdrawer`, the apply side of
:mod:`chutes.frontdoors.teardown`), on the Cloudflare and Kubernetes emulators: routing first, then Access and the
token, each proven by the claim and forgotten once gone, the claim released after its last change; records at the
name that are not the source's keep its Access application, its token and its claim; a claim released meanwhile (by
the sweep) is left alone."""

from __future__ import annotations

import cloudflare
from kubernetes_asyncio import client

from chutes.claims import Claim, ClaimStore
from chutes.cloudflare_core import CloudflareCore
from chutes.frontdoors import claiming, teardown
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import ZONE, Published, Site, ingress, live, publish, records
from harness.ledger import LEDGER, api, cluster

__all__ = ["api", "cluster"]  # fixtures

SITE = Site("web")
SOURCE = f"ChuteGateway/ns/{SITE.name}"


async def published(core: CloudflareCore, sandbox: CloudflareSandbox,
                    api: client.ApiClient) -> tuple[ClaimStore, Published, Claim]:
    """SITE published as a gateway publishes it, and the claim it leaves: its rule, CNAME, Access application and
    policy, token."""
    store = ClaimStore(api, LEDGER, "test")
    done = await publish(core, sandbox, SITE)
    account = sandbox.account_id
    claim = await store.acquire("hostname", SITE.hostname, SOURCE)
    claim = await store.complete(claim, claiming.TUNNEL_RULE, done.tunnel.id, tunnel=done.tunnel.id, account=account,
                                 service=SITE.service)
    claim = await store.intend(claim, claiming.DNS, zone=sandbox.zone_id(ZONE), type="CNAME")
    claim = await store.complete(claim, claiming.ACCESS_APP, done.app.id, account=account, name=SITE.cloudflare_name)
    claim = await store.complete(claim, claiming.ACCESS_POLICY, done.policy.id, app=done.app.id)
    return store, done, await store.complete(claim, claiming.SERVICE_TOKEN, done.token.id, account=account,
                                             name=SITE.cloudflare_name)


async def take_all(withdrawer: claiming.Withdrawer, claim: Claim) -> claiming.Teardown | None:
    result = None
    for change in teardown.hostname(claim):
        assert change.payload.claim is not None
        result = await withdrawer.take(change.payload.claim, change.payload.obj, last=change.payload.last)
    return result


def withdrawer(core: CloudflareCore, store: ClaimStore, sandbox: CloudflareSandbox) -> claiming.Withdrawer:
    return claiming.Withdrawer(core, store, account_id=sandbox.account_id, zone_id=sandbox.zone_id(ZONE))


async def test_each_object_goes_in_order_and_the_claim_after_the_last(
        core: CloudflareCore, sandbox: CloudflareSandbox, api: client.ApiClient) -> None:
    store, done, claim = await published(core, sandbox, api)
    taking = withdrawer(core, store, sandbox)
    result = await take_all(taking, claim)
    assert result is not None and result.released and result.left == []
    assert result.removed_objects == [claiming.TUNNEL_RULE, claiming.DNS, claiming.ACCESS_APP,
                                      claiming.SERVICE_TOKEN]
    assert await store.get("hostname", SITE.hostname) is None
    assert not records(sandbox, SITE.hostname) and not live(sandbox, "access_apps")
    assert not live(sandbox, "service_tokens")
    assert all(rule.get("hostname") != SITE.hostname for rule in ingress(sandbox, done.tunnel.id))


async def test_records_not_the_sources_keep_its_access_its_token_and_its_claim(
        core: CloudflareCore, sandbox: CloudflareSandbox, api: client.ApiClient,
        cf: cloudflare.AsyncCloudflare) -> None:
    store, done, claim = await published(core, sandbox, api)
    await core.delete_dns_record(sandbox.zone_id(ZONE), SITE.hostname, "CNAME", SOURCE)
    await cf.dns.records.create(zone_id=sandbox.zone_id(ZONE), name=SITE.hostname, type="A",  # type: ignore[call-overload]
                                content="192.0.2.7", ttl=1)
    result = await take_all(withdrawer(core, store, sandbox), claim)
    assert result is not None and not result.released
    assert result.removed_objects == [claiming.TUNNEL_RULE]
    assert [left.split(":")[0] for left in result.left] == [SITE.hostname]
    assert "A " + SITE.hostname in result.left[0]
    kept = await store.get("hostname", SITE.hostname)
    assert kept is not None and set(kept.entries) == {claiming.ACCESS_APP, claiming.ACCESS_POLICY,
                                                      claiming.SERVICE_TOKEN}
    assert [app["id"] for app in live(sandbox, "access_apps")] == [done.app.id]
    assert [record["type"] for record in records(sandbox, SITE.hostname)] == ["A"]


async def test_a_claim_released_meanwhile_is_left_alone(
        core: CloudflareCore, sandbox: CloudflareSandbox, api: client.ApiClient) -> None:
    store, done, claim = await published(core, sandbox, api)
    taking = withdrawer(core, store, sandbox)
    [rule, *rest] = teardown.hostname(claim)
    assert await taking.take(claim, rule.payload.obj) is None
    await store.release(taking.now[SITE.hostname])  # the sweep's verdict, between two changes
    for change in rest:
        result = await taking.take(claim, change.payload.obj, last=change.payload.last)
    assert result is not None and not result.released
    assert SITE.hostname in taking.lost
    assert [app["id"] for app in live(sandbox, "access_apps")] == [done.app.id]  # nothing after the loss
