"""What one namespace's HTTPRoute may reach, beyond its hostname (issue 11, second review): the ``tunnelId``
annotation only reaches the tenant's tunnel or one its ``spec.allowedTunnelIds`` lists (never a ChuteGateway's
own); a route whose state ConfigMap name holds another route's state touches nothing of that route; a tenant
change whose old tenant is gone keeps (and reuses, or waits for) what the hostname claim records."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

import pytest

from chutes import conditions as c
from chutes.claims import (
    LABEL_KIND,
    LABEL_OWNER,
    LABEL_SOURCE_HASH,
    LABEL_SOURCE_KIND,
    LABEL_SOURCE_NAMESPACE,
    MANAGED_BY,
    MANAGER,
    Claim,
    claim_name,
    source_hash,
)
from chutes.frontdoors.httproutes import decide, read
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes.merge import RouteSettings
from chutes.frontdoors.problems import Problem
from chutes.frontdoors.retries import MISSING_RETRY
from harness.httproutes import GROUP, OPNS, VERSION, World, home, world_fixture
from harness.waiting import wait_for

__all__ = ["world_fixture"]  # fixture

OWN = "11111111-1111-1111-1111-111111111111"
LISTED = "22222222-2222-2222-2222-222222222222"
OTHER = "33333333-3333-3333-3333-333333333333"
ACCOUNT = "a" * 32
PROTECTED = {"access.enabled": "true", "access.allowEmails": "alice@example.org"}


def tenant(**spec: Any) -> d.Tenant:
    return d.tenant_from_body({"metadata": {"name": "home", "namespace": OPNS},
                               "spec": {"accountId": ACCOUNT, "tunnelId": OWN, "credentialRef": {"name": "cf"},
                                        **spec}})


def settings(tunnel_id: str | None) -> RouteSettings:
    return RouteSettings(hostname="x.example.com", tenant="home", template=None, tunnel_id=tunnel_id,
                         origin_service="http://x.apps.svc.cluster.local:80")


class Ledger:
    """The one call :func:`read.tunnel_claims` makes: ``list(kind=...)``."""

    def __init__(self, *claims: Claim) -> None:
        self.claims, self.asked = list(claims), 0

    async def list(self, *, kind: str | None = None, **_: Any) -> list[Claim]:
        self.asked += 1
        return [claim for claim in self.claims if kind in (None, claim.kind)]


def check(ledger: Ledger, tunnel_id: str | None, **spec: Any) -> None:
    """The tunnel claims read (when needed), then the check of :func:`decide.check`, raised as the reconcile does."""
    route, home_tenant = settings(tunnel_id), tenant(**spec)
    claims = asyncio.run(read.tunnel_claims(cast(Any, ledger), route, home_tenant))
    if refusal := decide.check(route, home_tenant, "default", "HTTPRoute/apps/x", claims):
        raise Problem(*refusal, decide.DELAYS.get(refusal[0]))


def gateway_tunnel(tunnel_id: str) -> Claim:
    return Claim(kind="tunnel", key=f"{ACCOUNT}/edge", source="ChuteGateway/team/edge",
                 entries={"tunnel": {"id": tunnel_id, "account": ACCOUNT, "since": "2026-01-01T00:00:00Z"}},
                 claimed_at="2026-01-01T00:00:00Z")


# --- the tenant's allowedTunnelIds -------------------------------------------------------------------------


def test_allowed_tunnel_ids_are_tunnel_uuids_read_in_lower_case() -> None:
    assert tenant().allowed_tunnel_ids == ()
    assert tenant(allowedTunnelIds=[LISTED.upper()]).allowed_tunnel_ids == (LISTED,)
    with pytest.raises(d.TenantError, match=r"spec\.allowedTunnelIds\[1\]: 'vpn' is not a tunnel UUID"):
        tenant(allowedTunnelIds=[LISTED, "vpn"])
    with pytest.raises(d.TenantError, match=r"spec\.allowedTunnelIds must be a list"):
        tenant(allowedTunnelIds=LISTED)


def test_the_annotation_may_name_the_tenants_tunnel_or_a_listed_one() -> None:
    ledger = Ledger(gateway_tunnel(OTHER))
    check(ledger, None)
    check(ledger, OWN)
    assert ledger.asked == 0  # the tenant's own tunnel: nothing to look up
    check(ledger, LISTED, allowedTunnelIds=[LISTED])
    assert ledger.asked == 1


def test_any_other_tunnel_is_refused_naming_it_and_the_remedy() -> None:
    with pytest.raises(Problem) as refused:
        check(Ledger(), OTHER, allowedTunnelIds=[LISTED])
    assert refused.value.reason == c.INVALID_SPEC and refused.value.delay is None
    assert OTHER in refused.value.message and "spec.allowedTunnelIds" in refused.value.message
    assert f"CloudflareZeroTrustTenant {OPNS}/home" in refused.value.message


def test_a_listed_tunnel_that_a_gateway_claims_is_refused() -> None:
    with pytest.raises(Problem) as refused:
        check(Ledger(gateway_tunnel(LISTED)), LISTED, allowedTunnelIds=[LISTED])
    assert refused.value.reason == c.INVALID_SPEC
    assert LISTED in refused.value.message and "ChuteGateway/team/edge" in refused.value.message


# --- a tenant change whose old tenant is gone ---------------------------------------------------------------


def recorded(account: str, zone: str = "z1") -> Claim:
    return Claim(kind="hostname", key="web.example.com", source="HTTPRoute/apps/web", claimed_at="",
                 entries={"access_app": {"id": "app1", "account": account, "name": "cfzt-web.example.com"},
                          "dns": {"zone": zone, "type": "CNAME", "since": "2026-01-01T00:00:00Z"}})


def reusable(claim: Claim, old_tenant: str, new_tenant: d.Tenant, zone_id: str) -> None:
    """:func:`decide.reusable`, its refusal raised as the reconcile does."""
    if refusal := decide.reusable(claim, old_tenant, new_tenant, zone_id):
        raise Problem(*refusal, decide.DELAYS.get(refusal[0]))


def test_what_the_claim_records_is_reused_in_the_same_account_and_zone() -> None:
    reusable(recorded(ACCOUNT), "old", tenant(), "z1")


@pytest.mark.parametrize(("claim", "where"), [(recorded("f" * 32), f"account {'f' * 32}"),
                                              (recorded(ACCOUNT, "z2"), "zone z2")])
def test_elsewhere_the_move_waits_for_the_old_objects(claim: Claim, where: str) -> None:
    with pytest.raises(Problem) as refused:
        reusable(claim, "old", tenant(), "z1")
    assert refused.value.reason == c.TENANT_NOT_FOUND and refused.value.delay == MISSING_RETRY
    assert where in refused.value.message and "'old'" in refused.value.message
    assert "create CloudflareZeroTrustTenant 'old' again" in refused.value.message


# --- against both emulators -----------------------------------------------------------------------------------


def tunnel_claim(world: World, tunnel_id: str, source: str = "ChuteGateway/team/edge") -> None:
    """A ChuteGateway's tunnel claim in the ledger (the operator namespace), as its door records it."""
    key = f"{world.account}/edge"
    kind, namespace, _name = source.split("/")
    world.namespace(OPNS)
    world.core.create_namespaced_config_map(OPNS, {
        "metadata": {"name": claim_name("default", "tunnel", key), "labels": {
            MANAGED_BY: MANAGER, LABEL_OWNER: "default", LABEL_KIND: "tunnel", LABEL_SOURCE_KIND: kind,
            LABEL_SOURCE_NAMESPACE: namespace, LABEL_SOURCE_HASH: source_hash(source)}},
        "data": {"kind": "tunnel", "key": key, "source": source, "claimed_at": "2026-01-01T00:00:00Z",
                 "tunnel": json.dumps({"id": tunnel_id, "account": world.account})}})


