"""The orphan sweep's verdict (pure): what is proven ours (claims, markers), what is an orphan, in which order,
and the cap. Names and shapes prove nothing: a hand-made object named like ours is never judged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from chutes.cloudflare_core.models import AccessApp, DnsRecord, ServiceToken, Tunnel
from chutes.cloudflare_core.ownership import legacy_marker, marker
from chutes.sweep.verdict import DoorNames, Inventory, Wants, judge, tunnel_of, tunnels_to_read
from harness.ledger import FakeClaim

ZONE, ZONE_NAME = "z1", "example.com"
SHARED = "11111111-1111-1111-1111-111111111111"
GATEWAYS = DoorNames("chutes", frozenset({"ChuteGateway"}))
ROUTES = DoorNames("httproutes", frozenset({"HTTPRoute"}))
T0, T1 = "2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z"


def cname(name: str, tunnel: str, source: str | None, owner: str = "default", id_: str = "") -> DnsRecord:
    comment = marker(owner, source) if source else None
    return DnsRecord(id_ or f"r-{name}", name, "CNAME", f"{tunnel}.cfargotunnel.com", True, 1, comment)


def rules(*hostnames: str, path: str | None = None) -> list[dict[str, Any]]:
    found = [{"hostname": h, "service": "http://x:80", **({"path": path} if path else {})} for h in hostnames]
    return [*found, {"service": "http_status:404"}]


def inventory(records: Sequence[DnsRecord] = (), rules: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
              tunnels: Sequence[Tunnel] = (), apps: Sequence[AccessApp] = (), tokens: Sequence[ServiceToken] = (),
              claims: Sequence[FakeClaim] = (), owner: str = "default") -> Inventory:
    return Inventory(owner_id=owner, zones={ZONE: ZONE_NAME}, records={ZONE: list(records)}, rules=rules or {},
                     tunnels=tunnels, apps=apps, tokens=tokens, claims=claims)


def app(name: str, domain: str, created: str | None = None, id_: str = "") -> AccessApp:
    return AccessApp(id=id_ or f"app-{name}", aud="aud", name=name, domain=domain, created_at=created)


def token(name: str, created: str | None = None) -> ServiceToken:
    return ServiceToken(id=f"tok-{name}", name=name, client_id="cid", created_at=created)


def summary(result: Any) -> list[tuple[str, str]]:
    return [(d.object, d.name) for d in result.deletions]


def wants(**sources: set[str]) -> Wants:
    return Wants(sources={source.replace("__", "/"): frozenset(keys) for source, keys in sources.items()})


GONE = "ChuteGateway/ns/gone"
ROUTE_GONE = "HTTPRoute/ns/gone"


# --- DNS records: judged by marker (owner AND source), never by name --------------------------------

RECORD_CASES = [
    pytest.param(cname("gone.example.com", "t1", GONE), Wants(), True, id="ours-source-gone"),
    pytest.param(cname("live.example.com", "t1", "ChuteGateway/ns/live"),
                 Wants(sources={"ChuteGateway/ns/live": frozenset({"live.example.com"})}), False, id="wanted"),
    pytest.param(cname("old.example.com", "t1", "ChuteGateway/ns/live"),
                 Wants(sources={"ChuteGateway/ns/live": frozenset({"new.example.com"})}), True,
                 id="live-source-no-longer-wants-it"),
    pytest.param(cname("live.example.com", "t1", "ChuteGateway/ns/old"),
                 Wants(sources={"ChuteGateway/ns/new": frozenset({"live.example.com"})}), True,
                 id="another-live-source-wants-the-name-but-the-marker-is-the-gone-sources"),
    pytest.param(cname("x.example.com", "t1", None), Wants(), False, id="no-marker-foreign"),
    pytest.param(cname("x.example.com", "t1", "ChuteGateway/ns/x", owner="green"), Wants(), False,
                 id="another-owner"),
    pytest.param(cname("x.example.com", "t1", "HTTPRoute/ns/x"), Wants(), False, id="another-door"),
    pytest.param(cname("x.example.com", "t1", "Session/ns/x"), Wants(), False, id="sessions-door"),
    pytest.param(cname("x.example.com", "t1", "ChuteGateway/other/x"), Wants(namespaces=frozenset({"ns"})), False,
                 id="namespace-not-watched"),
    pytest.param(cname("x.example.com", "t1", "ChuteGateway/ns/x"), Wants(namespaces=frozenset({"ns"})), True,
                 id="namespace-watched"),
    pytest.param(cname("x.example.com", "t1", "ChuteGateway/ns/x"), Wants(deleting=frozenset({"ChuteGateway/ns/x"})),
                 False, id="source-being-deleted-keeps-it"),
]


@pytest.mark.parametrize(("record", "wanted", "orphan"), RECORD_CASES)
def test_a_dns_record_is_an_orphan_only_when_marked_for_a_source_that_no_longer_wants_it(
        record: DnsRecord, wanted: Wants, orphan: bool) -> None:
    result = judge(inventory([record]), GATEWAYS, wanted, cap=50)
    assert summary(result) == ([("dns_record", record.name)] if orphan else [])


def test_a_record_of_a_long_source_is_recognised_by_its_shortened_marker() -> None:
    source = "ChuteGateway/a-rather-long-namespace-name-for-a-team/" + "x" * 60
    record = DnsRecord("r1", "x.example.com", "CNAME", "t1.cfargotunnel.com", True, 1, marker("default", source))
    wants_x = Wants(sources={source: frozenset({"x.example.com"})})
    assert summary(judge(inventory([record]), GATEWAYS, wants_x, 50)) == []
    assert summary(judge(inventory([record]), GATEWAYS, Wants(), 50)) == [("dns_record", "x.example.com")]
    legacy = DnsRecord("r2", "y.example.com", "CNAME", "t1.cfargotunnel.com", True, 1, legacy_marker("default", source))
    wants_y = Wants(sources={source: frozenset({"y.example.com"})})
    assert summary(judge(inventory([legacy]), GATEWAYS, wants_y, 50)) == []


# --- tunnel rules: only the path-less rule at a proven hostname ---------------------------------------


def test_a_rule_is_ours_only_through_our_orphaned_record_pointing_to_that_tunnel() -> None:
    records = [
        cname("old.example.com", SHARED, "HTTPRoute/ns/old"),
        cname("live.example.com", SHARED, "HTTPRoute/ns/live"),
        cname("elsewhere.example.com", "22222222-2222-2222-2222-222222222222", "HTTPRoute/ns/e"),
    ]
    config = {SHARED: rules("old.example.com", "live.example.com", "foreign.example.com", "elsewhere.example.com")}
    wanted = Wants(sources={"HTTPRoute/ns/live": frozenset({"live.example.com"})})
    result = judge(inventory(records, config), ROUTES, wanted, 50)
    assert summary(result) == [("tunnel_rule", "old.example.com"), ("dns_record", "elsewhere.example.com"),
                               ("dns_record", "old.example.com")]


def test_a_foreign_path_rule_at_our_orphaned_hostname_is_never_deleted() -> None:
    """Issue 11, item 8: the hand-made app.example.com/admin stays while our path-less rule goes."""
    record = cname("app.example.com", SHARED, ROUTE_GONE)
    config = {SHARED: [{"hostname": "app.example.com", "path": "/admin", "service": "http://admin:80"},
                       {"hostname": "app.example.com", "service": "http://x:80"}, {"service": "http_status:404"}]}
    result = judge(inventory([record], config), ROUTES, Wants(), 50)
    assert [(d.object, d.name, d.path) for d in result.deletions] == [
        ("tunnel_rule", "app.example.com", None), ("dns_record", "app.example.com", None)]


def test_a_path_rule_alone_is_not_ours() -> None:
    record = cname("app.example.com", SHARED, ROUTE_GONE)
    config = {SHARED: rules("app.example.com", path="/admin")}
    assert summary(judge(inventory([record], config), ROUTES, Wants(), 50)) == [("dns_record", "app.example.com")]


def test_tunnels_to_read_are_those_of_orphan_claims_and_orphaned_records() -> None:
    records = [cname("old.example.com", SHARED, "HTTPRoute/ns/old"),
               cname("live.example.com", "t9", "HTTPRoute/ns/live")]
    claims = [FakeClaim("hostname", "c.example.com", ROUTE_GONE, {"tunnel_rule": {"tunnel": "t7", "since": T0}})]
    wanted = Wants(sources={"HTTPRoute/ns/live": frozenset({"live.example.com"})})
    assert tunnels_to_read(inventory(records, claims=claims), ROUTES, wanted) == {SHARED, "t7"}
    assert tunnel_of(f"{SHARED}.cfargotunnel.com.") == SHARED and tunnel_of("example.net") is None


# --- named objects: only through a claim ------------------------------------------------------------


def test_objects_named_like_ours_without_a_claim_are_never_judged() -> None:
    """Issue 11, item 1: the hand-made tunnel chute-ops-vpn, app chute-admin and token cfzt-ci-pipeline."""
    scene = inventory(tunnels=[Tunnel("t-vpn", "chute-ops-vpn", "acc", connected=True)],
                      apps=[app("chute-admin", "admin.example.com"), app("cfzt-x.example.com", "x.example.com")],
                      tokens=[token("cfzt-ci-pipeline")])
    assert judge(scene, GATEWAYS, Wants(), 50).deletions == ()
    assert judge(scene, ROUTES, Wants(), 50).deletions == ()


def full_claim(source: str = ROUTE_GONE, host: str = "a.example.com") -> FakeClaim:
    return FakeClaim("hostname", host, source, {
        "tunnel_rule": {"tunnel": SHARED, "account": "acc", "service": "http://x:80", "since": T0},
        "access_app": {"id": "app-1", "name": f"cfzt-{host}", "account": "acc", "since": T0},
        "service_token": {"id": "tok-1", "name": f"cfzt-{host}", "account": "acc", "since": T0},
    })


def test_an_orphan_claim_tears_down_rule_record_app_token_then_is_released() -> None:
    claim = full_claim()
    scene = inventory([cname("a.example.com", SHARED, ROUTE_GONE)], {SHARED: rules("a.example.com")}, claims=[claim])
    result = judge(scene, ROUTES, Wants(), 50)
    assert [(d.object, d.name, d.id) for d in result.deletions] == [
        ("tunnel_rule", "a.example.com", ""), ("dns_record", "a.example.com", "r-a.example.com"),
        ("access_app", "cfzt-a.example.com", "app-1"), ("service_token", "cfzt-a.example.com", "tok-1"),
        ("claim", "a.example.com", "")]
    assert all(d.claim == claim.name for d in result.deletions)


def test_a_claim_whose_source_wants_it_is_kept() -> None:
    claim = full_claim()
    scene = inventory([cname("a.example.com", SHARED, ROUTE_GONE)], {SHARED: rules("a.example.com")}, claims=[claim])
    assert judge(scene, ROUTES, Wants(sources={ROUTE_GONE: frozenset({"a.example.com"})}), 50).deletions == ()


def test_a_superseded_claim_of_a_live_source_is_an_orphan() -> None:
    """Issue 11, item 5: the old hostname's Access application is not leaked after a hostname change."""
    old = FakeClaim("hostname", "blog.example.com", "ChuteGateway/team-a/blog",
                    {"access_app": {"id": "app-old", "name": "chute-team-a-blog", "since": T0}})
    scene = inventory(claims=[old])
    result = judge(scene, GATEWAYS, Wants(sources={"ChuteGateway/team-a/blog": frozenset({"www.example.com"})}), 50)
    assert summary(result) == [("access_app", "chute-team-a-blog"), ("claim", "blog.example.com")]


