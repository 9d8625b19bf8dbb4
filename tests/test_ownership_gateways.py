"""Ownership you can prove (issue 11), for the ChuteGateway front door: the real operator against both
emulators, attacked the ways the review broke it. Each test asserts what a user would notice (conditions,
Events, what is published) and that every foreign object stays byte-identical in the Cloudflare emulator.

1. The orphan sweep judges by name (item 1): a hand-made, connected tunnel ``chute-ops-vpn`` serving a record
   in another zone, and a hand-made Access application ``chute-admin``, survive sweep passes.
2. Ids in status are trusted (item 3): a status patched with a foreign connected tunnel's and a foreign
   application's ids; deleting the gateway removes all of ours and nothing of theirs.
3. A failed hostname change leaks the old Access application (item 5): the old claim is kept and retried until
   the old application is gone; meanwhile the old hostname stays the gateway's (HostnameConflict for others).
4. Deletes go by name (item 2): while team-a/blog's finalizer retries, team-b/blog cannot take the hostname,
   so team-a's retry can delete nothing of team-b's; team-b publishes once team-a is gone.
5. Adoption is the operator's permission (item 4, for gateways): the annotation alone takes nothing over; a
   hostname rule with ``adopt: true`` does.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudflare as cf_sdk
import pytest
import yaml

from chutes.cloudflare_core.ownership import parse as parse_marker
from chutes.frontdoors import claiming
from chutes.frontdoors.adoption import ADOPT_ANNOTATION
from harness.gateways import GROUP, NS, VERSION, World
from harness.retries import short_cloudflare_retries
from harness.waiting import wait_for

HOSTNAME = "blog.example.com"
LEDGER = "default"  # the operator's ledger namespace here (no OPERATOR_NAMESPACE, no service account)
CLAIMS = "app.kubernetes.io/managed-by=chutes-operator,chutes.troubleshat.com/claim-kind"


@pytest.fixture()
def world(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare)  # each test starts the operator with its own settings


def sdk(world: World) -> cf_sdk.Cloudflare:
    return cf_sdk.Cloudflare(api_token=world.cf.token, base_url=world.cf.base_url, max_retries=0)


def hand_made_tunnel(world: World, name: str, ingress: list[dict[str, Any]]) -> str:
    """A remotely-managed tunnel made by someone else, with a connector attached and `ingress` as its rules."""
    with sdk(world) as client:
        tunnel = client.zero_trust.tunnels.cloudflared.create(account_id=world.account, name=name,
                                                              config_src="cloudflare")
        assert tunnel is not None and tunnel.id
        client.zero_trust.tunnels.cloudflared.configurations.update(
            tunnel.id, account_id=world.account, config={"ingress": [*ingress, {"service": "http_status:404"}]})
    world.cf.connect_tunnel(tunnel.id)
    return str(tunnel.id)


def hand_made_app(world: World, name: str, domain: str, *, policy: bool = False) -> str:
    with sdk(world) as client:
        app = client.zero_trust.access.applications.create(account_id=world.account, type="self_hosted",
                                                           name=name, domain=domain, session_duration="8h")
        assert app is not None
        app_id = str(app.id)  # type: ignore[union-attr]
        if policy:
            client.zero_trust.access.applications.policies.create(
                app_id, account_id=world.account, name="corp staff", decision="allow",
                include=[{"email_domain": {"domain": "corp.example"}}])
    return app_id


def hand_made_record(world: World, zone: str, name: str, content: str, comment: str | None = None) -> str:
    with sdk(world) as client:
        created = client.dns.records.create(  # type: ignore[call-overload]
            zone_id=world.cf.zone_id(zone), name=name, type="CNAME", content=content, proxied=True, ttl=1,
            **({"comment": comment} if comment is not None else {}))
    return str(created.id)


def foreign(world: World, tunnels: tuple[str, ...] = (), apps: tuple[str, ...] = (),
            records: tuple[str, ...] = ()) -> dict[str, Any]:
    """The foreign objects as the emulator holds them (a deep copy): tunnels with their configurations and
    connections, applications with their policies, records by id in any zone."""
    state = world.state()
    every_record = {r["id"]: r for zone in state["dns_records"].values() for r in zone}
    return copy.deepcopy({
        "tunnels": {t: (state["tunnels"].get(t), state["tunnel_configs"].get(t)) for t in tunnels},
        "apps": {a: (state["access_apps"].get(a), sorted(
            (p for p in state["access_policies"].values() if p.get("app_id") == a), key=lambda p: p["id"]))
            for a in apps},
        "records": {r: every_record.get(r) for r in records},
    })


def claims(world: World, kind: str = "hostname") -> dict[str, dict[str, str]]:
    """The operator's claims of `kind` in its ledger: key -> data."""
    found = world.core.list_namespaced_config_map(LEDGER, label_selector=f"{CLAIMS}={kind}").items
    return {item.data["key"]: dict(item.data) for item in found}


