"""The ChuteGateway door's decision (pure): the checks in their order, the changes in the order the safety rules
need (Access before the rule and the CNAME on the way in; rule and CNAME before the application on the way out),
creates for what the ledger does not record and ensures for what it does, and the change set filtered whole by
the write policy and dry-run (upsert-only never deletes, create-only never updates, dry-run makes no create)."""

from __future__ import annotations

from typing import Any

import pytest

from chutes import conditions as c
from chutes.authorization import HostnameRules
from chutes.frontdoors.changes import admit, describe
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.gateways.decide import check, decide

TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
FQDN = "blog.example.com"
SERVICE = "http://web.blog.svc.cluster.local:8080"


def body(name: str = "blog", namespace: str = "blog", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"configRef": "default", "hostname": "blog", "service": {"name": "web", "port": 8080},
                            "access": {"allowedEmails": ["alice@example.org"]}}
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {**base, **spec}}


def want(**spec: Any) -> d.DesiredGateway:
    desired = check(body(**spec), "example.com", "default", None, d.DEFAULT_ALLOWED_IMAGES)
    assert isinstance(desired, d.DesiredGateway), desired
    return desired


PUBLISHED = {"access_app": {"id": "app1", "since": "t"}, "access_policy": {"id": "pol1", "app": "app1"},
             "tunnel_rule": {"id": TUNNEL_ID, "tunnel": TUNNEL_ID, "service": SERVICE}, "dns": {"zone": "z"}}
TUNNEL = {"tunnel": {"id": TUNNEL_ID, "since": "t"}}


def plan(decision: Any) -> list[tuple[str, str, str, bool]]:
    return [(ch.action, ch.kind, ch.name, ch.ensure) for ch in decision.changes]


def test_a_new_gateway_creates_access_before_the_rule_and_the_cname_then_its_connector() -> None:
    decision = decide(want(), {}, {})
    assert plan(decision) == [
        ("create", "tunnel", "chute-blog-blog", False),
        ("create", "access_app", FQDN, False),
        ("create", "access_policy", FQDN, False),
        ("create", "tunnel_rule", FQDN, False),
        ("create", "dns_record", FQDN, False),
        ("update", "Secret", "chute-blog-tunnel-token", True),
        ("update", "Deployment", "chute-blog-cloudflared", True),
    ]
    needs = {ch.ref: ch.needs for ch in decision.changes}
    assert needs == {
        "tunnel/chute-blog-blog": (),
        f"access_app/{FQDN}": ("tunnel/chute-blog-blog",),
        f"access_policy/{FQDN}": (f"access_app/{FQDN}",),
        f"tunnel_rule/{FQDN}": ("tunnel/chute-blog-blog", f"access_policy/{FQDN}"),
        f"dns_record/{FQDN}": (f"tunnel_rule/{FQDN}",),
        "Secret/chute-blog-tunnel-token": ("tunnel/chute-blog-blog",),
        "Deployment/chute-blog-cloudflared": ("Secret/chute-blog-tunnel-token",),
    }
    assert decision.problems == ()
    assert [describe(ch) for ch in decision.changes][:5] == [
        "+ create tunnel chute-blog-blog",
        f"+ create Access application {FQDN} chute-blog-blog, sessions of 24h",
        f"+ create Access policy {FQDN} chute-operator-allow: 1 email(s) and 0 domain(s) allowed",
        f"+ create tunnel rule {FQDN} -> {SERVICE}",
        f"+ create DNS record {FQDN} CNAME -> the tunnel (proxied)",
    ]


def test_what_the_ledger_records_is_ensured_not_created_in_the_same_order() -> None:
    decision = decide(want(), PUBLISHED, TUNNEL)
    assert [(a, k, e) for a, k, _, e in plan(decision)] == [
        ("update", "tunnel", True), ("update", "access_app", True), ("update", "access_policy", True),
        ("update", "tunnel_rule", True), ("update", "dns_record", True), ("update", "Secret", True),
        ("update", "Deployment", True)]
    cname = f"~ update DNS record {FQDN} CNAME -> {TUNNEL_ID}.cfargotunnel.com (proxied)"
    assert describe(decision.changes[4]) == cname


def test_a_rule_recorded_in_another_tunnel_or_only_intended_is_created() -> None:
    elsewhere = {**PUBLISHED, "tunnel_rule": {"id": "other-tunnel", "tunnel": "other-tunnel", "service": SERVICE}}
    intended = {**PUBLISHED, "tunnel_rule": {"since": "t", "tunnel": TUNNEL_ID, "service": SERVICE}}
    for claim in (elsewhere, intended):
        rule = next(ch for ch in decide(want(), claim, TUNNEL).changes if ch.kind == "tunnel_rule")
        assert (rule.action, rule.ensure) == ("create", False)
    no_tunnel = next(ch for ch in decide(want(), PUBLISHED, {}).changes if ch.kind == "tunnel_rule")
    assert (no_tunnel.action, no_tunnel.ensure) == ("create", False)  # a new tunnel has no rule yet


def test_access_switched_off_removes_the_application_only_after_the_rule_and_the_cname() -> None:
    decision = decide(want(access={"public": True}), PUBLISHED, TUNNEL)
    assert [(a, k) for a, k, _, _ in plan(decision)] == [
        ("update", "tunnel"), ("update", "tunnel_rule"), ("update", "dns_record"), ("delete", "access_app"),
        ("update", "Secret"), ("update", "Deployment")]
    rule, drop = decision.changes[1], decision.changes[3]
    assert rule.needs == ("tunnel/chute-blog-blog",)  # nothing to protect: no Access first
    assert drop.needs == (f"dns_record/{FQDN}",)
    assert describe(drop) == f"- delete Access application {FQDN} (access.public is true)"
    assert [k for _, k, _, _ in plan(decide(want(access={"public": True}), {}, {}))] == [
        "tunnel", "tunnel_rule", "dns_record", "Secret", "Deployment"]  # no application recorded: none to drop


