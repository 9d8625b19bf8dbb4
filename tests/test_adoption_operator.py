"""Adoption, only when asked: the real operator against both emulators. A DNS record and an Access
application for the hostname that carry no chutes-operator marker (made by hand) are a conflict and stay
untouched, unless the source object asks for adoption (annotation ``chutes.troubleshat.com/adopt: "true"``
or ``ChuteGateway.spec.adopt``) and the operator permits it (``allow_adoption``, or a hostname rule with
``adopt: true``); then they are taken over: same ids, our content, our marker, our name. A
record marked by ANOTHER installation is never taken over.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cloudflare as cf_sdk
import pytest

from chutes.cloudflare_core.ownership import marker
from chutes.cloudflare_core.ownership import parse as parse_marker
from chutes.frontdoors.adoption import ADOPT_ANNOTATION
from harness import httproutes as routes
from harness.gateways import GROUP, NS, VERSION, World
from harness.waiting import wait_for

HOSTNAME = "blog.example.com"
HAND_MADE = "made by hand"


@pytest.fixture()
def world(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare, start=True)


@pytest.fixture()
def adopting(kube: Any, cloudflare: Any) -> Iterator[World]:
    """The gateway door of an operator that permits adoption everywhere (``allow_adoption``)."""
    yield from World.opened(kube, cloudflare, start=True, allow_adoption=True)


def sdk(cf: Any) -> cf_sdk.Cloudflare:
    return cf_sdk.Cloudflare(api_token=cf.token, base_url=cf.base_url, max_retries=0)


def hand_made_cname(cf: Any, name: str, comment: str | None = HAND_MADE) -> str:
    with sdk(cf) as client:
        created = client.dns.records.create(  # type: ignore[call-overload]
            zone_id=cf.zone_id("example.com"), name=name, type="CNAME", content="legacy.example.org", proxied=True,
            ttl=1, **({"comment": comment} if comment is not None else {}))
    return str(created.id)


def hand_made_app(cf: Any, domain: str, name: str = "hand-made") -> str:
    with sdk(cf) as client:
        created = client.zero_trust.access.applications.create(
            account_id=cf.account_id, type="self_hosted", domain=domain, name=name, session_duration="1h")
    assert created is not None
    return str(created.id)  # type: ignore[union-attr]


def record_of(world: World | routes.World, name: str) -> dict[str, Any]:
    [record] = world.records(name)
    return record


def gateway(world: World, *, annotate: bool = False, **spec: Any) -> None:
    """The gateway "blog", created with the adoption annotation when `annotate`."""
    world.namespace(NS)
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChuteGateway",
        "metadata": {"name": "blog", **({"annotations": {ADOPT_ANNOTATION: "true"}} if annotate else {})},
        "spec": {"configRef": "default", "hostname": "blog", "service": {"name": "web", "port": 8080},
                 "access": {"allowedEmails": ["alice@example.org"]}, "replicas": 1, **spec},
    }
    world.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", body)


# --- ChuteGateway ------------------------------------------------------------------------------------


def test_without_adoption_a_hand_made_record_and_app_are_a_conflict_and_stay_untouched(world: World) -> None:
    record_id = hand_made_cname(world.cf, HOSTNAME)
    app_id = hand_made_app(world.cf, HOSTNAME)
    before_record, before_apps = record_of(world, HOSTNAME), world.apps_for(HOSTNAME)
    world.ready_config()
    world.service()
    gateway(world)

    refused = world.wait_reason("HostnameConflict")
    assert HOSTNAME in world.condition(refused)["message"]
    assert record_of(world, HOSTNAME) == before_record and before_record["id"] == record_id
    assert world.apps_for(HOSTNAME) == before_apps and before_apps[0]["id"] == app_id
    assert world.live_tunnels() == []  # refused before anything was written
    wait_for("the HostnameConflict Warning Event", lambda: ("Warning", "HostnameConflict") in {
        (t, r) for t, r, _ in world.events("blog")})  # posted after the condition: it may come a moment later


@pytest.mark.parametrize("how", ["annotation", "spec"])
def test_asked_adoption_takes_the_hand_made_record_and_app_over(adopting: World, how: str) -> None:
    world = adopting
    record_id = hand_made_cname(world.cf, HOSTNAME)
    app_id = hand_made_app(world.cf, HOSTNAME)
    world.ready_config()
    world.service()
    if how == "annotation":
        gateway(world, annotate=True)
    else:
        gateway(world, adopt=True)

    published = world.ready_gateway()
    [tunnel] = world.live_tunnels()
    record = record_of(world, HOSTNAME)
    assert record["id"] == record_id == published["status"]["dnsRecordId"]  # taken over, not replaced
    assert record["content"] == f"{tunnel['id']}.cfargotunnel.com" and record["proxied"] is True
    ownership = parse_marker(record["comment"])
    assert ownership is not None and (ownership.owner_id, ownership.source) == ("default", f"ChuteGateway/{NS}/blog")
    [app] = world.apps_for(HOSTNAME)
    assert app["id"] == app_id == published["status"]["accessAppId"]
    assert app["name"] == f"chute-{NS}-blog"
    assert app["session_duration"] == "24h"  # our settings, not the hand-made app's 1h
    assert world.condition(published)["reason"] == "Reconciled"


def test_adding_the_annotation_to_a_refused_gateway_takes_over_at_once(adopting: World) -> None:
    world = adopting
    record_id = hand_made_cname(world.cf, HOSTNAME, comment=None)  # no comment at all: also unmarked
    world.ready_config()
    world.service()
    gateway(world)
    world.wait_reason("HostnameConflict")

    world.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog",
                                                {"metadata": {"annotations": {ADOPT_ANNOTATION: "true"}}})
    world.ready_gateway()  # well before the conflict's retry delay (minutes)
    record = record_of(world, HOSTNAME)
    assert record["id"] == record_id
    assert parse_marker(record["comment"]) is not None


def test_a_record_of_another_installation_is_never_adopted(adopting: World) -> None:
    world = adopting
    theirs = marker("other", f"ChuteGateway/{NS}/blog")
    hand_made_cname(world.cf, HOSTNAME, comment=theirs)
    before = record_of(world, HOSTNAME)
    world.ready_config()
    world.service()
    gateway(world, annotate=True, adopt=True)

    world.wait_reason("HostnameConflict")
    assert record_of(world, HOSTNAME) == before
    assert world.live_tunnels() == []
    assert world.apps_for(HOSTNAME) == []


# --- HTTPRoute ----------------------------------------------------------------------------------------

ROUTE_HOST = "app.example.com"


def annotated_route(world: routes.World, name: str = "app", *, adopt: bool) -> None:
    world.namespace("apps")
    annotations = {routes.P + "enabled": "true", routes.P + "tenant": "home", routes.P + "hostname": ROUTE_HOST,
                   routes.P + "access.enabled": "true", routes.P + "access.allowEmails": "alice@example.org"}
    if adopt:
        annotations[ADOPT_ANNOTATION] = "true"
    body = {"apiVersion": f"{routes.RG}/{routes.RV}", "kind": "HTTPRoute",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"parentRefs": [{"name": "default"}], "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}}
    world.custom.create_namespaced_custom_object(routes.RG, routes.RV, "apps", "httproutes", body)


@pytest.fixture()
def route_world(kube: Any, cloudflare: Any) -> Iterator[routes.World]:
    yield from routes.World.opened(kube, cloudflare)


def test_httproute_without_adoption_is_refused_and_leaves_the_hand_made_record(route_world: routes.World) -> None:
    world = route_world
    hand_made_cname(world.cf, ROUTE_HOST)
    before = record_of(world, ROUTE_HOST)
    routes.home(world)
    annotated_route(world, adopt=False)

    refused = world.wait_reason("app", "HostnameConflict")
    assert ROUTE_HOST in refused["message"]
    assert record_of(world, ROUTE_HOST) == before
    assert world.rule(ROUTE_HOST) is None and world.apps(ROUTE_HOST) == []


def test_httproute_asking_without_the_operators_permission_is_refused(route_world: routes.World) -> None:
    world = route_world
    hand_made_cname(world.cf, ROUTE_HOST)
    app_id = hand_made_app(world.cf, ROUTE_HOST)
    before = record_of(world, ROUTE_HOST)
    routes.home(world)  # allowAdoption off, no hostname rules
    annotated_route(world, adopt=True)

    refused = world.wait_reason("app", "HostnameConflict")
    assert ROUTE_HOST in refused["message"] and "adoption is not permitted by the operator" in refused["message"]
    assert record_of(world, ROUTE_HOST) == before
    assert world.rule(ROUTE_HOST) is None and [app["id"] for app in world.apps(ROUTE_HOST)] == [app_id]


def test_httproute_with_the_annotation_takes_the_record_and_app_over(route_world: routes.World) -> None:
    world = route_world
    record_id = hand_made_cname(world.cf, ROUTE_HOST)
    app_id = hand_made_app(world.cf, ROUTE_HOST)
    routes.home(world, allow_adoption=True)
    annotated_route(world, adopt=True)

    world.wait_ready("app")
    record = record_of(world, ROUTE_HOST)
    assert record["id"] == record_id
    assert record["content"] == f"{world.tunnel}.cfargotunnel.com"
    ownership = parse_marker(record["comment"])
    assert ownership is not None and (ownership.owner_id, ownership.source) == ("default", "HTTPRoute/apps/app")
    assert world.rule(ROUTE_HOST) is not None
    [app] = world.apps(ROUTE_HOST)
    assert (app["id"], app["name"]) == (app_id, f"cfzt-{ROUTE_HOST}")
    state = world.state("app")
    assert state is not None and state["cname_record_id"] == record_id


def test_httproute_never_adopts_a_record_of_another_installation(route_world: routes.World) -> None:
    world = route_world
    hand_made_cname(world.cf, ROUTE_HOST, comment=marker("other", "HTTPRoute/apps/app"))
    before = record_of(world, ROUTE_HOST)
    routes.home(world, allow_adoption=True)
    annotated_route(world, adopt=True)

    world.wait_reason("app", "HostnameConflict")
    assert record_of(world, ROUTE_HOST) == before
    assert world.apps(ROUTE_HOST) == []


def test_a_refused_route_is_taken_over_once_annotated(route_world: routes.World) -> None:
    world = route_world
    record_id = hand_made_cname(world.cf, ROUTE_HOST)
    routes.home(world, allow_adoption=True)
    annotated_route(world, adopt=False)
    world.wait_reason("app", "HostnameConflict")

    world.custom.patch_namespaced_custom_object(routes.RG, routes.RV, "apps", "httproutes", "app",
                                                {"metadata": {"annotations": {ADOPT_ANNOTATION: "true"}}})
    world.wait_ready("app")
    assert record_of(world, ROUTE_HOST)["id"] == record_id
    assert wait_for("the record marked", lambda: parse_marker(record_of(world, ROUTE_HOST)["comment"]))


# --- session Pods --------------------------------------------------------------------------------------


def test_a_session_pod_asking_for_adoption_takes_over_an_unmarked_cname_and_another_waits(
        kube: Any, cloudflare: Any) -> None:
    from harness import sessions as h

    tunnel = h.create_tunnel(cloudflare)
    h.create_foreign_record(cloudflare, h.hostname("aaaa11112222"), content="legacy.example.org", type_="CNAME")
    h.create_foreign_record(cloudflare, h.hostname("bbbb33334444"), content="legacy.example.org", type_="CNAME")
    api = h.kube_client(kube)
    try:
        with h.operator(cloudflare, h.session_env(cloudflare, tunnel), allow_adoption=True):
            adopting = h.pod("adopting", "aaaa11112222")
            adopting["metadata"]["annotations"] = {ADOPT_ANNOTATION: "true"}
            h.create_pod(api, adopting)
            h.create_pod(api, h.pod("waiting", "bbbb33334444"))
            wait_for("adopted", lambda: "aaaa11112222" in h.published(cloudflare, api, tunnel).sessions())
            events = wait_for("an Event on the refused Pod", lambda: h.events_for(api, "waiting"))
            assert [(e.type, e.reason) for e in events] == [("Warning", "HostnameConflict")]

            zone = cloudflare.snapshot()["dns_records"][cloudflare.zone_id(h.ZONE)]
            [taken] = [r for r in zone if r["name"] == h.hostname("aaaa11112222")]
            ownership = parse_marker(taken["comment"])
            assert ownership is not None and ownership.source == f"Session/{h.NAMESPACE}/aaaa11112222"
            assert taken["content"] == f"{tunnel}.cfargotunnel.com"
            [kept] = [r for r in zone if r["name"] == h.hostname("bbbb33334444")]
            assert (kept["content"], kept["comment"]) == ("legacy.example.org", "someone else's")
            assert h.published(cloudflare, api, tunnel).sessions() == {"aaaa11112222"}
    finally:
        api.close()  # type: ignore[no-untyped-call]