def test_a_route_reaches_a_listed_tunnel_and_never_an_unlisted_or_a_gateways_one(world: World) -> None:
    extra, edge = world.make_tunnel("extra"), world.make_tunnel("edge")
    tunnel_claim(world, edge)
    home(world)
    world.route("x", "x.example.com", tunnelId=extra)
    refused = world.wait_reason("x", c.INVALID_SPEC)
    assert extra in refused["message"] and "allowedTunnelIds" in refused["message"]
    world.quiesce()
    assert "x.example.com" not in world.claims() and world.records("x.example.com") == []
    assert world.rule("x.example.com", extra) is None and world.state("x") is None

    world.custom.patch_namespaced_custom_object(GROUP, VERSION, OPNS, "cloudflarezerotrusttenants", "home",
                                                {"spec": {"allowedTunnelIds": [extra, edge]}})
    world.wait_ready("x")  # the tenant's change re-checks its routes
    assert world.rule("x.example.com", extra) is not None
    assert [r["content"] for r in world.records("x.example.com")] == [f"{extra}.cfargotunnel.com"]

    world.route("y", "y.example.com", tunnelId=edge)  # listed, but a ChuteGateway's own tunnel
    refused = world.wait_reason("y", c.INVALID_SPEC)
    assert edge in refused["message"] and "ChuteGateway/team/edge" in refused["message"]
    world.quiesce()
    assert "y.example.com" not in world.claims() and world.ingress(edge) == []