def test_an_intent_is_resolved_by_natural_key_and_creation_time() -> None:
    claim = FakeClaim("hostname", "a.example.com", ROUTE_GONE, {
        "access_app": {"name": "cfzt-a.example.com", "since": T1},
        "service_token": {"name": "cfzt-a.example.com", "since": T1},
    })
    before = inventory(apps=[app("cfzt-a.example.com", "a.example.com", T0)],
                       tokens=[token("cfzt-a.example.com", T0)], claims=[claim])
    assert summary(judge(before, ROUTES, Wants(), 50)) == [("claim", "a.example.com")]  # made before: not ours
    after = inventory(apps=[app("cfzt-a.example.com", "a.example.com", T1)],
                      tokens=[token("cfzt-a.example.com", T1)], claims=[claim])
    assert summary(judge(after, ROUTES, Wants(), 50)) == [
        ("access_app", "cfzt-a.example.com"), ("service_token", "cfzt-a.example.com"), ("claim", "a.example.com")]


def test_the_rule_of_an_orphan_claim_stays_when_another_sources_record_holds_the_hostname() -> None:
    claim = full_claim()
    scene = inventory([cname("a.example.com", SHARED, "HTTPRoute/ns/winner")], {SHARED: rules("a.example.com")},
                      claims=[claim])
    result = judge(scene, ROUTES, Wants(sources={"HTTPRoute/ns/winner": frozenset({"a.example.com"})}), 50)
    assert ("tunnel_rule", "a.example.com") not in summary(result)
    assert ("claim", "a.example.com") not in summary(result)  # its app is kept: a record for the domain remains