def delete_gateway(world: World, name: str = "blog", namespace: str = NS) -> None:
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "chutegateways", name)


def gone(world: World, name: str = "blog", namespace: str = NS) -> bool:
    items = world.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "chutegateways")["items"]
    return name not in {g["metadata"]["name"] for g in items}


def zone_listings(world: World) -> int:
    """Whole-zone DNS listings of example.com (each sweep pass makes one; a reconcile lists names only)."""
    return len([r for r in world.cf.requests if r.op == "dns.list" and "name" not in r.query
                and world.zone in r.path and r.status == 200])


def ours_published(world: World, namespace: str, name: str) -> dict[str, Any]:
    """What gateway namespace/name has in Cloudflare: records marked for it, its live tunnel, its apps."""
    source = f"ChuteGateway/{namespace}/{name}"
    records = [r for r in world.records() if (m := parse_marker(r.get("comment"))) is not None and m.source == source]
    tunnel_name = f"chute-{namespace}-{name}"
    return {"records": records, "tunnels": [t for t in world.live_tunnels() if t["name"] == tunnel_name],
            "apps": [a for a in world.state()["access_apps"].values() if a["name"] == tunnel_name]}


# --- 1. the sweep judges by proof, never by name ------------------------------------------------------


def test_the_sweep_leaves_a_hand_made_connected_tunnel_and_access_app_named_like_ours(world: World) -> None:
    # chute-ops-vpn serves a record in another zone only; admin.example.com is routed through a wildcard CNAME
    # and a rule in another tunnel (one the gateway sweep has no reason to read).
    vpn = hand_made_tunnel(world, "chute-ops-vpn", [{"hostname": "vpn.example.net", "service": "http://10.0.0.8:443"}])
    vpn_record = hand_made_record(world, "example.net", "vpn.example.net", f"{vpn}.cfargotunnel.com")
    edge = hand_made_tunnel(world, "edge-router", [{"hostname": "admin.example.com", "service": "http://10.0.0.9"}])
    wildcard = hand_made_record(world, "example.com", "*.example.com", f"{edge}.cfargotunnel.com")
    admin = hand_made_app(world, "chute-admin", "admin.example.com", policy=True)
    before = foreign(world, (vpn, edge), (admin,), (vpn_record, wildcard))
    assert before["tunnels"][vpn][0]["connections"], "the hand-made tunnel has a live connector"

    world.start(sweep_interval=1.0)
    world.ready_config()
    world.service()
    world.gateway()
    world.ready_gateway()  # the sweep judges next to a live gateway with its claims
    passes = zone_listings(world)
    wait_for("three sweep passes", lambda: zone_listings(world) >= passes + 3, timeout=30)

    assert foreign(world, (vpn, edge), (admin,), (vpn_record, wildcard)) == before
    assert world.get_gateway()["status"]["ready"] is True
    assert not [m for t, r, m in world.events("default", "default") if r == "OrphansRemoved"]


# --- 2. ids in status are hints, never proof -----------------------------------------------------------


def test_a_status_patched_with_foreign_ids_deletes_nothing_foreign_and_still_removes_ours(world: World) -> None:
    corp_tunnel = hand_made_tunnel(world, "corp-vpn", [{"hostname": "vpn.example.net", "service": "http://10.0.0.8"}])
    portal = hand_made_app(world, "Corp SSO portal", "sso.example.com", policy=True)
    [portal_policy] = foreign(world, apps=(portal,))["apps"][portal][1]
    world.start()
    world.ready_config()
    world.service()
    world.gateway()
    ours = world.ready_gateway()["status"]
    before = foreign(world, (corp_tunnel,), (portal,))

    # Someone with write access to chutegateways/status points it at the foreign objects.
    world.custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, "chutegateways", "blog", {"status": {
        "tunnelId": corp_tunnel, "accessAppId": portal, "accessPolicyId": portal_policy["id"]}})
    assert world.get_gateway()["status"]["accessAppId"] == portal
    delete_gateway(world)
    wait_for("the gateway gone (finalizer done)", lambda: gone(world))

    assert foreign(world, (corp_tunnel,), (portal,)) == before
    assert ours_published(world, NS, "blog") == {"records": [], "tunnels": [], "apps": []}
    assert ours["tunnelId"] not in {t["id"] for t in world.live_tunnels()}
    assert ours["accessAppId"] not in world.state()["access_apps"]
    assert claims(world) == {} and claims(world, "tunnel") == {}
    removed = {"DNSRecordRemoved", "TunnelRuleRemoved", "AccessApplicationRemoved", "TunnelRemoved", "Unpublished"}
    wait_for("the removal Events", lambda: removed <= {r for _, r, _ in world.events("blog")})  # posted by kopf's
    # event poster, which may send the last ones after the finalizer is gone


