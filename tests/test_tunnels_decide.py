"""The Tunnel door's *decide* step, attacked from outside as a pure function: what a TunnelBinding or annotated
Service gathered -> the exact change set (order, needs) and problems; and that set admitted under each write policy
and dry-run (upsert-only never deletes, create-only never updates, dry-run holds everything; a rule in a locally
configured tunnel's ConfigMap follows the ledger under every policy)."""

from __future__ import annotations

import dataclasses
from typing import Any

from chutes import conditions as c
from chutes.authorization import HostnameRules, Rule
from chutes.claims import Claim
from chutes.cloudflare_core import AppPolicySpec, IngressRule
from chutes.frontdoors import changes
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels.decide import Inputs, Route, Step, app_name, decide

SOURCE = "TunnelBinding/apps/web"
ALLOW = AppPolicySpec(name=m.POLICY_NAME, decision="allow", include=({"email": {"email": "a@corp.example"}},))


def route(fqdn: str, target: str | None = None) -> Route:
    subject = m.Subject(name=fqdn.split(".")[0], fqdn=fqdn, protocol=None, path=None, target=target,
                        origin_request={})
    service = target or f"http://{subject.name}.apps.svc:80"
    return Route(subject, service, IngressRule(hostname=fqdn, service=service))


def claim(fqdn: str, **entries: dict[str, Any]) -> Claim:
    return Claim(kind="hostname", key=fqdn, source=SOURCE, entries=entries, claimed_at="2026-01-01T00:00:00Z")


def inputs(*routes: Route, **fields: Any) -> Inputs:
    base = Inputs(source=SOURCE, namespace="apps", tunnel_namespace="apps", tunnel_id="t1", owner_id="o",
                  routes=routes, names={r.subject.fqdn: "" for r in routes})
    return dataclasses.replace(base, **fields)


def lines(decision: changes.Decision[Step]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(change.action, change.kind, change.name, change.needs) for change in decision.changes]


def test_on_the_way_in_access_comes_before_the_rule_and_the_cname() -> None:
    decision = decide(inputs(route("a.example.com"), allow=ALLOW))
    assert decision.problems == ()
    assert lines(decision) == [
        ("create", "identity_provider", "one-time PIN", ()),
        ("create", "access_app", app_name("a.example.com", "o"), ("identity_provider/one-time-pin",)),
        ("create", "access_policy", m.POLICY_NAME, ("access_app/a.example.com",)),
        ("create", "tunnel_rule", "a.example.com", ("access_policy/a.example.com",)),
        ("create", "dns_record", "a.example.com", ("tunnel_rule/a.example.com",)),
    ]
    assert decision.changes[-1].detail == "CNAME -> t1.cfargotunnel.com"


def test_what_the_claim_records_is_an_update_and_a_public_hostname_has_no_access() -> None:
    held = claim("a.example.com", tunnel_rule={"id": "t1", "service": "http://a.apps.svc:80"},
                 dns={"id": "r1", "zone": "z"})
    decision = decide(inputs(route("a.example.com"), claims={"a.example.com": held}))
    assert lines(decision) == [("update", "tunnel_rule", "a.example.com", ()),
                               ("update", "dns_record", "a.example.com", ("tunnel_rule/a.example.com",))]


def test_on_the_way_out_rule_then_records_then_access_and_the_last_releases_the_claim() -> None:
    gone = claim("old.example.com", tunnel_rule={"id": "t1", "service": "x"}, dns={"id": "r"},
                 access_app={"id": "app1", "name": app_name("old.example.com", "o")})
    decision = decide(inputs(route("a.example.com"), claims={"old.example.com": gone}))
    assert lines(decision)[2:] == [
        ("delete", "tunnel_rule", "old.example.com", ()),
        ("delete", "dns_record", "old.example.com", ("tunnel_rule/old.example.com",)),
        ("delete", "access_app", app_name("old.example.com", "o"), ("dns_record/old.example.com",)),
    ]
    assert [change.payload.release for change in decision.changes[2:]] == [False, False, True]


def test_access_no_longer_asked_goes_after_the_rule_and_dns_switched_off_removes_our_cname() -> None:
    held = claim("a.example.com", tunnel_rule={"id": "t1"}, dns={"id": "r1"}, access_app={"id": "app1", "name": "n"})
    decision = decide(inputs(route("a.example.com"), dns=False, claims={"a.example.com": held}))
    assert lines(decision) == [
        ("update", "tunnel_rule", "a.example.com", ()),
        ("delete", "dns_record", "a.example.com", ("tunnel_rule/a.example.com",)),
        ("delete", "access_app", "n", ("tunnel_rule/a.example.com", "dns_record/a.example.com")),
    ]


