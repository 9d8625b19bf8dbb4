"""Dry-run: every change is logged, none is written (the emulator's request log proves it); a create whose
result the next step needs stops the publish with DryRunStop."""

from __future__ import annotations

import logging

import pytest

from chutes import conditions as c
from chutes.cloudflare_core import CloudflareCore, DesiredRecord, DryRunStop, IngressRule
from chutes.frontdoors.problems import problem_from_cloudflare
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import (
    ZONE,
    Site,
    cloudflare_state,
    core_with,
    publish,
    rules_at,
    skipped,
    unpublish,
    writes,
)

SITE = Site("web")


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="chutes.cloudflare_core")


async def test_first_publish_in_dry_run_reads_then_stops_at_the_tunnel_it_would_create(
    sandbox: CloudflareSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    before = cloudflare_state(sandbox)
    async with core_with(sandbox, dry_run=True) as dry:
        await dry.verify_access(sandbox.account_id, sandbox.zone_id(ZONE))
        with pytest.raises(DryRunStop) as idp_stop:
            await dry.ensure_otp_idp(sandbox.account_id)
        with pytest.raises(DryRunStop) as stop:
            await publish(dry, sandbox, SITE)

    assert str(idp_stop.value) == "dry-run: would create identity provider One-time PIN"
    assert stop.value.message == "dry-run: would create tunnel chute-ns-web"
    assert sandbox.requests and writes(sandbox) == []  # it read, and wrote nothing
    assert {r.op for r in sandbox.requests} >= {"tunnels.list", "dns.list", "zones.get"}
    assert cloudflare_state(sandbox) == before
    assert "dry-run: would create tunnel chute-ns-web" in caplog.text
    problem = problem_from_cloudflare(stop.value, "ensuring the tunnel")
    assert (problem.reason, problem.message, problem.delay) == (c.DRY_RUN, "dry-run: would create tunnel chute-ns-web",
                                                                None)


async def test_dry_run_over_published_objects_logs_every_change_and_writes_nothing(
    core: CloudflareCore, sandbox: CloudflareSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
    done = await publish(core, sandbox, SITE)
    assert done.token.client_secret
    await core.ensure_dns_record(zone, DesiredRecord(f"new.{ZONE}", "CNAME", "t.cfargotunnel.com", source="Pod/ns/x"))
    before = cloudflare_state(sandbox)
    dns_updates, rule_deletes = skipped("dry_run", "dns_record", "update"), skipped("dry_run", "tunnel_rule", "delete")
    caplog.clear()
    sandbox.reset_log()

    async with core_with(sandbox, dry_run=True) as dry:
        assert dry.dry_run and dry.policy == "sync"
        changed = Site("web", service="http://web2.ns.svc:80", session="12h", emails=("b@example.com",))
        again = await publish(dry, sandbox, changed, done.ledger)  # everything exists: updates only, "as if done"
        moved = await dry.ensure_dns_record(zone, changed.record("elsewhere"))
        created = await dry.ensure_dns_record(zone, DesiredRecord(f"more.{ZONE}", "A", "192.0.2.7", proxied=False,
                                                                  ttl=300, source="Pod/ns/more"))
        await dry.set_ingress_rule(account, done.tunnel.id, IngressRule(f"api.{ZONE}", "http://api:80"),
                                   rules_at(f"api.{ZONE}"))
        synced = await dry.sync_dns_records(zone, [], lambda record: record.name == f"new.{ZONE}")
        wrote = await dry.sync_ingress_rules(account, done.tunnel.id, [], lambda rule: True)
        rotated = await dry.rotate_service_token(account, done.token.id)
        await unpublish(dry, sandbox, SITE, done)

    assert writes(sandbox) == []
    assert cloudflare_state(sandbox) == before
    assert again.tunnel_token == done.tunnel_token and again.tunnel.id == done.tunnel.id  # reads still happen
    assert (moved.id, moved.content) == (done.record.id, "elsewhere.cfargotunnel.com")  # as it would be
    assert (created.name, created.type, created.content, created.ttl) == (f"more.{ZONE}", "A", "192.0.2.7", 300)
    assert synced.deleted == (f"new.{ZONE}",) and not synced.written and not wrote.written
    assert rotated.id == done.token.id and rotated.client_secret is None
    logged = caplog.text
    for change in (
        f"dry-run: would update Access app chute-ns-web for {SITE.hostname}",
        f"dry-run: would update Access policy allow on app {done.app.id}",
        f"dry-run: would update tunnel rule {SITE.hostname} → http://web2.ns.svc:80 (tunnel {done.tunnel.id})",
        f"dry-run: would update DNS CNAME {SITE.hostname} → elsewhere.cfargotunnel.com",
        f"dry-run: would create DNS A more.{ZONE} → 192.0.2.7",
        f"dry-run: would create tunnel rule api.{ZONE} → http://api:80",
        f"dry-run: would delete DNS CNAME new.{ZONE}",
        f"dry-run: would delete tunnel rule {SITE.hostname} → {SITE.service}",
        f"dry-run: would update service token {done.token.id}",
        f"dry-run: would delete DNS CNAME {SITE.hostname}",
        f"dry-run: would delete Access policy {done.policy.id}",
        f"dry-run: would delete Access app {done.app.id}",
        f"dry-run: would delete service token {done.token.id}",
        f"dry-run: would delete tunnel {done.tunnel.id}",
    ):
        assert change in logged, change
    for secret in (sandbox.token, done.tunnel_token, done.token.client_secret):
        assert secret not in logged
    assert skipped("dry_run", "dns_record", "update") == dns_updates + 1
    assert skipped("dry_run", "tunnel_rule", "delete") == rule_deletes + 2  # the sync, then the teardown


async def test_the_client_refuses_any_write_in_dry_run_even_off_the_gate(sandbox: CloudflareSandbox) -> None:
    async with core_with(sandbox, dry_run=True) as dry:
        sdk = dry.client.sdk
        with pytest.raises(DryRunStop, match=r"tunnels\.create"):
            await dry.client.call("tunnels.create", sdk.zero_trust.tunnels.cloudflared.create,
                                  account_id=sandbox.account_id, name="sneaky", config_src="cloudflare")
        with pytest.raises(DryRunStop, match=r"dns\.batch"):
            await dry.client.call("dns.batch", sdk.dns.records.batch, zone_id=sandbox.zone_id(ZONE),
                                  extra_body={"posts": [{"name": f"x.{ZONE}", "type": "A", "content": "192.0.2.1"}]})
        assert await dry.find_tunnel(sandbox.account_id, "sneaky") is None  # reads go through

    assert writes(sandbox) == [] and sandbox.counters == {"tunnels.list": 1}