# --- 3. a failed hostname change keeps the old claim until its application is gone ---------------------


def blog_published_with_team_b_waiting(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """team-a/blog published; a Service in team-b for another gateway; a refused gateway, and one that met a
    Cloudflare failure, retries soon (the operator is in-process)."""
    monkeypatch.setattr(claiming, "CONFLICT_RETRY", 1.0)
    short_cloudflare_retries(monkeypatch)
    world.start()
    world.ready_config()
    world.service()
    world.service(namespace="team-b")
    world.gateway()
    world.ready_gateway()


def test_a_failed_hostname_change_keeps_the_old_claim_retries_and_removes_the_old_app(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    blog_published_with_team_b_waiting(world, monkeypatch)
    [old_app] = world.apps_for(HOSTNAME)

    world.cf.faults.fail(op="access.apps.delete", status=503)
    world.patch_gateway("blog", {"hostname": "journal"})
    failing = world.wait_reason("CloudflareUnavailable")
    assert failing["status"]["hostname"] == "journal.example.com" and "blog.example.com" in world.condition(
        failing)["message"]
    assert len(world.records("journal.example.com")) == 1 and world.apps_for("journal.example.com")
    assert world.records(HOSTNAME) == []  # routing went first
    assert world.apps_for(HOSTNAME) == [old_app]  # kept, and still recorded as ours
    old_claim = claims(world)[HOSTNAME]
    assert old_claim["source"] == f"ChuteGateway/{NS}/blog" and old_app["id"] in old_claim["access_app"]

    # Meanwhile the old hostname is still team-a/blog's: another gateway asking for it is refused.
    world.gateway("blog2", "team-b", hostname="blog")
    refused = world.wait_reason("HostnameConflict", "blog2", "team-b")
    assert f"{NS}/blog" in world.condition(refused)["message"]
    assert ours_published(world, "team-b", "blog2") == {"records": [], "tunnels": [], "apps": []}

    world.cf.faults.clear()
    wait_for("the old application removed at a retry", lambda: not world.apps_for(HOSTNAME)
             or world.apps_for(HOSTNAME)[0]["id"] != old_app["id"], timeout=45)
    assert old_app["id"] not in world.state()["access_apps"]
    published = world.ready_gateway("blog2", "team-b")
    assert published["status"]["hostname"] == HOSTNAME
    assert [a["name"] for a in world.apps_for(HOSTNAME)] == ["chute-team-b-blog2"]
    assert claims(world)[HOSTNAME]["source"] == "ChuteGateway/team-b/blog2"
    assert world.get_gateway()["status"]["ready"] is True
    assert ("Normal", "AccessApplicationRemoved") in {(t, r) for t, r, _ in world.events("blog")}


# --- 4. a deleting gateway keeps its hostname until its teardown is complete ---------------------------


def test_a_deleting_gateway_keeps_its_claim_and_its_retry_deletes_nothing_of_the_next_holder(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    blog_published_with_team_b_waiting(world, monkeypatch)

    world.cf.faults.fail(op="access.apps.delete", status=503)
    delete_gateway(world)
    blocked = wait_for("team-a's deletion blocked", lambda: (g := world.get_gateway()) and world.condition(
        g, "DeletionBlocked").get("status") == "True" and g)
    assert world.condition(blocked, "DeletionBlocked")["reason"] == "CloudflareUnavailable"
    assert claims(world)[HOSTNAME]["source"] == f"ChuteGateway/{NS}/blog"

    world.gateway("blog", "team-b")
    refused = world.wait_reason("HostnameConflict", "blog", "team-b")
    assert f"{NS}/blog" in world.condition(refused)["message"]
    attempts = len([r for r in world.cf.requests if r.op == "access.apps.delete"])
    wait_for("team-a's finalizer retried", lambda: len(
        [r for r in world.cf.requests if r.op == "access.apps.delete"]) > attempts, timeout=45)
    assert ours_published(world, "team-b", "blog") == {"records": [], "tunnels": [], "apps": []}
    assert not gone(world)

    world.cf.faults.clear()
    wait_for("team-a gone", lambda: gone(world), timeout=45)
    published = world.ready_gateway("blog", "team-b")
    assert published["status"]["hostname"] == HOSTNAME
    theirs = ours_published(world, "team-b", "blog")
    assert len(theirs["records"]) == 1 and len(theirs["tunnels"]) == 1 and len(theirs["apps"]) == 1
    assert ours_published(world, NS, "blog") == {"records": [], "tunnels": [], "apps": []}
    assert claims(world)[HOSTNAME]["source"] == "ChuteGateway/team-b/blog"


# --- 5. adoption needs the operator's permission --------------------------------------------------------


def adopting_gateway(world: World) -> None:
    world.namespace(NS)
    world.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChuteGateway",
        "metadata": {"name": "blog", "annotations": {ADOPT_ANNOTATION: "true"}},
        "spec": {"configRef": "default", "hostname": "blog", "service": {"name": "web", "port": 8080},
                 "access": {"allowedEmails": ["alice@example.org"]}, "replicas": 1}})


def test_the_adopt_annotation_alone_takes_nothing_over_a_hostname_rule_with_adopt_does(
        world: World, tmp_path: Path) -> None:
    record_id = hand_made_record(world, "example.com", HOSTNAME, "legacy.example.org", comment="made by hand")
    app_id = hand_made_app(world, "hand-made", HOSTNAME)
    before = foreign(world, apps=(app_id,), records=(record_id,))
    world.start()  # default settings: allow_adoption off, no hostname rules
    world.ready_config()
    world.service()
    adopting_gateway(world)

    refused = world.wait_reason("HostnameConflict")
    assert "adoption is not permitted" in world.condition(refused)["message"]
    assert foreign(world, apps=(app_id,), records=(record_id,)) == before
    assert world.live_tunnels() == [] and claims(world) == {}

    world.stop()
    rules = tmp_path / "hostname-rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [
        {"namespaces": [NS], "hostnames": [HOSTNAME], "adopt": True}]}))
    world.start(hostname_rules=str(rules))
    published = world.ready_gateway()
    [record] = world.records(HOSTNAME)
    [tunnel] = world.live_tunnels()
    assert record["id"] == record_id and record["content"] == f"{tunnel['id']}.cfargotunnel.com"
    ownership = parse_marker(record["comment"])
    assert ownership is not None and ownership.source == f"ChuteGateway/{NS}/blog"
    [app] = world.apps_for(HOSTNAME)
    assert (app["id"], app["name"]) == (app_id, f"chute-{NS}-blog") and published["status"]["accessAppId"] == app_id
    assert app_id in claims(world)[HOSTNAME]["access_app"]


