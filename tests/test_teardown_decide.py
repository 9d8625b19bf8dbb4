"""The deletes that take a source's claims down (pure: :mod:`chutes.frontdoors.teardown`), as the ChuteGateway and
HTTPRoute doors decide them for a deletion or a withdrawal: per hostname its rule and the source's records before
its Access application and token, only what the claim records (the records at the name always: their marker proves
them), the claim's last change marked (released after it); a gateway's cloudflared first and its tunnel last; and the
set filtered whole: a policy that never deletes, or dry-run, holds every Cloudflare delete (objects and claims stay)
and lets the gateway's Kubernetes objects go."""

from __future__ import annotations

from typing import Any

import pytest

from chutes.claim import Claim
from chutes.frontdoors import changes, teardown
from chutes.frontdoors.gateways import decide as gateways
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.httproutes import decide as httproutes

FQDN = "blog.example.com"
GATEWAY = "ChuteGateway/blog/blog"
TUNNEL_ID = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
FULL = {"tunnel_rule": {"id": TUNNEL_ID, "tunnel": TUNNEL_ID, "service": "http://web:80"},
        "dns": {"zone": "z", "type": "CNAME"}, "access_app": {"id": "app1", "name": "chute-blog-blog"},
        "access_policy": {"id": "pol1", "app": "app1"}, "service_token": {"id": "tok1", "name": "cfzt-blog"}}


def claim(key: str = FQDN, source: str = GATEWAY, kind: Any = "hostname", **entries: Any) -> Claim:
    return Claim(kind=kind, key=key, source=source, entries=entries, claimed_at="2026-01-01T00:00:00Z")


def lines(decision_or_changes: Any) -> list[tuple[str, str, str, tuple[str, ...]]]:
    found = getattr(decision_or_changes, "changes", decision_or_changes)
    return [(ch.action, ch.kind, ch.name, ch.needs) for ch in found]


def test_a_hostname_claim_goes_routing_first_then_access_then_its_token_the_last_one_releasing_it() -> None:
    held = claim(**FULL)
    out = teardown.hostname(held)
    assert lines(out) == [
        ("delete", "tunnel_rule", FQDN, ()),
        ("delete", "dns_record", FQDN, (f"tunnel_rule/{FQDN}",)),
        ("delete", "access_app", FQDN, (f"tunnel_rule/{FQDN}", f"dns_record/{FQDN}")),
        ("delete", "service_token", FQDN, (f"tunnel_rule/{FQDN}", f"dns_record/{FQDN}")),
    ]
    assert [(ch.payload.obj, ch.payload.last) for ch in out] == [
        ("tunnel_rule", False), ("dns", False), ("access_app", False), ("service_token", True)]
    assert all(ch.payload.claim is held and not ch.ensure and ch.governed for ch in out)
    assert [changes.describe(ch) for ch in out] == [
        f"- delete tunnel rule {FQDN} (tunnel {TUNNEL_ID})",
        f"- delete DNS record {FQDN} (the records of {GATEWAY} at the name)",
        f"- delete Access application {FQDN} (chute-blog-blog)",
        f"- delete service token {FQDN} (cfzt-blog)"]


def test_only_what_the_claim_records_goes_but_the_sources_records_at_the_name_always_do() -> None:
    bare = teardown.hostname(claim())
    assert lines(bare) == [("delete", "dns_record", FQDN, ())]
    assert bare[0].payload.last  # released after it: nothing else recorded
    dns_only = teardown.hostname(claim(dns={"zone": "z", "type": "A"}, access_app={"id": "a"}), ("Secret/x",))
    assert lines(dns_only) == [("delete", "dns_record", FQDN, ("Secret/x",)),
                               ("delete", "access_app", FQDN, ("Secret/x", f"dns_record/{FQDN}"))]
    assert [ch.payload.last for ch in dns_only] == [False, True]


def test_a_tunnel_claim_goes_after_what_it_needs_and_releases_its_claim() -> None:
    held = claim("acc/chute-blog-blog", kind="tunnel", tunnel={"id": TUNNEL_ID, "name": "chute-blog-blog"})
    change = teardown.tunnel(held, ("dns_record/x",))
    assert (change.action, change.kind, change.name, change.detail, change.needs) == (
        "delete", "tunnel", "chute-blog-blog", TUNNEL_ID, ("dns_record/x",))
    assert (change.payload.claim, change.payload.obj, change.payload.last) == (held, "tunnel", True)
    assert teardown.tunnel(claim("acc/t2", kind="tunnel", tunnel={"since": "t"})).name == "t2"  # an intent only


