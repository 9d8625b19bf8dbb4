"""Adoption is asked for per object (pure): the annotation on a ChuteGateway, HTTPRoute or session Pod, or
``ChuteGateway.spec.adopt``; and each front door carries the request into what it asks of the core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from chutes.cloudflare_core import Conflict, DnsRecord
from chutes.cloudflare_core.dns import _Request, change_for
from chutes.cloudflare_core.ownership import marker
from chutes.frontdoors import adoption
from chutes.frontdoors.httproutes import desired as route_desired
from chutes.frontdoors.httproutes.merge import merge
from chutes.frontdoors.sessions import desired as session_desired
from chutes.frontdoors.sessions.config import load_config

REPO = Path(__file__).resolve().parents[1]
KEY = "chutes.troubleshat.com/adopt"


def body(annotations: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x", **({"annotations": annotations} if annotations is not None else {})},
            "spec": spec}


@pytest.mark.parametrize(("value", "asked"), [
    ("true", True), ("True", True), (" TRUE ", True),
    ("false", False), ("yes", False), ("1", False), ("", False), (None, False),
])
def test_only_a_true_annotation_asks_for_adoption(value: str | None, asked: bool) -> None:
    annotations = {} if value is None else {KEY: value}
    assert adoption.annotation_requests(annotations) is asked
    assert adoption.source_requests(body(annotations)) is asked
    assert adoption.gateway_requests(body(annotations)) is asked


def test_a_gateway_asks_with_its_spec_field_or_the_annotation() -> None:
    assert adoption.gateway_requests(body(adopt=True))
    assert not adoption.gateway_requests(body(adopt=False))
    assert not adoption.gateway_requests(body(adopt="true"))  # the schema says boolean: a string is not a yes
    assert not adoption.gateway_requests(body())
    assert adoption.gateway_requests(body({KEY: "true"}, adopt=False))
    assert not adoption.gateway_requests({"metadata": {"name": "x"}})  # no spec at all


def test_other_annotations_and_prefixes_do_not_count() -> None:
    assert not adoption.annotation_requests({"cfzt.cloudflare.com/adopt": "true"})
    assert not adoption.annotation_requests(None)


def test_the_crd_and_its_chart_copy_define_spec_adopt_as_a_boolean_defaulting_to_false() -> None:
    for path in (REPO / "crds" / "chutegateways.yaml", REPO / "charts" / "chutes-operator" / "crds" /
                 "chutegateways.yaml"):
        crd = yaml.safe_load(path.read_text())
        [version] = crd["spec"]["versions"]
        field = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["adopt"]
        assert field["type"] == "boolean" and field["default"] is False and field["description"]


# --- each front door passes it on ---------------------------------------------------------------------

SESSION_CONFIG = load_config({
    "CF_API_TOKEN": "t", "CF_ZONE_ID": "0123456789abcdef0123456789abcdef",
    "CF_TUNNEL_ID": "6ff42ae2-765d-4adf-8112-31c55c1551ef", "DOMAIN": "example.org",
    "ROUTER_SERVICE_URL": "http://router:80", "WATCH_NAMESPACE": "ns1",
})


def session_pod(name: str, session_hash: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns1", "uid": name, "creationTimestamp": "2024-01-01T00:00:00Z",
                         "labels": {"opencode.ai/session-hash": session_hash,
                                    "app.kubernetes.io/managed-by": "opencode-router"},
                         "annotations": annotations or {}}}


def test_session_records_carry_the_adoption_of_their_pods() -> None:
    sessions, refused = session_desired.sessions_from_pods(SESSION_CONFIG, [
        session_pod("a", "abc", {KEY: "true"}), session_pod("b", "abc"), session_pod("c", "def"),
    ])
    assert refused == []
    assert sessions["abc"].adopt and not sessions["def"].adopt
    assert session_desired.dns_record(SESSION_CONFIG, sessions["abc"]).adopt
    assert not session_desired.dns_record(SESSION_CONFIG, sessions["def"]).adopt


def test_route_records_and_access_app_carry_the_adoption() -> None:
    route = {"metadata": {"name": "r", "namespace": "apps", "annotations": {}}, "spec": {"rules": [
        {"backendRefs": [{"name": "web", "port": 8080}]}]}}
    settings = merge({"cfzt.cloudflare.com/hostname": "app.example.com", "cfzt.cloudflare.com/tenant": "home",
                      "cfzt.cloudflare.com/access.enabled": "true"},
                     route, None, None)
    tunnel = "6ff42ae2-765d-4adf-8112-31c55c1551ef"
    assert route_desired.tunnel_cname("app.example.com", tunnel, "HTTPRoute/apps/r", adopt=True).adopt
    assert not route_desired.tunnel_cname("app.example.com", tunnel, "HTTPRoute/apps/r").adopt
    assert route_desired.access_app_spec(settings, (), adopt=True).adopt
    assert not route_desired.access_app_spec(settings, ()).adopt


@pytest.mark.parametrize(("comment", "type_", "adopt", "taken_over"), [
    (None, "CNAME", True, True),
    ("made by hand", "CNAME", True, True),
    ("made by hand", "CNAME", False, False),
    (marker("other", "HTTPRoute/apps/r"), "CNAME", True, False),  # another installation's: never
    (marker("default", "HTTPRoute/apps/other"), "CNAME", True, False),  # another source's: never
    ("made by hand", "A", True, False),  # another type: the DNS writer does not change types
])
async def test_a_route_asking_for_adoption_takes_over_only_an_unmarked_record_of_its_type(
        comment: str | None, type_: str, adopt: bool, taken_over: bool) -> None:
    """The route's record carries its (permitted) request; the core's DNS change decides what it may take."""
    wanted = route_desired.tunnel_cname("app.example.com", "6ff42ae2-765d-4adf-8112-31c55c1551ef",
                                        "HTTPRoute/apps/r", adopt=adopt)
    existing = DnsRecord(id="r1", name="app.example.com", type=type_, content="x", proxied=False, ttl=1,
                         comment=comment)
    request = _Request(name=wanted.name, type=wanted.type, owner_id="default", desired=wanted, source=wanted.source)
    if not taken_over:
        with pytest.raises(Conflict):
            change_for(request, [existing])
        return
    change = change_for(request, [existing])
    assert change is not None and change.patch is not None and change.patch["id"] == "r1"
    assert change.patch["comment"] == marker("default", "HTTPRoute/apps/r")


@pytest.mark.parametrize(("asked", "ready", "now"), [
    (True, {"status": "False", "reason": "HostnameConflict"}, True),
    (False, {"status": "False", "reason": "HostnameConflict"}, False),  # not asked: waits for its retry
    (True, {"status": "False", "reason": "ServiceNotFound"}, False),  # adoption would not help
    (True, {"status": "True", "reason": "Reconciled"}, False),
    (True, None, False),  # not reconciled yet: its own handler runs
])
def test_a_refused_object_asking_for_adoption_is_retried_at_once(
        asked: bool, ready: dict[str, str] | None, now: bool) -> None:
    assert adoption.retry_now(asked, ready) is now
