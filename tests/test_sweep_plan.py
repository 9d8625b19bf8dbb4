"""The orphan sweep's planner (pure): what is ours, what is an orphan, in which order, and the cap."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from chutes.cloudflare_core.models import AccessApp, DnsRecord, ServiceToken, Tunnel
from chutes.cloudflare_core.ownership import marker
from chutes.sweep.plan import Claims, DoorNames, Inventory, orphan_record_tunnels, plan, tunnel_of

ZONE, ZONE_NAME = "z1", "example.com"
SHARED = "11111111-1111-1111-1111-111111111111"
GATEWAYS = DoorNames("chutes", frozenset({"ChuteGateway"}), tunnel_prefix="chute-", app_prefix="chute-")
ROUTES = DoorNames("httproutes", frozenset({"HTTPRoute"}), app_prefix="cfzt-", token_prefix="cfzt-")


def cname(name: str, tunnel: str, source: str | None, owner: str = "default", id_: str = "") -> DnsRecord:
    comment = marker(owner, source) if source else None
    return DnsRecord(id_ or f"r-{name}", name, "CNAME", f"{tunnel}.cfargotunnel.com", True, 1, comment)


def a_record(name: str, source: str | None, owner: str = "default") -> DnsRecord:
    return DnsRecord(f"a-{name}", name, "A", "192.0.2.1", False, 300, marker(owner, source) if source else None)


def rules(*hostnames: str) -> list[dict[str, Any]]:
    return [*({"hostname": h, "service": "http://x:80"} for h in hostnames), {"service": "http_status:404"}]


def inventory(records: Sequence[DnsRecord] = (), rules: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
              tunnels: Sequence[Tunnel] = (), apps: Sequence[AccessApp] = (), tokens: Sequence[ServiceToken] = (),
              owner: str = "default") -> Inventory:
    return Inventory(owner_id=owner, zones={ZONE: ZONE_NAME}, records={ZONE: list(records)}, rules=rules or {},
                     tunnels=tunnels, apps=apps, tokens=tokens)


def app(name: str, domain: str) -> AccessApp:
    return AccessApp(id=f"app-{name}", aud="aud", name=name, domain=domain)


def token(name: str) -> ServiceToken:
    return ServiceToken(id=f"tok-{name}", name=name, client_id="cid")


def summary(result: Any) -> list[tuple[str, str]]:
    return [(d.object, d.name) for d in result.deletions]


# --- DNS records: ours, the door's, unclaimed -------------------------------------------------------

RECORD_CASES = [
    pytest.param(cname("gone.example.com", "t1", "ChuteGateway/ns/gone"), Claims(), True, id="ours-unclaimed"),
    pytest.param(cname("live.example.com", "t1", "ChuteGateway/ns/live"),
                 Claims(hostnames=frozenset({"live.example.com"})), False, id="claimed-hostname"),
    pytest.param(cname("x.example.com", "t1", None), Claims(), False, id="no-marker-foreign"),
    pytest.param(cname("x.example.com", "t1", "ChuteGateway/ns/x", owner="green"), Claims(), False,
                 id="another-owner"),
    pytest.param(cname("x.example.com", "t1", "HTTPRoute/ns/x"), Claims(), False, id="another-door"),
    pytest.param(cname("x.example.com", "t1", "Session/ns/x"), Claims(), False, id="sessions-door"),
    pytest.param(cname("x.example.com", "t1", "ChuteGateway/other/x"), Claims(namespaces=frozenset({"ns"})), False,
                 id="namespace-not-watched"),
    pytest.param(cname("x.example.com", "t1", "ChuteGateway/ns/x"), Claims(namespaces=frozenset({"ns"})), True,
                 id="namespace-watched"),
]


@pytest.mark.parametrize(("record", "claims", "orphan"), RECORD_CASES)
def test_a_dns_record_is_an_orphan_only_when_ours_the_doors_and_unclaimed(record: DnsRecord, claims: Claims,
                                                                         orphan: bool) -> None:
    result = plan(inventory([record]), GATEWAYS, claims, cap=50)
    assert summary(result) == ([("dns_record", record.name)] if orphan else [])


def test_a_disabled_door_records_are_never_judged_by_another_door() -> None:
    records = [cname("g.example.com", "t1", "ChuteGateway/ns/g"), cname("r.example.com", SHARED, "HTTPRoute/ns/r")]
    assert summary(plan(inventory(records), ROUTES, Claims(), 50)) == [("dns_record", "r.example.com")]
    assert summary(plan(inventory(records), GATEWAYS, Claims(), 50)) == [("dns_record", "g.example.com")]


# --- tunnel rules ----------------------------------------------------------------------------------


def test_a_rule_is_ours_only_through_our_orphaned_record_pointing_to_that_tunnel() -> None:
    records = [
        cname("old.example.com", SHARED, "HTTPRoute/ns/old"),
        cname("live.example.com", SHARED, "HTTPRoute/ns/live"),
        cname("elsewhere.example.com", "22222222-2222-2222-2222-222222222222", "HTTPRoute/ns/e"),
    ]
    config = {SHARED: rules("old.example.com", "live.example.com", "foreign.example.com", "elsewhere.example.com")}
    claims = Claims(hostnames=frozenset({"live.example.com"}))
    result = plan(inventory(records, config), ROUTES, claims, 50)
    assert summary(result) == [("tunnel_rule", "old.example.com"), ("dns_record", "elsewhere.example.com"),
                               ("dns_record", "old.example.com")]


def test_the_rules_of_our_orphaned_tunnel_go_with_it() -> None:
    tunnel = Tunnel("t-gone", "chute-ns-gone", "acc")
    config = {"t-gone": [{"hostname": "gone.example.com", "path": "/api", "service": "http://x:80"},
                         {"service": "http_status:404"}]}
    result = plan(inventory([], config, tunnels=[tunnel]), GATEWAYS, Claims(), 50)
    assert [(d.object, d.name, d.path) for d in result.deletions] == [
        ("tunnel_rule", "gone.example.com", "/api"), ("tunnel", "chute-ns-gone", None)]


def test_orphan_record_tunnels_are_the_configurations_to_read() -> None:
    records = [cname("old.example.com", SHARED, "HTTPRoute/ns/old"), a_record("ip.example.com", "HTTPRoute/ns/ip"),
               cname("live.example.com", "t9", "HTTPRoute/ns/live")]
    claims = Claims(hostnames=frozenset({"live.example.com"}))
    assert orphan_record_tunnels(inventory(records), ROUTES, claims) == {SHARED}
    assert tunnel_of(f"{SHARED}.cfargotunnel.com.") == SHARED and tunnel_of("example.net") is None


# --- Access applications: never while something still routes to them --------------------------------

APP_CASES = [
    pytest.param([], {}, "deleted", id="nothing-routes"),
    pytest.param([cname("a.example.com", SHARED, "HTTPRoute/ns/a")], {}, "deleted", id="our-orphan-record-goes-first"),
    pytest.param([cname("a.example.com", SHARED, None)], {}, "record", id="a-foreign-record-remains"),
    pytest.param([cname("a.example.com", SHARED, "HTTPRoute/ns/a", owner="green")], {}, "record",
                 id="another-owners-record-remains"),
    pytest.param([], {SHARED: rules("a.example.com")}, "rule", id="a-foreign-rule-remains"),
    pytest.param([cname("a.example.com", SHARED, "HTTPRoute/ns/a")], {SHARED: rules("a.example.com")}, "deleted",
                 id="our-orphan-rule-goes-first"),
]


@pytest.mark.parametrize(("records", "config", "outcome"), APP_CASES)
def test_an_access_app_is_never_deleted_while_a_record_or_rule_for_its_domain_remains(
        records: list[DnsRecord], config: dict[str, Any], outcome: str) -> None:
    result = plan(inventory(records, config, apps=[app("cfzt-a.example.com", "a.example.com")]), ROUTES, Claims(), 50)
    deleted = ("access_app", "cfzt-a.example.com") in summary(result)
    assert deleted == (outcome == "deleted")
    if outcome == "record":
        assert result.kept == ("Access application cfzt-a.example.com: a DNS record for a.example.com remains",)
    if outcome == "rule":
        assert result.kept == ("Access application cfzt-a.example.com: a tunnel rule for a.example.com remains",)


def test_an_access_app_outside_the_swept_zones_is_kept() -> None:
    result = plan(inventory(apps=[app("cfzt-a.example.net", "a.example.net")]), ROUTES, Claims(), 50)
    assert summary(result) == [] and "outside the zones swept" in result.kept[0]


NAME_CASES = [
    pytest.param("cfzt-a.example.com", "default", True, id="default-owner-seed-name"),
    pytest.param("cfzt-a.example.com@blue", "blue", True, id="owner-qualified"),
    pytest.param("cfzt-a.example.com@green", "blue", False, id="another-owner"),
    pytest.param("cfzt-a.example.com", "blue", False, id="the-default-owners-name"),
    pytest.param("my-app", "default", False, id="foreign-name"),
    pytest.param("chute-ns-a", "default", False, id="another-doors-prefix"),
]


@pytest.mark.parametrize(("name", "owner", "ours"), NAME_CASES)
def test_named_objects_are_ours_by_owner_qualified_name_and_door_prefix(name: str, owner: str, ours: bool) -> None:
    result = plan(inventory(apps=[app(name, "a.example.com")], tokens=[token(name)], owner=owner), ROUTES, Claims(),
                  50)
    assert summary(result) == ([("access_app", name), ("service_token", name)] if ours else [])


def test_claimed_names_are_kept() -> None:
    claims = Claims(app_names=frozenset({"cfzt-a.example.com"}), token_names=frozenset({"cfzt-a.example.com"}))
    result = plan(inventory(apps=[app("cfzt-a.example.com", "a.example.com")], tokens=[token("cfzt-a.example.com")]),
                  ROUTES, claims, 50)
    assert summary(result) == []


# --- tunnels --------------------------------------------------------------------------------------


def test_a_tunnel_is_kept_while_a_record_that_stays_points_to_it() -> None:
    tunnels = [Tunnel("t1", "chute-ns-a", "acc"), Tunnel("t2", "chute-ns-b", "acc"),
               Tunnel("t3", "chute-ns-c", "acc"), Tunnel("t4", "chute-ns-d@green", "acc"),
               Tunnel("t5", "home", "acc")]
    records = [cname("a.example.com", "t1", None), cname("b.example.com", "t2", "ChuteGateway/ns/b")]
    claims = Claims(tunnel_names=frozenset({"chute-ns-c"}))
    result = plan(inventory(records, tunnels=tunnels), GATEWAYS, claims, 50)
    assert summary(result) == [("dns_record", "b.example.com"), ("tunnel", "chute-ns-b")]
    assert result.kept == ("tunnel chute-ns-a: a DNS record that stays points to it",)


# --- order and cap ----------------------------------------------------------------------------------


def full_scene() -> tuple[Inventory, Claims]:
    tunnel = Tunnel("t-gone", "chute-ns-gone", "acc")
    records = [cname("gone.example.com", "t-gone", "ChuteGateway/ns/gone"),
               cname("stale.example.com", "t-live", "ChuteGateway/ns/live")]
    config = {"t-gone": rules("gone.example.com"), "t-live": rules("live.example.com", "stale.example.com")}
    apps = [app("chute-ns-gone", "gone.example.com")]
    claims = Claims(hostnames=frozenset({"live.example.com"}), tunnel_names=frozenset({"chute-ns-live"}),
                    app_names=frozenset({"chute-ns-live"}))
    return inventory(records, config, tunnels=[tunnel], apps=apps), claims


def test_order_is_rules_records_apps_tokens_tunnels() -> None:
    scene, claims = full_scene()
    result = plan(scene, GATEWAYS, claims, 50)
    assert summary(result) == [
        ("tunnel_rule", "gone.example.com"), ("tunnel_rule", "stale.example.com"),
        ("dns_record", "gone.example.com"), ("dns_record", "stale.example.com"),
        ("access_app", "chute-ns-gone"), ("tunnel", "chute-ns-gone"),
    ]
    assert not result.capped and result.orphans == 6


@pytest.mark.parametrize("cap", [0, 1, 2, 3, 4, 5, 6, 7])
def test_the_cap_keeps_a_prefix_of_the_order(cap: int) -> None:
    scene, claims = full_scene()
    everything = plan(scene, GATEWAYS, claims, 50).deletions
    result = plan(scene, GATEWAYS, claims, cap)
    assert result.deletions == everything[:cap] and result.deferred == everything[cap:]
    assert result.capped == (cap < len(everything))


def test_nothing_of_ours_means_an_empty_plan() -> None:
    records = [cname("x.example.com", SHARED, None), cname("y.example.com", SHARED, "HTTPRoute/ns/y", owner="green")]
    result = plan(inventory(records, {SHARED: rules("x.example.com", "y.example.com")},
                            apps=[app("foreign", "x.example.com")], tokens=[token("foreign")]), ROUTES, Claims(), 50)
    assert result.deletions == () and result.deferred == () and not result.capped
