"""The HTTPRoute door's *decide* step, attacked from outside as a pure function: what a route's read gathered -> the
exact change set (order, needs, ensures) and problems; and that set admitted under each write policy and dry-run
(the creates and updates are the core's to filter, field by field; the deletes are held by a policy that never
deletes and by dry-run; the state and token Secret follow the door under every policy, not under dry-run)."""

from __future__ import annotations

import dataclasses
from typing import Any

from chutes import conditions as c
from chutes.authorization import HostnameRules, Rule
from chutes.claims import Claim
from chutes.frontdoors import changes
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.decide import Inputs, authorized, check, decide, reusable
from chutes.frontdoors.httproutes.merge import AccessSettings, DnsOnlySettings, RouteSettings, ServiceTokenSettings
from chutes.frontdoors.retries import POLICY_RETRY

HOST = "app.example.com"
SOURCE = "HTTPRoute/apps/web"
TUNNEL, OTHER_TUNNEL = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
ACCOUNT = "a" * 32
APP, POLICY, TOKEN = "cfzt-app.example.com", "cfzt-app.example.com-allow", "cfzt-app.example.com"
PROTECTED = AccessSettings(enabled=True, allow_emails=("alice@example.org",))


def tenant(**spec: Any) -> d.Tenant:
    return d.tenant_from_body({"metadata": {"name": "home", "namespace": "ops"},
                               "spec": {"accountId": ACCOUNT, "tunnelId": TUNNEL, "credentialRef": {"name": "cf"},
                                        **spec}})


def settings(**fields: Any) -> RouteSettings:
    return RouteSettings(**{"hostname": HOST, "tenant": "home", "template": None, "tunnel_id": None,
                            "origin_service": "http://web.apps.svc.cluster.local:80", **fields})


def claim(**entries: dict[str, Any]) -> Claim:
    return Claim(kind="hostname", key=HOST, source=SOURCE, entries=entries, claimed_at="2026-01-01T00:00:00Z")


def earlier(key: str) -> Claim:
    """The route's claim on a hostname it published before."""
    return dataclasses.replace(claim(**RECORDED), key=key)


def state(**data: str) -> s.RouteState:
    return s.RouteState("apps", "web", {"hostname": HOST, "tenant_name": "home", "annotation_hash": "h", **data})


def inputs(route: RouteSettings | None = None, **fields: Any) -> Inputs:
    route = route or settings()
    record = (d.address_record(HOST, "192.0.2.7", route.dns_only, SOURCE) if route.dns_only.enabled
              else d.tunnel_cname(HOST, route.tunnel_id or TUNNEL, SOURCE))
    rule = None if route.dns_only.enabled else d.ingress_rule(route)
    base = Inputs("apps", "web", route, tenant(), "default", claim(), None, "z1", record, rule)
    return dataclasses.replace(base, **fields)


def lines(decision: changes.Decision[str]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(change.action, change.kind, change.name, change.needs) for change in decision.changes]


RECORDED = {"access_app": {"id": "app1", "account": ACCOUNT, "name": APP},
            "access_policy": {"id": "p1", "app": "app1"},
            "service_token": {"id": "tok1", "account": ACCOUNT, "name": TOKEN},
            "tunnel_rule": {"id": TUNNEL, "tunnel": TUNNEL, "account": ACCOUNT},
            "dns": {"id": "r1", "zone": "z1", "type": "CNAME"}}


def test_a_first_publish_records_its_state_then_access_comes_before_the_rule_and_the_cname() -> None:
    decision = decide(inputs(settings(access=PROTECTED, service_token=ServiceTokenSettings(enabled=True))))
    assert decision.problems == ()
    assert lines(decision) == [
        ("create", "ConfigMap", "cfzt-apps-web", ()),
        ("create", "access_app", APP, ()),
        ("create", "access_policy", POLICY, (f"access_app/{APP}",)),
        ("create", "service_token", TOKEN, ()),
        ("update", "Secret", "cfzt-svctoken-web", (f"service_token/{TOKEN}",)),
        ("create", "tunnel_rule", HOST, (f"access_policy/{POLICY}",)),
        ("create", "dns_record", HOST, (f"tunnel_rule/{HOST}",)),
    ]
    assert [change.ensure for change in decision.changes] == [False, True, True, True, True, True, True]
    assert not decision.changes[0].governed  # the door's own record: no write policy holds it
    assert decision.changes[-1].detail == f"CNAME -> {TUNNEL}.cfargotunnel.com"