def test_a_colliding_state_name_is_refused_and_the_other_route_is_never_touched(world: World) -> None:
    home(world, sweep=0.5)
    world.route("blog", "blog.example.com", namespace="team-a", **{"serviceToken.enabled": "true"})
    world.wait_ready("blog", "team-a")
    secret, state = world.secret("cfzt-svctoken-blog", "team-a"), world.state("blog", "team-a")
    claim = world.claims()["blog.example.com"]
    assert secret is not None and state is not None

    world.route("a-blog", "news.example.com", namespace="team", **{"serviceToken.enabled": "true"})
    refused = world.wait_reason("a-blog", c.INVALID_SPEC, namespace="team")
    assert "HTTPRoute team-a/blog" in refused["message"] and "rename" in refused["message"]
    world.quiesce()
    assert "news.example.com" not in world.claims() and world.records("news.example.com") == []
    assert world.secret("cfzt-svctoken-a-blog", "team") is None

    world.annotate("a-blog", namespace="team", enabled="false")  # disabled, then deleted: its cleanup
    world.quiesce(quiet=1.2, timeout=5.0)  # (and a few passes of the tenant sweep)
    world.delete_route("a-blog", namespace="team")
    world.quiesce(quiet=1.2, timeout=5.0)

    assert world.secret("cfzt-svctoken-blog", "team-a") == secret
    assert world.state("blog", "team-a") == state
    assert world.claims()["blog.example.com"] == claim
    assert world.ready("blog", "team-a")["status"] == "True"


def test_a_tenant_change_to_another_account_waits_while_the_old_tenants_objects_are_recorded(world: World) -> None:
    home(world)
    world.route("web", "web.example.com", **PROTECTED)
    world.wait_ready("web")
    [app] = world.apps("web.example.com")
    elsewhere = "f" * 32  # as if the old tenant's account were another one
    [name] = [item.metadata.name for item in world.core.list_namespaced_config_map(
        OPNS, label_selector=f"{LABEL_KIND}=hostname").items if (item.data or {}).get("key") == "web.example.com"]
    world.core.patch_namespaced_config_map(name, OPNS, {"data": {"access_app": json.dumps(
        {**world.claims()["web.example.com"]["access_app"], "account": elsewhere})}})

    world.custom.delete_namespaced_custom_object(GROUP, VERSION, OPNS, "cloudflarezerotrusttenants", "home")
    world.tenant("other")
    world.annotate("web", tenant="other")
    refused = wait_for("the move refused", lambda: (r := world.ready("web")).get("reason") == c.TENANT_NOT_FOUND
                       and elsewhere in r.get("message", "") and r)
    assert "'home'" in refused["message"] and "again" in refused["message"]
    world.quiesce()

    claim = world.claims()["web.example.com"]
    assert claim["source"] == "HTTPRoute/apps/web" and claim["access_app"]["id"] == app["id"]
    assert app["id"] in world.snapshot()["access_apps"]
    assert world.state("web")["tenant_name"] == "home"  # type: ignore[index]
