"""The (Cluster)Tunnel's *decide* step as a pure function: what its read found -> the exact change set (order,
needs) and problems, for the reconcile (a ``newTunnel``, an ``existingTunnel`` remotely or locally configured) and
the deletion (ConfigMap rules, then each hostname, then cloudflared, then the tunnel); and that every change is an
ensure: no write policy nor dry-run holds one back (their makers judge them, as before the shape)."""

from __future__ import annotations

from typing import Any

import pytest

from chutes import conditions as c
from chutes.claims import Claim
from chutes.frontdoors import changes
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels.tunnel_decide import Inputs, Leaving, Step, connector, decide, decide_leaving

SECRET = {"cloudflare": {"domain": "example.com", "secret": "cf", "accountId": "acc"}}


def spec(**fields: Any) -> m.TunnelSpec:
    return m.parse_tunnel(m.TUNNEL_KIND, "apps", "web", {**SECRET, **fields}, resource_namespace="ops",
                          owner_id="o")


NEW = spec(newTunnel={"name": "web"})


def lines(decision: changes.Decision[Step]) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(change.action, change.kind, change.name, change.needs) for change in decision.changes]


def test_a_new_tunnel_is_made_then_its_catch_all_then_cloudflared() -> None:
    decision = decide(Inputs(NEW))
    assert lines(decision) == [
        ("create", "tunnel", NEW.cloudflare_name, ()),
        ("update", "tunnel_defaults", NEW.cloudflare_name, ("tunnel",)),
        ("update", "Secret", NEW.secret_name, ("tunnel", "tunnel_defaults")),
        ("update", "Deployment", NEW.deployment_name, ("Secret",)),
    ]
    assert decision.problems == ()
    assert decision.changes[1].payload.origin_request == m.tunnel_origin_request(NEW)


def test_a_recorded_tunnel_is_an_update_naming_its_id() -> None:
    first = decide(Inputs(NEW, recorded="t-1")).changes[0]
    assert (first.action, first.detail) == ("update", "t-1")


def test_an_existing_remote_tunnel_gets_its_catch_all_only_when_asked() -> None:
    plain = spec(existingTunnel={"name": "shared"})
    assert [kind for _, kind, _, _ in lines(decide(Inputs(plain)))] == ["Secret", "Deployment"]
    asked = spec(existingTunnel={"name": "shared"}, fallbackTarget="http://fallback.apps.svc:80")
    decision = decide(Inputs(asked))
    assert lines(decision)[0] == ("update", "tunnel_defaults", "shared", ())
    assert decision.changes[0].payload.origin_request is None  # a co-owned configuration: its settings kept
    assert lines(decision)[1] == ("update", "Secret", asked.secret_name, ("tunnel_defaults",))


def test_a_local_tunnel_writes_its_config_map_before_cloudflared_and_never_its_catch_all() -> None:
    local = spec(existingTunnel={"name": "shared"}, fallbackTarget="http://fallback.apps.svc:80")
    decision = decide(Inputs(local, local=True))
    assert lines(decision) == [
        ("update", "ConfigMap", local.config_name, ()),
        ("update", "Secret", local.credentials_secret_name, ("ConfigMap",)),
        ("update", "Deployment", local.deployment_name, ("Secret",)),
    ]
    assert not decision.changes[0].governed


def test_a_local_tunnel_without_its_credentials_changes_nothing_of_its_connector() -> None:
    local = spec(existingTunnel={"name": "shared"})
    decision = decide(Inputs(local, local=True, credentials_problem=(c.SECRET_NOT_FOUND, "no Secret")))
    assert decision.changes == () and decision.problems == ((c.SECRET_NOT_FOUND, "no Secret"),)


@pytest.mark.parametrize("policy", ["sync", "upsert-only", "create-only"])
@pytest.mark.parametrize("dry_run", [False, True])
def test_no_policy_nor_dry_run_holds_a_change_back_their_makers_judge_them(policy: str, dry_run: bool) -> None:
    for decision in (decide(Inputs(NEW)), decide_leaving(leaving(held=(tunnel_claim(),), routed=(hostname("a"),)))):
        admitted = changes.admit(decision.changes, policy, dry_run=dry_run)
        assert admitted.held == () and admitted.now == decision.changes