# --- Access applications: never while something still routes to them --------------------------------

APP_CASES = [
    pytest.param([], {}, "deleted", id="nothing-routes"),
    pytest.param([cname("a.example.com", SHARED, ROUTE_GONE)], {}, "deleted", id="our-orphan-record-goes-first"),
    pytest.param([cname("a.example.com", SHARED, None)], {}, "record", id="a-foreign-record-remains"),
    pytest.param([cname("a.example.com", SHARED, "HTTPRoute/ns/a", owner="green")], {}, "record",
                 id="another-owners-record-remains"),
    pytest.param([], {"t2": rules("a.example.com")}, "rule", id="a-foreign-rule-remains"),
    pytest.param([cname("a.example.com", SHARED, ROUTE_GONE)], {SHARED: rules("a.example.com")}, "deleted",
                 id="our-orphan-rule-goes-first"),
]


@pytest.mark.parametrize(("records", "config", "outcome"), APP_CASES)
def test_an_access_app_is_never_deleted_while_a_record_or_rule_for_its_domain_remains(
        records: list[DnsRecord], config: dict[str, Any], outcome: str) -> None:
    claim = FakeClaim("hostname", "a.example.com", ROUTE_GONE, {
        "tunnel_rule": {"tunnel": SHARED, "service": "http://x:80", "since": T0},
        "access_app": {"id": "app-1", "name": "cfzt-a.example.com", "since": T0}})
    result = judge(inventory(records, config, claims=[claim]), ROUTES, Wants(), 50)
    deleted = ("access_app", "cfzt-a.example.com") in summary(result)
    assert deleted == (outcome == "deleted")
    assert (("claim", "a.example.com") in summary(result)) == (outcome == "deleted")
    if outcome == "record":
        assert result.kept == (f"Access application cfzt-a.example.com of {ROUTE_GONE}: a DNS record for "
                               "a.example.com remains",)
    if outcome == "rule":
        assert result.kept == (f"Access application cfzt-a.example.com of {ROUTE_GONE}: a tunnel rule for "
                               "a.example.com remains",)