def test_what_the_claim_records_is_an_update_and_the_steady_state_writes_no_state_first() -> None:
    decision = decide(inputs(settings(access=PROTECTED, service_token=ServiceTokenSettings(enabled=True)),
                             claim=claim(**RECORDED), previous=state()))
    assert [(change.action, change.kind) for change in decision.changes] == [
        ("update", "access_app"), ("update", "access_policy"), ("update", "service_token"), ("update", "Secret"),
        ("update", "tunnel_rule"), ("update", "dns_record")]


def test_access_and_token_switched_off_go_after_the_routing_with_the_tokens_secret() -> None:
    decision = decide(inputs(claim=claim(**RECORDED), previous=state(service_token_secret_name="cfzt-svctoken-web")))
    assert lines(decision) == [
        ("update", "tunnel_rule", HOST, ()),
        ("update", "dns_record", HOST, (f"tunnel_rule/{HOST}",)),
        ("delete", "access_app", HOST, (f"dns_record/{HOST}",)),
        ("delete", "service_token", HOST, ()),
        ("delete", "Secret", "cfzt-svctoken-web", ()),
    ]
    assert decision.changes[-1].payload == "cfzt-svctoken-web" and not decision.changes[-1].governed


def test_allow_rules_removed_remove_the_allow_policy_as_an_ensure_the_core_looks_up() -> None:
    decision = decide(inputs(settings(access=AccessSettings(enabled=True, existing_policy_names=("Team",))),
                             claim=claim(**RECORDED), previous=state(), policy_ids=("pol-team",)))
    [policy] = [change for change in decision.changes if change.kind == "access_policy"]
    assert (policy.action, policy.ensure, policy.needs) == ("delete", True, (f"access_app/{APP}",))


def test_dns_only_replaces_the_rule_and_an_address_of_the_other_type_goes_after_the_new_one() -> None:
    route = settings(origin_service="", dns_only=DnsOnlySettings(enabled=True, static_ip="192.0.2.7"))
    recorded = {**RECORDED, "dns": {"id": "r1", "zone": "z1", "type": "AAAA"}}
    decision = decide(inputs(route, claim=claim(**recorded), previous=state(), ))
    assert lines(decision)[:1] == [("update", "dns_record", HOST, ())]
    assert [(change.action, change.kind, change.payload) for change in decision.changes[1:]] == [
        ("delete", "dns_record", "AAAA"), ("delete", "tunnel_rule", ""), ("delete", "access_app", ""),
        ("delete", "service_token", "")]
    assert decision.changes[0].detail == "A -> 192.0.2.7"


def test_a_rule_recorded_in_another_tunnel_is_removed_before_the_new_one_is_written() -> None:
    decision = decide(inputs(settings(tunnel_id=OTHER_TUNNEL), claim=claim(tunnel_rule=RECORDED["tunnel_rule"]),
                             previous=state()))
    assert [(change.action, change.kind, change.payload) for change in decision.changes] == [
        ("delete", "tunnel_rule", TUNNEL), ("update", "tunnel_rule", ""), ("create", "dns_record", "")]
    assert decision.changes[2].detail == f"CNAME -> {OTHER_TUNNEL}.cfargotunnel.com"


def test_the_claims_of_earlier_hostnames_are_torn_down_first_and_a_tenant_change_starts_afresh() -> None:
    moved = inputs(claim=claim(**RECORDED), previous=state(hostname="old.example.com"),
                   old=(earlier("old.example.com"),))
    assert lines(decide(moved))[:2] == [("delete", "hostname", "old.example.com", ()),
                                        ("create", "ConfigMap", "cfzt-apps-web", ())]
    retenanted = inputs(claim=claim(**RECORDED), previous=state(tenant_name="before"), old=(claim(**RECORDED),),
                        same_key=True)
    assert [(change.action, change.kind) for change in decide(retenanted).changes] == [
        ("delete", "hostname"), ("create", "ConfigMap"), ("create", "tunnel_rule"), ("create", "dns_record")]