def test_the_connector_runs_from_the_config_map_with_its_checksum() -> None:
    local = spec(existingTunnel={"name": "shared"})
    assert connector(local).config_map is None and connector(local).secret_name == local.secret_name
    run = connector(local, "abc")
    assert run.config_map == local.config_name and run.secret_name == local.credentials_secret_name
    assert dict(run.pod_annotations).popitem()[1] == "abc"


# --- deletion ------------------------------------------------------------------------------------------------------


def hostname(name: str, **rule: Any) -> Claim:
    return Claim(kind="hostname", key=f"{name}.example.com", source=f"TunnelBinding/apps/{name}",
                 entries={"tunnel_rule": {"tunnel": "t-1", "id": "t-1", **rule}}, claimed_at="2026-01-01T00:00:00Z")


def tunnel_claim() -> Claim:
    return Claim(kind="tunnel", key="acc/web", source="Tunnel/apps/web", entries={"tunnel": {"id": "t-1"}},
                 claimed_at="2026-01-01T00:00:00Z")


def leaving(**fields: Any) -> Leaving:
    base: dict[str, Any] = {"name": "web", "namespace": "apps", "base": "web", "held": (), "routed": (),
                            "in_config": (), "has_spec": True}
    return Leaving(**{**base, **fields})


def test_a_deletion_takes_the_routes_first_then_cloudflared_then_the_tunnel() -> None:
    a, b = hostname("a"), hostname("b")
    decision = decide_leaving(leaving(held=(tunnel_claim(),), routed=(a, b)))
    routes = ("hostname/a.example.com", "hostname/b.example.com")
    connector_keys = ("Deployment", "Secret/tunnel-token", "Secret/tunnel-credentials", "ConfigMap")
    assert lines(decision) == [
        ("delete", "hostname", "a.example.com", ()),
        ("delete", "hostname", "b.example.com", ()),
        ("delete", "Deployment", "web-cloudflared", routes),
        ("delete", "Secret", "web-tunnel-token", ("Deployment",)),
        ("delete", "Secret", "web-tunnel-credentials", ("Deployment",)),
        ("delete", "ConfigMap", "web", ("Deployment",)),
        ("delete", "tunnel", "acc/web", connector_keys),
    ]
    assert decision.changes[0].payload.claim == a and decision.changes[-1].payload.claim == tunnel_claim()


def test_the_rules_of_a_local_tunnel_leave_its_config_map_before_their_hostnames() -> None:
    local = hostname("a", local="Tunnel/apps/web")  # its rule in the ConfigMap (local.ENTRY_TUNNEL)
    decision = decide_leaving(leaving(routed=(local,), in_config=(local,)))
    assert lines(decision)[:2] == [("delete", "tunnel_rule", "1 rule(s)", ()),
                                   ("delete", "hostname", "a.example.com", ("tunnel_rule/config",))]
    assert decision.changes[0].payload.claims == (local,) and not decision.changes[0].governed
    assert [kind for _, kind, _, _ in lines(decision)][2:] == ["Deployment", "Secret", "Secret", "ConfigMap"]


def test_an_existing_tunnel_leaves_only_its_connector() -> None:
    assert [kind for _, kind, _, _ in lines(decide_leaving(leaving()))] == ["Deployment", "Secret", "Secret",
                                                                            "ConfigMap"]


def test_without_a_spec_nothing_is_removed_while_cloudflare_objects_are_left() -> None:
    decision = decide_leaving(leaving(held=(tunnel_claim(),), has_spec=False))
    assert decision.changes == () and decision.problems[0][0] == c.DELETING
    assert decide_leaving(leaving(has_spec=False)).problems == ()  # nothing in Cloudflare: cloudflared goes