def test_an_access_app_outside_the_swept_zones_is_kept() -> None:
    claim = FakeClaim("hostname", "a.example.net", ROUTE_GONE, {"access_app": {"id": "app-1", "name": "n"}})
    result = judge(inventory(claims=[claim]), ROUTES, Wants(), 50)
    assert summary(result) == [] and "outside the zones swept" in result.kept[0]


# --- tunnels ----------------------------------------------------------------------------------------


def tunnel_claim(name: str, tunnel_id: str, source: str = GONE) -> FakeClaim:
    return FakeClaim("tunnel", f"acc/{name}", source, {"tunnel": {"id": tunnel_id, "name": name, "since": T0}})


def test_a_tunnel_is_deleted_only_through_its_claim_and_never_while_connected_or_pointed_to() -> None:
    tunnels = [Tunnel("t1", "chute-ns-a", "acc"), Tunnel("t2", "chute-ns-b", "acc"),
               Tunnel("t3", "chute-ns-c", "acc", connected=True), Tunnel("t4", "chute-ns-d", "acc")]
    claims = [tunnel_claim("chute-ns-a", "t1", "ChuteGateway/ns/a"),
              tunnel_claim("chute-ns-b", "t2", "ChuteGateway/ns/b"),
              tunnel_claim("chute-ns-c", "t3", "ChuteGateway/ns/c")]
    records = [cname("a.example.com", "t1", None)]
    result = judge(inventory(records, tunnels=tunnels, claims=claims), GATEWAYS, Wants(), 50)
    assert summary(result) == [("tunnel", "chute-ns-b"), ("claim", "acc/chute-ns-b")]
    assert result.kept == ("tunnel chute-ns-a of ChuteGateway/ns/a: a DNS record that stays points to it",
                           "tunnel chute-ns-c of ChuteGateway/ns/c: it has active connections")


def test_a_tunnel_claim_whose_id_now_names_another_tunnel_deletes_nothing() -> None:
    claims = [tunnel_claim("chute-ns-a", "t1")]
    result = judge(inventory(tunnels=[Tunnel("t1", "renamed-by-hand", "acc")], claims=claims), GATEWAYS, Wants(), 50)
    assert summary(result) == [] and "named 'renamed-by-hand' now" in result.kept[0]


# --- order and cap ----------------------------------------------------------------------------------