def test_a_policy_that_does_not_resolve_takes_the_routing_down_and_nothing_else() -> None:
    decision = decide(inputs(settings(access=PROTECTED), claim=claim(**RECORDED), missing=("Team",)))
    assert lines(decision) == [("delete", "tunnel_rule", HOST, ()), ("delete", "dns_record", HOST, ())]
    [(reason, message)] = decision.problems
    assert reason == c.POLICY_NOT_FOUND and "'Team'" in message and f"account {ACCOUNT}" in message
    assert POLICY_RETRY > 0
    assert decide(inputs(missing=("Team",))).changes == ()  # nothing recorded: nothing to take down


def test_a_state_name_of_another_route_or_an_unreachable_old_tenant_refuses_everything() -> None:
    taken = decide(inputs(claim=claim(**RECORDED), taken="the state ConfigMap cfzt-apps-web is another route's"))
    assert taken == changes.Decision((), ((c.INVALID_SPEC, "the state ConfigMap cfzt-apps-web is another route's"),))
    elsewhere = {**RECORDED, "dns": {"id": "r1", "zone": "z9", "type": "CNAME"}}
    gone = decide(inputs(claim=claim(**elsewhere), gone_tenant="before"))
    assert gone.changes == () and gone.problems[0][0] == c.TENANT_NOT_FOUND and "zone z9" in gone.problems[0][1]
    assert reusable(claim(**RECORDED), "before", tenant(), "z1") is None
    assert decide(inputs(claim=claim(**RECORDED), gone_tenant="before")).problems == ()


def test_the_checks_before_the_claim() -> None:
    rules = HostnameRules([Rule(namespaces=("apps",), hostnames=("*.example.org",))])
    refused = authorized(rules, "apps", HOST)
    assert refused is not None and refused[0] == c.HOSTNAME_NOT_AUTHORIZED
    assert authorized(HostnameRules.allow_all(), "apps", HOST) is None
    assert (check(settings(), tenant(), "default", f"HTTPRoute/{'n' * 90}/web", []) or ("",))[0] == c.INVALID_SPEC
    assert (check(settings(tunnel_id=OTHER_TUNNEL), tenant(), "default", SOURCE, []) or ("",))[0] == c.INVALID_SPEC
    assert check(settings(tunnel_id=OTHER_TUNNEL), tenant(allowedTunnelIds=[OTHER_TUNNEL]), "default", SOURCE,
                 []) is None


def test_admitted_under_each_policy_and_dry_run() -> None:
    decision = decide(inputs(settings(access=PROTECTED), claim=claim(**RECORDED),
                             previous=state(service_token_secret_name="cfzt-svctoken-web"),
                             old=(earlier("old.example.com"),)))
    made = {policy: [(ch.action, ch.kind) for ch in changes.admit(decision.changes, policy).now]
            for policy in ("sync", "upsert-only", "create-only")}
    assert ("delete", "hostname") in made["sync"] and ("delete", "service_token") in made["sync"]
    for policy in ("upsert-only", "create-only"):  # no delete made, but the door's own records follow it
        assert [change for change in made[policy] if change[0] == "delete"] == [("delete", "Secret")]
        assert ("update", "access_app") in made[policy] and ("update", "dns_record") in made[policy]
    dry = changes.admit(decision.changes, "sync", dry_run=True)
    assert all(change.ensure for change in dry.now)  # the core's dry-run: it writes nothing and says what it would
    assert {(change.action, change.kind) for change, _ in dry.held} == {
        ("delete", "hostname"), ("delete", "service_token"), ("delete", "Secret")}
    first = changes.admit(decide(inputs()).changes, "upsert-only", dry_run=True)
    assert [(change.kind, why) for change, why in first.held] == [("ConfigMap", "dry-run")]
