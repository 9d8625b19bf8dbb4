"""Write policies (as external-dns): sync deletes, upsert-only never deletes, create-only never deletes nor
changes what exists; the emulator's state proves what was (not) written."""

from __future__ import annotations

import logging

import pytest

from chutes.cloudflare_core import (
    AccessAppSpec,
    CloudflareCore,
    Conflict,
    DesiredRecord,
    IngressRule,
    InvalidInput,
)
from chutes.sandbox.cloudflare import CloudflareSandbox
from harness.core import (
    ZONE,
    Site,
    core_with,
    ingress,
    intent,
    live,
    publish,
    records,
    rules_at,
    skipped,
    unpublish,
    writes,
)

SITE = Site("web")


async def test_sync_deletes_every_object(core: CloudflareCore, sandbox: CloudflareSandbox) -> None:
    done = await publish(core, sandbox, SITE)
    await unpublish(core, sandbox, SITE, done)

    assert records(sandbox, SITE.hostname) == []
    assert (live(sandbox, "tunnels"), live(sandbox, "access_apps"), live(sandbox, "service_tokens")) == ([], [], [])
    assert live(sandbox, "access_policies") == []


async def test_upsert_only_keeps_every_object_on_delete_and_still_updates(
    core: CloudflareCore, sandbox: CloudflareSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chutes.cloudflare_core")
    done = await publish(core, sandbox, SITE)
    before = skipped("policy", "dns_record", "delete")
    async with core_with(sandbox, policy="upsert-only") as upsert:
        assert (upsert.policy, upsert.dry_run) == ("upsert-only", False)
        sandbox.reset_log()
        await unpublish(upsert, sandbox, SITE, done)  # every delete returns normally

        assert writes(sandbox) == []
        assert [r["id"] for r in records(sandbox, SITE.hostname)] == [done.record.id]
        assert ingress(sandbox, done.tunnel.id)[0]["hostname"] == SITE.hostname
        assert [t["id"] for t in live(sandbox, "tunnels")] == [done.tunnel.id]
        assert [a["id"] for a in live(sandbox, "access_apps")] == [done.app.id]
        assert [p["id"] for p in live(sandbox, "access_policies")] == [done.policy.id]
        assert [t["id"] for t in live(sandbox, "service_tokens")] == [done.token.id]
        assert skipped("policy", "dns_record", "delete") == before + 1
        assert f"policy upsert-only: not deleting DNS CNAME {SITE.hostname}" in caplog.text

        # Updates still happen, in place.
        changed = Site("web", service="http://web2.ns.svc:80", session="12h", emails=("b@example.com",))
        again = await publish(upsert, sandbox, changed, done.ledger)
        other_tunnel = await upsert.ensure_tunnel(sandbox.account_id, "chute-ns-other", intent())
        moved = await upsert.ensure_dns_record(sandbox.zone_id(ZONE), changed.record(other_tunnel.id))

    assert (again.tunnel.id, again.app.id, again.policy.id) == (done.tunnel.id, done.app.id, done.policy.id)
    assert ingress(sandbox, done.tunnel.id)[0]["service"] == "http://web2.ns.svc:80"
    assert live(sandbox, "access_apps")[0]["session_duration"] == "12h"
    assert live(sandbox, "access_policies")[0]["include"] == [{"email": {"email": "b@example.com"}}]
    assert moved.id == done.record.id
    assert records(sandbox, SITE.hostname)[0]["content"] == f"{other_tunnel.id}.cfargotunnel.com"


async def test_upsert_only_level_based_syncs_add_but_never_remove(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
    tunnel = await core.ensure_tunnel(account, "chute-sessions", intent())
    old = DesiredRecord(f"old.{ZONE}", "CNAME", "t.cfargotunnel.com", source="Pod/ns/old")
    await core.sync_dns_records(zone, [old], lambda record: True)
    await core.sync_ingress_rules(account, tunnel.id, [IngressRule(f"old.{ZONE}", "http://r:80")], lambda rule: True)
    new = DesiredRecord(f"new.{ZONE}", "CNAME", "t.cfargotunnel.com", source="Pod/ns/new")

    async with core_with(sandbox, policy="upsert-only") as upsert:
        dns = await upsert.sync_dns_records(zone, [new], lambda record: True)
        wrote = await upsert.sync_ingress_rules(
            account, tunnel.id, [IngressRule(f"new.{ZONE}", "http://r:80")], lambda rule: True
        )
        unchanged = await upsert.sync_ingress_rules(
            account, tunnel.id, [IngressRule(f"new.{ZONE}", "http://r:80")], lambda rule: True
        )

    assert {r["name"] for r in records(sandbox)} == {f"old.{ZONE}", f"new.{ZONE}"}
    assert dns.written and dns.deleted == (f"old.{ZONE}",) and not dns.failed  # the caller sees success
    assert [r.get("hostname") for r in ingress(sandbox, tunnel.id)] == [f"old.{ZONE}", f"new.{ZONE}", None]
    assert (wrote.written, unchanged.written) == (True, False)  # nothing left to change: no PUT


async def test_upsert_only_refuses_a_type_swap_that_needs_a_delete(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    zone = sandbox.zone_id(ZONE)
    await core.ensure_dns_record(zone, DesiredRecord(f"swap.{ZONE}", "A", "192.0.2.1", source="Pod/ns/swap"))
    async with core_with(sandbox, policy="upsert-only") as upsert:
        with pytest.raises(Conflict, match="upsert-only"):
            await upsert.ensure_dns_record(
                zone, DesiredRecord(f"swap.{ZONE}", "CNAME", "t.cfargotunnel.com", source="Pod/ns/swap")
            )
    assert [r["type"] for r in records(sandbox, f"swap.{ZONE}")] == ["A"]


async def test_create_only_keeps_existing_objects_as_they_are_and_creates_new_ones(
    core: CloudflareCore, sandbox: CloudflareSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chutes.cloudflare_core")
    account, zone = sandbox.account_id, sandbox.zone_id(ZONE)
    done = await publish(core, sandbox, SITE)
    before = sandbox.snapshot()
    update_skips = skipped("policy", "tunnel_rule", "update")

    async with core_with(sandbox, policy="create-only") as create_only:
        sandbox.reset_log()
        changed = Site("web", service="http://web2.ns.svc:80", session="12h", emails=("b@example.com",))
        again = await publish(create_only, sandbox, changed, done.ledger)
        moved = await create_only.ensure_dns_record(zone, changed.record("elsewhere"))
        rotated = await create_only.rotate_service_token(account, done.token.id)
        assert writes(sandbox) == []  # nothing that exists was changed
        await unpublish(create_only, sandbox, SITE, done)
        assert writes(sandbox) == []  # nor deleted

        fresh = await publish(create_only, sandbox, Site("fresh"))
        await create_only.set_ingress_rule(account, done.tunnel.id, IngressRule(f"new.{ZONE}", "http://new:80"),
                                           rules_at(f"new.{ZONE}"))

    after = sandbox.snapshot()
    for kind in ("access_apps", "access_policies", "service_tokens"):
        for key, item in before[kind].items():
            assert after[kind][key] == item, kind
    assert moved == done.record  # the record as it stands
    assert [r["content"] for r in records(sandbox, SITE.hostname)] == [done.record.content]
    assert (again.app.id, again.app.session_duration, again.policy) == (done.app.id, "24h", done.policy)
    assert rotated.id == done.token.id and rotated.client_secret is None
    assert skipped("policy", "tunnel_rule", "update") == update_skips + 1
    assert "policy create-only: not updating tunnel rule web.example.com" in caplog.text
    # New objects are created, and a new rule is added next to the unchanged one.
    assert fresh.tunnel.id != done.tunnel.id and fresh.record.name == f"fresh.{ZONE}" and fresh.token.client_secret
    assert [(r.get("hostname"), r["service"]) for r in ingress(sandbox, done.tunnel.id)] == [
        (SITE.hostname, SITE.service),
        (f"new.{ZONE}", "http://new:80"),
        (None, "http_status:404"),
    ]


def emails_of(policy_include: object) -> list[str]:
    assert isinstance(policy_include, list)
    return [rule["email"]["email"] for rule in policy_include]


async def test_create_only_still_revokes_what_an_allow_policy_no_longer_grants(
    core: CloudflareCore, sandbox: CloudflareSandbox
) -> None:
    """Refusing a revocation would keep access open that its owner withdrew: under create-only the emails
    removed from an allow policy lose access; nothing is granted and nothing else changes."""
    account = sandbox.account_id
    done = await publish(core, sandbox, Site("web", emails=("a@example.com", "b@example.com", "c@example.com")))
    async with core_with(sandbox, policy="create-only") as create_only:
        narrowed = await create_only.ensure_app_policy(account, done.app.id,
                                                       Site("web", emails=("a@example.com", "c@example.com")).policy())
        assert emails_of(live(sandbox, "access_policies")[0]["include"]) == ["a@example.com", "c@example.com"]
        # One removed, one added: the removal is applied, the grant is not (the live policy comes back).
        mixed = await create_only.ensure_app_policy(account, done.app.id,
                                                    Site("web", emails=("a@example.com", "d@example.com")).policy())
        [policy] = live(sandbox, "access_policies")
        assert emails_of(policy["include"]) == ["a@example.com"]
        assert [rule["email"]["email"] for rule in mixed.include] == ["a@example.com"]
        # Only a grant: nothing is written.
        sandbox.reset_log()
        granted = await create_only.ensure_app_policy(account, done.app.id, Site("web", emails=(
            "a@example.com", "d@example.com", "e@example.com")).policy())
        assert writes(sandbox) == [] and granted.include == mixed.include
    assert narrowed.id == mixed.id == done.policy.id


async def test_unknown_policy_is_refused(sandbox: CloudflareSandbox) -> None:
    with pytest.raises(InvalidInput, match="write policy"):
        CloudflareCore(sandbox.token, sandbox.base_url, policy="delete-all")


async def test_create_only_never_adopts(sandbox: CloudflareSandbox, core: CloudflareCore) -> None:
    account = sandbox.account_id
    await core.ensure_access_app(account, AccessAppSpec("hand-made", f"mine.{ZONE}"), intent())
    async with core_with(sandbox, policy="create-only") as create_only:
        with pytest.raises(Conflict):
            await create_only.ensure_access_app(account, AccessAppSpec("chute-ns-mine", f"mine.{ZONE}", adopt=True),
                                                intent())
    assert [a["name"] for a in live(sandbox, "access_apps")] == ["hand-made"]
