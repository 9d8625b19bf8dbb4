"""Ownership you can prove, for the HTTPRoute front door (issue 11): the real operator against both emulators.
Each test is an attack (or an accident) that the earlier, name- and state-trusting code lost: a tenant taking a
hand-made record over by annotation (item 4), the orphan sweep deleting hand-made tokens and apps and another
installation's objects by name (item 1), a hostname change failing half-way (the old objects must not leak nor be
handed to another route), and two routes asking for one hostname (the holder keeps it; the other publishes its
own objects only once the holder is gone). Foreign objects stay byte-identical throughout.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from chutes import kube as chutes_kube
from chutes.cloudflare_core.ownership import parse as parse_marker
from chutes.frontdoors.adoption import ADOPT_ANNOTATION
from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread
from chutes.sandbox.kubernetes import KubeSandbox
from harness.httproutes import OPNS, World, by_thread, home, wait_resyncs, world_fixture  # noqa: F401
from harness.waiting import wait_for

SHOP = "shop.example.com"
NOT_PERMITTED = "adoption is not permitted by the operator"
PROTECTED = {"access.enabled": "true", "access.allowEmails": "alice@example.org"}


def hand_made_record(world: World, name: str, content: str) -> dict[str, Any]:
    world.sdk.dns.records.create(zone_id=world.zone, name=name, type="CNAME", content=content, proxied=True,
                                 ttl=1)
    [record] = world.records(name)
    return record


def hand_made_app(world: World, name: str, domain: str) -> dict[str, Any]:
    created = world.sdk.zero_trust.access.applications.create(account_id=world.account, type="self_hosted",
                                                              name=name, domain=domain, session_duration="1h")
    assert created is not None
    return world.snapshot()["access_apps"][str(created.id)]  # type: ignore[union-attr]


def hand_made_token(world: World, name: str) -> dict[str, Any]:
    created = world.sdk.zero_trust.access.service_tokens.create(account_id=world.account, name=name)
    assert created is not None
    return world.snapshot()["service_tokens"][str(created.id)]


def rules_file(tmp_path: Path, rules: list[dict[str, Any]]) -> str:
    path = tmp_path / "hostname-rules.yaml"
    path.write_text(yaml.safe_dump({"rules": rules}))
    return str(path)


# --- issue item 4: adoption is the operator's permission, not the tenant's ----------------------------------


def test_a_tenant_cannot_adopt_a_hand_made_record_unless_a_hostname_rule_permits_it(world: World,
                                                                                    tmp_path: Path) -> None:
    shop = hand_made_record(world, SHOP, "shops.myshopify.com")
    before = world.snapshot()
    home(world)  # default settings: no hostname rules, allowAdoption off
    world.route("shop", SHOP, namespace="evil", backend=("evil", 80), other_annotations={ADOPT_ANNOTATION: "true"})

    refused = world.wait_reason("shop", "HostnameConflict", namespace="evil")
    assert SHOP in refused["message"] and NOT_PERMITTED in refused["message"], refused
    world.quiesce()
    assert world.records(SHOP) == [shop] and world.snapshot() == before  # nothing written at all
    assert world.rule(SHOP) is None and world.claims() == {}

    # The operator permits it for that namespace and hostname: the record is taken over.
    world.stop()
    world.start(hostname_rules=rules_file(tmp_path, [{"namespaces": ["evil"], "hostnames": [SHOP], "adopt": True}]))
    world.wait_ready("shop", "evil")
    [record] = world.records(SHOP)
    ownership = parse_marker(record["comment"])
    assert record["id"] == shop["id"] and record["content"] == f"{world.tunnel}.cfargotunnel.com"
    assert ownership is not None and ownership.source == "HTTPRoute/evil/shop"
    assert world.rule(SHOP) == {"hostname": SHOP, "service": "http://evil.evil.svc.cluster.local:80"}
    assert world.claims()[SHOP]["source"] == "HTTPRoute/evil/shop"


# --- issue item 1: the sweep never judges by name; one owner id, split namespaces --------------------------


def test_hand_made_tokens_and_apps_named_like_ours_survive_every_sweep(world: World) -> None:
    ci_token = hand_made_token(world, "cfzt-ci-pipeline")
    x_app = hand_made_app(world, "cfzt-x.example.com", "x.example.com")
    home(world, sweep=0.3)
    world.route("web", "web.example.com", **PROTECTED, **{"serviceToken.enabled": "true"})
    world.route("gone", "gone.example.com", **PROTECTED, **{"serviceToken.enabled": "true"})
    world.wait_ready("web")
    world.wait_ready("gone")
    world.delete_route("gone")
    wait_for("the deleted route's objects removed", lambda: not world.apps("gone.example.com")
             and not world.tokens("cfzt-gone.example.com") and not world.records("gone.example.com"))

    passes = sweep_passes(world.cf)
    wait_for("several sweep passes", lambda: sweep_passes(world.cf) >= passes + 4)
    snapshot = world.snapshot()
    assert snapshot["service_tokens"][ci_token["id"]] == ci_token
    assert snapshot["access_apps"][x_app["id"]] == x_app
    assert world.apps("web.example.com") and world.tokens("cfzt-web.example.com")  # the live route's stay


def sweep_passes(cf: Any, token: str | None = None) -> int:
    """Whole-account zone listings (one per HTTPRoute sweep pass of a tenant naming no zone), per token name."""
    return len([r for r in cf.requests if r.op == "zones.list" and "name" not in r.query and r.status == 200
                and (token is None or r.token_name == token)])


def objects_of(snapshot: dict[str, Any], zone: str, hostname: str) -> dict[str, Any]:
    """Everything published for `hostname`: its records, rules, Access applications (with policies) and tokens."""
    apps = {k: v for k, v in snapshot["access_apps"].items() if v["domain"] == hostname}
    rules = [rule for config in snapshot["tunnel_configs"].values() for rule in config["config"].get("ingress", [])
             if rule.get("hostname") == hostname]
    return {"records": [r for r in snapshot["dns_records"][zone] if r["name"] == hostname], "rules": rules,
            "apps": apps, "policies": {k: v for k, v in snapshot["access_policies"].items() if v.get("app_id") in apps},
            "tokens": {k: v for k, v in snapshot["service_tokens"].items() if v["name"] == f"cfzt-{hostname}"}}


def test_two_installations_with_one_owner_id_and_split_namespaces_never_delete_each_others_objects(
        kube: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seed = SandboxConfig.from_dict({"tokens": [{"name": "blue"}, {"name": "green"}]})
    with (SandboxThread(seed) as cf, KubeSandbox(namespaces=["default"]) as other, contextlib.ExitStack() as stack):
        monkeypatch.setattr(chutes_kube, "load_configuration", by_thread(
            {"chutes-blue": kube.operator_kubeconfig, "chutes-green": other.operator_kubeconfig}))
        worlds: dict[str, World] = {}
        for colour, cluster in (("blue", kube), ("green", other)):
            world = worlds[colour] = World(cluster, cf, worlds["blue"].tunnel if colour == "green" else None)
            stack.callback(world.close)
            world.token_secret(cf.token_named(colour))
            world.tenant()
            world.start(sweep=0.3, resync=1.0, name=f"chutes-{colour}",
                        namespaces=(f"team-{colour}", OPNS))  # the same owner id: "default"
            world.route("site", f"site-{colour}.example.com", namespace=f"team-{colour}", **PROTECTED,
                        **{"serviceToken.enabled": "true"})
            world.route("old", f"old-{colour}.example.com", namespace=f"team-{colour}", **PROTECTED,
                        **{"serviceToken.enabled": "true"})
        blue, green = worlds["blue"], worlds["green"]
        for colour, world in worlds.items():
            world.wait_ready("site", f"team-{colour}")
            world.wait_ready("old", f"team-{colour}")
        zone = blue.zone

        def published(colour: str) -> dict[str, Any]:
            snapshot = cf.snapshot()
            return {name: objects_of(snapshot, zone, f"{name}-{colour}.example.com") for name in ("site", "old")}

        def whole(colour: str) -> bool:
            return all(len(o["records"]) == 1 and len(o["rules"]) == 1 and len(o["apps"]) == 1
                       and len(o["tokens"]) == 1 for o in published(colour).values())

        # Both write the shared tunnel, taking no turns (their Leases are in two clusters): a write of one may land on
        # the other's and undo its new rules until that one's next resync (README: co-owned tunnel configurations).
        wait_for("every object of both installations published once", lambda: whole("green") and whole("blue"))
        greens = published("green")
        marks = {colour: sweep_passes(cf, colour) for colour in worlds}
        wait_for("three sweep passes of each", lambda: all(sweep_passes(cf, c) >= marks[c] + 3 for c in marks))
        assert published("green") == greens

        # Blue deletes a route: blue removes its objects, and only those.
        blues = published("blue")
        blue.delete_route("old", "team-blue")
        wait_for("blue's old route unpublished", lambda: published("blue")["old"] == {
            "records": [], "rules": [], "apps": {}, "policies": {}, "tokens": {}})
        marks = {colour: sweep_passes(cf, colour) for colour in worlds}
        wait_for("three more sweep passes of each", lambda: all(sweep_passes(cf, c) >= marks[c] + 3 for c in marks))
        assert published("green") == greens and published("blue")["site"] == blues["site"]
        assert green.ready("site", "team-green").get("status") == "True"


# --- a hostname change that fails half-way ------------------------------------------------------------------


def test_a_hostname_change_failing_half_way_keeps_the_old_claim_and_removes_the_old_objects_later(
        world: World) -> None:
    foreign = hand_made_record(world, "foreign.example.com", "elsewhere.example.org")
    home(world, resync=1.0)
    world.route("web", "a.example.com", **PROTECTED, **{"serviceToken.enabled": "true"})
    world.wait_ready("web")
    [old_app] = world.apps("a.example.com")

    world.cf.faults.fail(op="access.apps.delete", status=503)  # until cleared
    world.annotate("web", hostname="b.example.com")
    failing = world.wait_reason("web", "CloudflareUnavailable")
    assert "a.example.com" in failing["message"], failing
    assert world.records("a.example.com") == [] and world.rule("a.example.com") is None  # routing went first

    # Another route asking for the old hostname meanwhile waits: nothing of web's is handed to it.
    world.route("late", "a.example.com", backend=("late", 80), **PROTECTED)
    refused = world.wait_reason("late", "HostnameConflict")
    assert refused["message"] == "hostname a.example.com is already claimed by HTTPRoute apps/web"
    assert [app["id"] for app in world.apps("a.example.com")] == [old_app["id"]]
    # Web keeps the old claim, which still records the Access application and the token left to remove.
    claim = world.claims()["a.example.com"]
    assert claim["source"] == "HTTPRoute/apps/web" and claim["access_app"]["id"] == old_app["id"]
    assert "service_token" in claim

    world.cf.faults.clear()
    world.wait_ready("web", timeout=30.0)
    world.wait_ready("late", timeout=30.0)
    [late_app] = world.apps("a.example.com")
    assert late_app["id"] != old_app["id"]  # late's own, made for it
    assert [t["name"] for t in world.tokens()] == ["cfzt-b.example.com"]  # web's old token is gone: no leak
    [record] = world.records("a.example.com")
    assert record["comment"].endswith("src=HTTPRoute/apps/late")
    assert world.rule("a.example.com")["service"] == "http://late.apps.svc.cluster.local:80"  # type: ignore[index]
    assert {h: c["source"] for h, c in world.claims().items()} == {
        "a.example.com": "HTTPRoute/apps/late", "b.example.com": "HTTPRoute/apps/web"}
    assert world.records("foreign.example.com") == [foreign]


# --- two routes, one hostname ---------------------------------------------------------------------------------


def test_the_holder_keeps_its_hostname_and_the_other_route_publishes_its_own_once_it_is_gone(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    foreign = hand_made_app(world, "someone-elses", "foreign.example.com")
    home(world, resync=1.0)
    world.route("second", "shared.example.com", backend=("other", 9090), **PROTECTED, enabled="false")
    created = world.get_route("second")["metadata"]["creationTimestamp"]  # in seconds
    # "second" is the older route by a whole second (creation times have seconds):
    wait_for("the next second", lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") > created)
    world.route("first", "shared.example.com", **PROTECTED, **{"serviceToken.enabled": "true"})
    world.wait_ready("first")
    world.annotate("second", enabled="true")
    refused = world.wait_reason("second", "HostnameConflict")
    assert refused["message"] == "hostname shared.example.com is already claimed by HTTPRoute apps/first"
    held = objects_of(world.snapshot(), world.zone, "shared.example.com")

    # The holder's state ConfigMap (a record of the past, not proof) is lost: it still holds the hostname.
    world.core.delete_namespaced_config_map("cfzt-apps-first", OPNS)
    wait_for("first re-checked at a resync", lambda: world.state("first") is not None)
    wait_resyncs(caplog, 2)  # more resyncs of both
    assert world.ready("first").get("status") == "True" and world.ready("second").get("reason") == "HostnameConflict"
    assert objects_of(world.snapshot(), world.zone, "shared.example.com") == held
    assert world.rule("shared.example.com")["service"] == "http://web.apps.svc.cluster.local:8080"  # type: ignore[index]

    # The holder goes: its objects are removed, and the other route publishes objects of its own.
    world.delete_route("first")
    world.wait_ready("second")
    [record] = world.records("shared.example.com")
    assert record["comment"].endswith("src=HTTPRoute/apps/second")
    assert world.rule("shared.example.com")["service"] == "http://other.apps.svc.cluster.local:9090"  # type: ignore[index]
    [app] = world.apps("shared.example.com")
    assert app["id"] not in held["apps"] and world.tokens() == []  # first's token went with it
    assert world.claims()["shared.example.com"]["source"] == "HTTPRoute/apps/second"
    assert world.snapshot()["access_apps"][foreign["id"]] == foreign
    assert any(reason == "HostnameHandedOver" for _, reason, _ in world.events("first"))


# --- issue item 3 for this door: ids in the state ConfigMap are hints, never proof -------------------------


def test_a_state_naming_foreign_ids_deletes_only_what_the_claim_records(world: World) -> None:
    portal = hand_made_app(world, "Corp SSO portal", "sso.example.com")
    ci_token = hand_made_token(world, "ci")
    home(world)
    world.route("web", "web.example.com", **PROTECTED, **{"serviceToken.enabled": "true"})
    world.wait_ready("web")
    world.quiesce()
    # A backup restored from elsewhere (or a careless edit) puts foreign ids into the route's state.
    world.core.patch_namespaced_config_map("cfzt-apps-web", OPNS, {"data": {
        "access_app_id": portal["id"], "service_token_id": ci_token["id"]}})

    world.delete_route("web")
    wait_for("cleanup", lambda: world.state("web") is None)
    assert world.apps("web.example.com") == [] and world.tokens("cfzt-web.example.com") == []  # ours: gone
    assert world.records("web.example.com") == [] and world.rule("web.example.com") is None
    snapshot = world.snapshot()
    assert snapshot["access_apps"][portal["id"]] == portal and snapshot["service_tokens"][ci_token["id"]] == ci_token
    assert world.claims() == {}


def test_a_rule_write_whose_answer_is_lost_keeps_its_intent_and_the_route_converges(world: World) -> None:
    """The tunnel configuration PUT is applied but every answer is lost (the client's replays too): the intent
    recorded before it stays, so the next attempt proves the rule it finds there (our service) instead of calling
    our own rule foreign for ever."""
    home(world)
    world.cf.faults.drop_after_write("tunnels.config.put", count=3)
    world.route("web", "web.example.com")
    world.wait_ready("web", timeout=60.0)
    [rule] = [r for r in world.ingress() if r.get("hostname") == "web.example.com"]
    claim = world.claims()["web.example.com"]
    assert claim["tunnel_rule"]["id"] == world.tunnel and claim["tunnel_rule"]["service"] == rule["service"]
    assert not [e for e in world.events("web") if e[1] == "HostnameConflict"]