def test_earlier_hostnames_go_last_after_the_new_cname() -> None:
    decision = decide(want(), PUBLISHED, TUNNEL, ["old.example.com", "older.example.com"])
    assert plan(decision)[-2:] == [("delete", "hostname", "old.example.com", False),
                                   ("delete", "hostname", "older.example.com", False)]
    assert all(ch.needs == (f"dns_record/{FQDN}",) for ch in decision.changes[-2:])
    assert describe(decision.changes[-1]) == ("- delete hostname older.example.com (tunnel rule and DNS records, "
                                              "then Access application)")


def test_upsert_only_never_deletes_and_lets_everything_else_through() -> None:
    decision = decide(want(access={"public": True}), PUBLISHED, TUNNEL, ["old.example.com"])
    admitted = admit(decision.changes, "upsert-only")
    assert [(ch.action, ch.kind) for ch, _ in admitted.held] == [("delete", "access_app"), ("delete", "hostname")]
    assert {why for _, why in admitted.held} == {"policy upsert-only"}
    assert all(ch.action != "delete" for ch in admitted.now) and len(admitted.now) == 5


def test_create_only_never_updates_itself_leaves_the_ensures_to_the_core_and_still_creates() -> None:
    published = admit(decide(want(), PUBLISHED, TUNNEL, ["old.example.com"]).changes, "create-only")
    assert [ch.kind for ch in published.now] == ["tunnel", "access_app", "access_policy", "tunnel_rule",
                                                 "dns_record", "Secret", "Deployment"]
    assert all(ch.ensure for ch in published.now if ch.action == "update")  # the core's gate holds what differs
    assert [(ch.action, why) for ch, why in published.held] == [("delete", "policy create-only")]
    fresh = admit(decide(want(), {}, {}).changes, "create-only")
    assert fresh.held == () and [ch.action for ch in fresh.now][:5] == ["create"] * 5


def test_dry_run_makes_no_create_and_nothing_that_needs_one() -> None:
    admitted = admit(decide(want(), {}, {}).changes, "sync", dry_run=True)
    assert admitted.now == ()
    assert [(ch.kind, why) for ch, why in admitted.held] == [
        ("tunnel", "dry-run"), ("access_app", "dry-run"), ("access_policy", "dry-run"), ("tunnel_rule", "dry-run"),
        ("dns_record", "dry-run"), ("Secret", "needs tunnel/chute-blog-blog"),
        ("Deployment", "needs Secret/chute-blog-tunnel-token")]
    assert admitted.lines()[0] == "+ create tunnel chute-blog-blog (held: dry-run)"


def test_dry_run_of_a_published_gateway_ensures_what_exists_and_holds_a_new_application_and_what_needs_it() -> None:
    no_app = {key: value for key, value in PUBLISHED.items() if not key.startswith("access")}
    admitted = admit(decide(want(), no_app, TUNNEL, ["old.example.com"]).changes, "sync", dry_run=True)
    assert [ch.kind for ch in admitted.now] == ["tunnel", "Secret", "Deployment"]
    assert [(ch.kind, why) for ch, why in admitted.held] == [
        ("access_app", "dry-run"), ("access_policy", "dry-run"), ("tunnel_rule", f"needs access_policy/{FQDN}"),
        ("dns_record", f"needs tunnel_rule/{FQDN}"), ("hostname", "dry-run")]


def test_checks_run_in_order_and_say_why() -> None:
    def refusal(bad: dict[str, Any], rules: HostnameRules | None = None, owner: str = "default",
                namespace: str = "blog") -> Any:
        return check(body(namespace=namespace, **bad), "example.com", owner, rules, d.DEFAULT_ALLOWED_IMAGES)

    assert refusal({"hostname": "blog.elsewhere.org"})[0] == c.HOSTNAME_OUTSIDE_ZONE
    assert refusal({"access": {}})[0] == c.INVALID_SPEC
    assert refusal({"cloudflared": {"image": "evil/cloudflared"}})[0] == c.IMAGE_NOT_ALLOWED
    rules = HostnameRules.from_data({"rules": [{"namespaces": ["blog"], "hostnames": ["*.other.example.com"]}]})
    assert refusal({}, rules)[0] == c.HOSTNAME_NOT_AUTHORIZED
    assert refusal({"access": {}}, rules)[0] == c.INVALID_SPEC  # the spec first
    assert refusal({}, HostnameRules.allow_all()) == want()
    reason, message = refusal({}, owner="o" * 32, namespace="n" * 63)
    assert (reason, "cannot fit" in message) == (c.INVALID_SPEC, True)  # no room for the ownership marker


@pytest.mark.parametrize("policy", ["sync", "upsert-only", "create-only"])
def test_an_ensure_is_held_by_a_held_need_whatever_the_policy(policy: str) -> None:
    admitted = admit(decide(want(), PUBLISHED, {}).changes, policy, dry_run=True)  # the tunnel to create
    assert admitted.now == () and {ch.kind for ch, _ in admitted.held} >= {"access_app", "Secret", "Deployment"}