NAMES = d.DesiredGateway("blog", "blog", FQDN, "", True, (), (), "24h", 0, "", owner_id="default")
TUNNEL_CLAIM = claim("acc/chute-blog-blog", kind="tunnel", tunnel={"id": TUNNEL_ID, "name": "chute-blog-blog"})


def test_a_gateway_leaves_cloudflared_first_then_each_hostname_then_its_tunnel() -> None:
    decision = gateways.decide_leaving(NAMES, [TUNNEL_CLAIM, claim(**FULL), claim("old.example.com")])
    assert decision.problems == ()
    assert [(ch.kind, ch.name, ch.ensure) for ch in decision.changes] == [
        ("Deployment", NAMES.deployment_name, True), ("Secret", NAMES.secret_name, True),
        ("tunnel_rule", FQDN, False), ("dns_record", FQDN, False), ("access_app", FQDN, False),
        ("service_token", FQDN, False), ("dns_record", "old.example.com", False),
        ("tunnel", "chute-blog-blog", False)]
    assert decision.changes[-1].needs == tuple(ch.ref for ch in decision.changes[:-1])
    assert all(ch.payload.claim is None for ch in decision.changes[:2])


def test_a_gateway_whose_objects_are_out_of_reach_only_loses_cloudflared_and_says_why() -> None:
    decision = gateways.decide_leaving(NAMES, [claim(**FULL)], ("Deleting", "cannot remove the Cloudflare objects"))
    assert [ch.kind for ch in decision.changes] == ["Deployment", "Secret"]
    assert decision.problems == (("Deleting", "cannot remove the Cloudflare objects"),)
    assert [ch.kind for ch in gateways.decide_leaving(NAMES, []).changes] == ["Deployment", "Secret"]


@pytest.mark.parametrize(("policy", "dry_run", "why"), [("upsert-only", False, "policy upsert-only"),
                                                        ("create-only", False, "policy create-only"),
                                                        ("sync", True, "dry-run")])
def test_a_policy_that_never_deletes_or_dry_run_holds_every_cloudflare_delete_and_lets_cloudflared_go(
        policy: str, dry_run: bool, why: str) -> None:
    decision = gateways.decide_leaving(NAMES, [claim(**FULL), TUNNEL_CLAIM])
    admitted = changes.admit(decision.changes, policy, dry_run=dry_run)
    assert [ch.kind for ch in admitted.now] == ["Deployment", "Secret"]
    assert [ch.kind for ch, _ in admitted.held] == ["tunnel_rule", "dns_record", "access_app", "service_token",
                                                    "tunnel"]
    assert {reason for _, reason in admitted.held} == {why}  # each held for itself, before any need
    assert admitted.lines()[2] == f"- delete tunnel rule {FQDN} (tunnel {TUNNEL_ID}) (held: {why})"


def test_sync_makes_every_delete_in_order() -> None:
    decision = gateways.decide_leaving(NAMES, [claim(**FULL), TUNNEL_CLAIM])
    admitted = changes.admit(decision.changes, "sync")
    assert admitted.held == () and admitted.now == decision.changes


ROUTE = "HTTPRoute/apps/web"


def test_a_route_leaves_each_of_its_hostnames_in_turn() -> None:
    first = claim("a.example.com", ROUTE, tunnel_rule=FULL["tunnel_rule"], dns=FULL["dns"])
    second = claim("b.example.com", ROUTE, dns={"zone": "z", "type": "A"}, service_token=FULL["service_token"])
    decision = httproutes.decide_leaving([first, second])
    assert decision.problems == ()
    assert [(ch.kind, ch.name, ch.payload.last) for ch in decision.changes] == [
        ("tunnel_rule", "a.example.com", False), ("dns_record", "a.example.com", True),
        ("dns_record", "b.example.com", False), ("service_token", "b.example.com", True)]
    assert httproutes.decide_leaving([]).changes == ()
    held = changes.admit(decision.changes, "upsert-only")
    assert held.now == () and len(held.held) == 4