def full_scene() -> tuple[Inventory, Wants]:
    tunnel = Tunnel("t-gone", "chute-ns-gone", "acc")
    records = [cname("gone.example.com", "t-gone", GONE), cname("stale.example.com", "t-live", "ChuteGateway/ns/live")]
    config = {"t-gone": rules("gone.example.com"), "t-live": rules("live.example.com", "stale.example.com")}
    claims = [FakeClaim("hostname", "gone.example.com", GONE, {
                  "tunnel_rule": {"tunnel": "t-gone", "service": "http://x:80", "since": T0},
                  "access_app": {"id": "app-gone", "name": "chute-ns-gone", "since": T0}}),
              tunnel_claim("chute-ns-gone", "t-gone")]
    wanted = Wants(sources={"ChuteGateway/ns/live": frozenset({"live.example.com", "acc/chute-ns-live"})})
    return inventory(records, config, tunnels=[tunnel], claims=claims), wanted


def test_order_is_rules_records_apps_tokens_tunnels_then_claims() -> None:
    scene, wanted = full_scene()
    result = judge(scene, GATEWAYS, wanted, 50)
    assert summary(result) == [
        ("tunnel_rule", "gone.example.com"), ("tunnel_rule", "stale.example.com"),
        ("dns_record", "gone.example.com"), ("dns_record", "stale.example.com"),
        ("access_app", "chute-ns-gone"), ("tunnel", "chute-ns-gone"),
        ("claim", "gone.example.com"), ("claim", "acc/chute-ns-gone"),
    ]
    assert not result.capped and result.orphans == 6


@pytest.mark.parametrize("cap", [0, 1, 2, 3, 4, 5, 6, 7])
def test_the_cap_keeps_a_prefix_of_the_order_and_releases_only_finished_claims(cap: int) -> None:
    scene, wanted = full_scene()
    everything = [d for d in judge(scene, GATEWAYS, wanted, 50).deletions if d.object != "claim"]
    result = judge(scene, GATEWAYS, wanted, cap)
    done = [d for d in result.deletions if d.object != "claim"]
    assert done == everything[:cap] and list(result.deferred) == everything[cap:]
    assert result.capped == (cap < len(everything))
    released = {d.claim for d in result.deletions if d.object == "claim"}
    assert not released & {d.claim for d in result.deferred}


def test_nothing_proven_ours_means_an_empty_verdict() -> None:
    records = [cname("x.example.com", SHARED, None), cname("y.example.com", SHARED, "HTTPRoute/ns/y", owner="green")]
    result = judge(inventory(records, {SHARED: rules("x.example.com", "y.example.com")},
                            apps=[app("foreign", "x.example.com")], tokens=[token("foreign")]), ROUTES, Wants(), 50)
    assert result.deletions == () and result.deferred == () and not result.capped


def test_a_gateway_sweep_limited_to_its_namespaces_never_judges_another_installations_records() -> None:
    """Two installations sharing an owner id by mistake, each watching its own namespaces: neither takes the
    other's gateway records for orphans."""
    from chutes.frontdoors.gateways.orphans import gateway_wants

    config = {"metadata": {"name": "default"}, "spec": {"domain": "example.com", "accountId": "acc"}}
    gateway = {"metadata": {"namespace": "ns", "name": "live"}, "spec": {"configRef": "default", "hostname": "live"}}
    wanted = gateway_wants([gateway], [config], "default", namespaces=("ns",))
    assert wanted.sources["ChuteGateway/ns/live"] == frozenset({"live.example.com", "acc/chute-ns-live"})
    theirs = cname("x.example.com", "t1", "ChuteGateway/other-team/x")
    assert judge(inventory([theirs]), GATEWAYS, wanted, 50).deletions == ()
    assert summary(judge(inventory([theirs]), GATEWAYS, gateway_wants([gateway], [config], "default"), 50)) == [
        ("dns_record", "x.example.com")]


def test_a_claim_recording_another_account_is_left_to_that_accounts_pass() -> None:
    """Two tenants in two accounts: tenant A's pass lists account A, where account B's token is absent. Judged
    there, the token would look gone and the claim be released, leaving the token in account B for good."""
    claim = FakeClaim("hostname", "b.example.com", ROUTE_GONE, {
        "service_token": {"id": "tok-b", "account": "acct-b", "name": "cfzt-b.example.com"},
    })
    in_a = Inventory(owner_id="default", account_id="acct-a", zones={ZONE: ZONE_NAME}, claims=[claim])
    assert summary(judge(in_a, ROUTES, Wants(), 50)) == []  # neither a deletion nor a release
    in_b = Inventory(owner_id="default", account_id="acct-b", zones={ZONE: ZONE_NAME}, claims=[claim])
    assert summary(judge(in_b, ROUTES, Wants(), 50)) == [("service_token", "cfzt-b.example.com"),
                                                         ("claim", "b.example.com")]