def test_a_rule_recorded_in_another_tunnel_leaves_it_before_it_is_written_in_the_new_one() -> None:
    held = claim("a.example.com", tunnel_rule={"tunnel": "t0", "id": "t0", "service": "http://a.apps.svc:80"},
                 dns={"id": "r1", "zone": "z"}, access_app={"id": "app1", "name": app_name("a.example.com", "o")},
                 access_policy={"id": "p1"})
    decision = decide(inputs(route("a.example.com"), allow=ALLOW, claims={"a.example.com": held}))
    assert lines(decision)[1:] == [
        ("update", "access_app", app_name("a.example.com", "o"), ("identity_provider/one-time-pin",)),
        ("update", "access_policy", m.POLICY_NAME, ("access_app/a.example.com",)),
        ("delete", "tunnel_rule", "a.example.com", ()),
        ("create", "tunnel_rule", "a.example.com", ("access_policy/a.example.com", "tunnel_rule/a.example.com/moved")),
        ("update", "dns_record", "a.example.com", ("tunnel_rule/a.example.com",)),
    ]
    moved = decision.changes[3]
    assert moved.detail == "(moved out of tunnel t0)" and not moved.payload.withdrawn and not moved.payload.release
    # upsert-only never deletes: the move is held whole (the old rule stays proven, the CNAME on the old tunnel)
    held_back = {(change.action, change.kind) for change, _ in changes.admit(decision.changes, "upsert-only").held}
    assert held_back == {("delete", "tunnel_rule"), ("create", "tunnel_rule"), ("update", "dns_record")}


def test_adyanths_ownership_txt_goes_once_the_cname_is_ours() -> None:
    decision = decide(inputs(route("a.example.com"), names={"a.example.com": "_managed.a.example.com"}))
    assert lines(decision)[-1] == ("delete", "dns_record", "_managed.a.example.com", ("dns_record/a.example.com",))


def test_a_shared_target_outside_the_namespace_is_refused_before_anything() -> None:
    gone = claim("old.example.com", tunnel_rule={"id": "t1"})
    decision = decide(inputs(route("a.example.com", target="http://db.other.svc:5432"), tunnel_namespace=None,
                             claims={"old.example.com": gone}))
    assert decision.changes == ()
    assert [reason for reason, _ in decision.problems] == [c.INVALID_SPEC]
    assert "subject a" in decision.problems[0][1]
    allowed = decide(inputs(route("a.example.com", target="http://db.other.svc:5432"), tunnel_namespace=None,
                            shared_targets=("db.other.svc",)))
    assert allowed.problems == ()


def test_a_hostname_outside_the_rules_withdraws_everything_published() -> None:
    rules = HostnameRules([Rule(namespaces=("apps",), hostnames=("*.example.com",))])
    published = claim("a.example.com", tunnel_rule={"id": "t1"})
    decision = decide(inputs(route("a.example.com"), route("b.example.org"), rules=rules, names=None,
                             claims={"a.example.com": published}))
    assert [reason for reason, _ in decision.problems] == [c.HOSTNAME_NOT_AUTHORIZED]
    assert lines(decision) == [("delete", "tunnel_rule", "a.example.com", ()),
                               ("delete", "dns_record", "a.example.com", ("tunnel_rule/a.example.com",))]


def test_a_conflict_found_by_the_read_blocks_every_change_and_unread_names_decide_nothing() -> None:
    conflict = decide(inputs(route("a.example.com"), conflicts=((c.HOSTNAME_CONFLICT, "held by X"),)))
    assert conflict == changes.Decision((), ((c.HOSTNAME_CONFLICT, "held by X"),))
    assert decide(inputs(route("a.example.com"), names=None)) == changes.Decision()


def _everything(local: bool = False) -> changes.Decision[Step]:
    gone = claim("old.example.com", tunnel_rule={"id": "t1", **({"local": "Tunnel/apps/web"} if local else {})},
                 access_app={"id": "app1", "name": "n"})
    held = claim("a.example.com", tunnel_rule={"id": "t1"}, dns={"id": "r1"})
    return decide(inputs(route("a.example.com"), route("b.example.com"), allow=ALLOW, local=local,
                         claims={"a.example.com": held, "old.example.com": gone}))


def test_upsert_only_never_deletes() -> None:
    admitted = changes.admit(_everything().changes, "upsert-only")
    assert [change.action for change in admitted.now if change.action == "delete"] == []
    assert {change.name for change, _ in admitted.held} == {"old.example.com", "n"}


def test_create_only_never_updates_and_holds_what_needs_a_held_change() -> None:
    admitted = changes.admit(_everything().changes, "create-only")
    assert {change.action for change in admitted.now} == {"create"}
    held = {(change.kind, change.name): why for change, why in admitted.held}
    assert held[("tunnel_rule", "a.example.com")] == "policy create-only"
    assert held[("dns_record", "a.example.com")] == "policy create-only"
    assert ("dns_record", "b.example.com") not in held


def test_dry_run_holds_everything() -> None:
    decision = _everything()
    admitted = changes.admit(decision.changes, "sync", dry_run=True)
    assert admitted.now == () and len(admitted.held) == len(decision.changes)
    assert {why for _, why in admitted.held} == {"dry-run"}


def test_a_configmap_rule_follows_the_ledger_under_every_policy_but_not_under_dry_run() -> None:
    decision = _everything(local=True)
    rules = [change for change in decision.changes if change.kind == "tunnel_rule"]
    assert rules and not any(change.governed for change in rules)
    for policy in ("upsert-only", "create-only"):
        now = changes.admit(decision.changes, policy).now
        assert [(change.action, change.name) for change in now if change.kind == "tunnel_rule"] == [
            ("update", "a.example.com"), ("create", "b.example.com"), ("delete", "old.example.com")]
    assert changes.admit(decision.changes, "upsert-only", dry_run=True).now == ()