# --- upgrade: what an earlier version published is recorded only when proven ---------------------------


def test_an_upgrade_records_what_was_published_without_recreating_it_and_never_a_foreign_id(world: World) -> None:
    corp_tunnel = hand_made_tunnel(world, "corp-vpn", [{"hostname": "vpn.example.net", "service": "http://10.0.0.8"}])
    portal = hand_made_app(world, "Corp SSO portal", "sso.example.com", policy=True)
    world.start()
    world.ready_config()
    world.service()
    world.gateway()
    ours = world.ready_gateway()["status"]
    world.stop()
    # The earlier version kept no ledger; its status (user-writable) now names foreign objects.
    for item in world.core.list_namespaced_config_map(LEDGER, label_selector=CLAIMS).items:
        world.core.delete_namespaced_config_map(item.metadata.name, LEDGER)
    world.custom.patch_namespaced_custom_object_status(GROUP, VERSION, NS, "chutegateways", "blog", {"status": {
        "tunnelId": corp_tunnel, "accessAppId": portal}})
    before = foreign(world, (corp_tunnel,), (portal,))
    world.cf.reset_log()

    world.start()
    recorded = wait_for("the claims recorded again", lambda: (found := claims(world)).get(HOSTNAME, {}).get(
        "access_app") and claims(world, "tunnel") and found)
    assert ours["accessAppId"] in recorded[HOSTNAME]["access_app"] and portal not in recorded[HOSTNAME]["access_app"]
    [tunnel_claim] = claims(world, "tunnel").values()
    assert ours["tunnelId"] in tunnel_claim["tunnel"] and corp_tunnel not in tunnel_claim["tunnel"]
    status = wait_for("the status names ours again", lambda: (s := world.get_gateway()["status"]).get(
        "accessAppId") == ours["accessAppId"] and s.get("tunnelId") == ours["tunnelId"] and s.get("ready") and s)
    assert status["dnsRecordId"] == ours["dnsRecordId"]
    assert world.writes() == []  # nothing re-created, nothing changed in Cloudflare

    delete_gateway(world)
    wait_for("the gateway gone", lambda: gone(world))
    assert foreign(world, (corp_tunnel,), (portal,)) == before
    assert ours_published(world, NS, "blog") == {"records": [], "tunnels": [], "apps": []}
