"""Drift repair counting: writes made inside ``repairing(front_door)`` are counted by object, writes outside are
not, and the coalescing writers count per request by the scope it was queued in."""

from __future__ import annotations

import asyncio
import itertools

import cloudflare
from prometheus_client import REGISTRY

from chutes.cloudflare_core import CloudflareCore, DesiredRecord, IngressRule, repairing
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import ZONE, Site, ingress, intent, publish, repairs, rules_at

OBJECTS = ("dns_record", "tunnel_rule", "access_app", "access_policy", "service_token", "tunnel")
_doors = itertools.count()


def door() -> str:
    """A front door label of this test alone (the registry is shared by the whole session)."""
    return f"drift-test-{next(_doors)}"


def counts(front_door: str) -> dict[str, float]:
    return {obj: repairs(front_door, obj) for obj in OBJECTS}


def every_repair() -> float:
    """The sum over every front door and object."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "chutes_drift_repairs"
        for sample in family.samples
        if sample.name == "chutes_drift_repairs_total"
    )


async def test_repairs_inside_the_scope_are_counted_by_object_and_nothing_else_is(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
    name = door()
    site = Site("web")
    total = every_repair()
    done = await publish(core, sandbox, site)  # first publish: outside any scope
    assert every_repair() == total
    with repairing(name):
        await publish(core, sandbox, site, done.ledger)  # steady state: nothing written, nothing counted
    assert counts(name) == dict.fromkeys(OBJECTS, 0.0)

    # Behind our back: the CNAME and the rule deleted, the app's session changed, the policy and token deleted.
    await cf.dns.records.delete(done.record.id, zone_id=zone)
    await cf.zero_trust.tunnels.cloudflared.configurations.update(
        done.tunnel.id, account_id=account, config={"ingress": [{"service": "http_status:404"}]}  # type: ignore[arg-type]
    )
    await cf.zero_trust.access.applications.update(
        done.app.id, account_id=account, domain=site.hostname, type="self_hosted", name=site.cloudflare_name,
        session_duration="1h",
    )
    await cf.zero_trust.access.applications.policies.delete(done.policy.id, app_id=done.app.id, account_id=account)
    await cf.zero_trust.access.service_tokens.delete(done.token.id, account_id=account)
    await core.refresh_access_apps(account)  # as once the resync interval is over: the apps are listed again,
    await core.refresh_service_tokens(account)  # and the tokens,
    core.forget_listings()  # and the zone and the tunnel configuration read again

    with repairing(name):
        repaired = await publish(core, sandbox, site, done.ledger)
    assert counts(name) == {"dns_record": 1.0, "tunnel_rule": 1.0, "access_app": 1.0, "access_policy": 1.0,
                            "service_token": 1.0, "tunnel": 0.0}
    total = every_repair()
    await core.delete_tunnel(account, repaired.tunnel.id, site.cloudflare_name, connected_ok=True)  # outside the scope
    assert every_repair() == total
    with repairing(name):  # the tunnel gone: created again (the ledger still records the intent)
        await core.ensure_tunnel(account, site.cloudflare_name, repaired.ledger.recorded("tunnel"))
    assert repairs(name, "tunnel") == 1.0


async def test_coalesced_writes_are_counted_per_request_by_the_scope_it_was_queued_in(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
    tunnel = await core.ensure_tunnel(account, "chute-ns-web", intent())
    name = door()
    sandbox.reset_log()

    async def in_scope(host: str) -> None:
        with repairing(name):
            await core.ensure_dns_record(zone, DesiredRecord(host, "CNAME", "t.cfargotunnel.com", source="Pod/ns/a"))
            await core.set_ingress_rule(account, tunnel.id, IngressRule(host, "http://a:80"), rules_at(host))

    async def out_of_scope(host: str) -> None:
        await core.ensure_dns_record(zone, DesiredRecord(host, "CNAME", "t.cfargotunnel.com", source="Pod/ns/b"))
        await core.set_ingress_rule(account, tunnel.id, IngressRule(host, "http://b:80"), rules_at(host))

    # The out-of-scope request comes first: its task starts the drain, whose context is not the scope's.
    await asyncio.gather(out_of_scope(f"b.{ZONE}"), in_scope(f"a.{ZONE}"), out_of_scope(f"c.{ZONE}"))

    assert (sandbox.counters["dns.batch"], sandbox.counters["tunnels.config.put"]) == (1, 1)  # coalesced
    assert (repairs(name, "dns_record"), repairs(name, "tunnel_rule")) == (1.0, 1.0)


async def test_level_based_syncs_count_each_record_and_rule_they_put_back(
    core: CloudflareCore, sandbox: CloudflareSandbox, cf: cloudflare.AsyncCloudflare
) -> None:
    account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
    tunnel = await core.ensure_tunnel(account, "chute-sessions", intent())
    hosts = [f"s{i}.{ZONE}" for i in range(3)]
    wanted = [DesiredRecord(h, "CNAME", "t.cfargotunnel.com", source=f"Pod/ns/{h[:2]}") for h in hosts]
    rules = [IngressRule(h, "http://router:80") for h in hosts]
    await core.sync_dns_records(zone, wanted, lambda record: True)
    await core.sync_ingress_rules(account, tunnel.id, rules, lambda rule: True)
    name = door()

    # Two records and two rules deleted behind our back.
    for record in (await cf.dns.records.list(zone_id=zone)).result:
        if record.name in hosts[:2] and record.id:
            await cf.dns.records.delete(record.id, zone_id=zone)
    kept = ingress(sandbox, tunnel.id)[2]
    await cf.zero_trust.tunnels.cloudflared.configurations.update(
        tunnel.id, account_id=account, config={"ingress": [kept, {"service": "http_status:404"}]}  # type: ignore[arg-type]
    )
    with repairing(name):
        await core.sync_dns_records(zone, wanted, lambda record: True)
        await core.sync_ingress_rules(account, tunnel.id, rules, lambda rule: True)

    assert (repairs(name, "dns_record"), repairs(name, "tunnel_rule")) == (2.0, 2.0)
    assert sorted(str(r.get("hostname")) for r in ingress(sandbox, tunnel.id)[:-1]) == hosts
