"""What route settings mean in Cloudflare (payloads as the seed sends them), tenants, zones, hostname claims,
names and the handler filters. Pure: no emulator."""

from __future__ import annotations

from typing import Any

import pytest

from chutes.cloudflare_core import InvalidInput
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes.handlers import index_route, inputs_changed
from chutes.frontdoors.httproutes.merge import NamedSpec, RouteSettings, merge
from chutes.frontdoors.httproutes.state import RouteState, from_configmap

P = "cfzt.cloudflare.com/"
TUNNEL = "12345678-1234-1234-1234-123456789abc"


def settings(template: dict[str, Any] | None = None, **annotations: str) -> RouteSettings:
    values = {P + "hostname": "app.example.com", P + "tenant": "home", **{P + k: v for k, v in annotations.items()}}
    body = {"metadata": {"name": "r", "namespace": "apps"},
            "spec": {"rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}}
    return merge(values, body, NamedSpec("t", template) if template else None, None)


def test_https_origin_gets_the_seeds_origin_request() -> None:
    rule = d.ingress_rule(settings(**{"origin.url": "https://traefik.traefik.svc:443", "origin.noTLSVerify": "true"}))
    assert rule.to_wire() == {
        "hostname": "app.example.com",
        "service": "https://traefik.traefik.svc:443",
        "originRequest": {"httpHostHeader": "app.example.com", "noTLSVerify": True, "keepAliveConnections": 100,
                          "originServerName": "app.example.com", "tlsTimeout": 10, "http2Origin": False},
    }


def test_origin_tls_options_from_a_template() -> None:
    template = {"originService": {"url": "https://o:443", "originTLS": {
        "originServerName": "origin.internal", "caPool": "/etc/ca.pem", "tlsTimeout": 30, "http2Origin": True,
        "matchSNIToHost": True}}}
    request = d.ingress_rule(settings(template)).to_wire()["originRequest"]
    assert request == {"httpHostHeader": "app.example.com", "noTLSVerify": False, "keepAliveConnections": 100,
                       "originServerName": "origin.internal", "caPool": "/etc/ca.pem", "tlsTimeout": 30,
                       "http2Origin": True, "matchSNItoHost": True}


def test_http_origin_is_hostname_and_service_only() -> None:
    assert d.ingress_rule(settings()).to_wire() == {"hostname": "app.example.com",
                                                    "service": "http://web.apps.svc.cluster.local:8080"}


def test_tunnel_cname_is_proxied_to_the_tunnel() -> None:
    record = d.tunnel_cname("app.example.com", TUNNEL, "HTTPRoute/apps/r")
    assert (record.type, record.content, record.proxied, record.effective_ttl) == (
        "CNAME", f"{TUNNEL}.cfargotunnel.com", True, 1)


def test_address_records_follow_the_ip_family_and_dns_only_settings() -> None:
    dns_only = settings({"dnsOnly": {"enabled": True, "proxied": False, "ttl": 300}}, dnsIp="10.1.2.3").dns_only
    four = d.address_record("nas.example.com", "10.1.2.3", dns_only, "HTTPRoute/apps/r")
    six = d.address_record("nas.example.com", "2001:db8::1", dns_only, "HTTPRoute/apps/r")
    assert (four.type, four.content, four.proxied, four.ttl) == ("A", "10.1.2.3", False, 300)
    assert six.type == "AAAA"
    short = settings({"dnsOnly": {"enabled": True, "ttl": 5}}, dnsIp="10.1.2.3").dns_only
    with pytest.raises(InvalidInput, match="TTL"):
        d.address_record("nas.example.com", "10.1.2.3", short, "HTTPRoute/apps/r")


def test_access_app_spec_carries_the_seeds_settings() -> None:
    template = {"accessApplication": {"enabled": True, "sessionDuration": "8h", "skipInterstitial": True,
                                      "customDenyMessage": "no", "logoUrl": ""}}
    spec = d.access_app_spec(settings(template, **{"access.autoRedirectToIdentity": "true"}), ("p1", "p2"))
    assert (spec.name, spec.domain, spec.session_duration, spec.auto_redirect_to_identity, spec.policies) == (
        "cfzt-app.example.com", "app.example.com", "8h", True, ("p1", "p2"))
    assert dict(spec.extra) == {"enable_binding_cookie": False, "http_only_cookie_attribute": True,
                                "same_site_cookie_attribute": "lax", "skip_interstitial": True,
                                "app_launcher_visible": True, "service_auth_401_redirect": False,
                                "custom_deny_message": "no"}


def test_allow_policy_only_with_groups_or_emails() -> None:
    assert d.allow_policy_spec(settings(**{"access.enabled": "true"})) is None
    spec = d.allow_policy_spec(settings(**{"access.allowGroups": "g1", "access.allowEmails": "a@x.org"}))
    assert spec is not None
    assert (spec.name, spec.decision, spec.precedence) == ("cfzt-app.example.com-allow", "allow", d.ALLOW_PRECEDENCE)
    assert spec.include == ({"group": {"id": "g1"}}, {"email": {"email": "a@x.org"}})


def test_names_are_the_seeds() -> None:
    assert a.app_name("h.example.com") == "cfzt-h.example.com"
    assert a.token_name("h.example.com") == "cfzt-h.example.com"
    assert a.secret_name("web") == "cfzt-svctoken-web"
    assert a.state_name("apps", "web") == "cfzt-apps-web"
    assert a.base_template_name("home") == "base-home"


def test_zone_candidates_start_with_the_two_label_apex() -> None:
    assert d.zone_candidates("a.b.example.co.uk") == ["co.uk", "example.co.uk", "b.example.co.uk",
                                                      "a.b.example.co.uk"]
    assert d.zone_candidates("*.example.com") == ["example.com"]
    assert d.in_zone("app.example.com", "example.com") and d.in_zone("example.com", "example.com")
    assert not d.in_zone("app.example.net", "example.com") and not d.in_zone("badexample.com", "example.com")


def tenant_body(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "home", "namespace": "ops", "generation": 2},
            "spec": {"accountId": "a" * 32, "tunnelId": TUNNEL, "credentialRef": {"name": "cf"}, **spec}}


def test_tenant_from_body() -> None:
    tenant = d.tenant_from_body(tenant_body(zoneId="b" * 32))
    assert (tenant.ref, tenant.credential_key, tenant.zone_id, tenant.tunnel_id) == ("ops/home", "token", "b" * 32,
                                                                                    TUNNEL)


@pytest.mark.parametrize(("spec", "message"), [
    ({"accountId": ""}, "spec.accountId is required"),
    ({"credentialRef": {}}, "spec.credentialRef.name is required"),
    ({"tunnelId": "home"}, "spec.tunnelId: 'home' is not a tunnel UUID"),
])
def test_unusable_tenants_are_named(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(d.TenantError, match=message):
        d.tenant_from_body(tenant_body(**spec))


def ref(created: str, name: str) -> d.RouteRef:
    return d.RouteRef(created=created, namespace="apps", name=name, hostname="h.example.com")


def test_the_holder_keeps_a_hostname_else_the_oldest_route() -> None:
    old, new = ref("2024-01-01T00:00:00Z", "old"), ref("2024-06-01T00:00:00Z", "new")
    assert d.claim_winner([new, old], set()) == old
    assert d.claim_winner([new, old], {new.key}) == new
    assert d.claim_winner([new, old], {new.key, old.key}) == old
    same_time = ref("2024-01-01T00:00:00Z", "a-first")
    assert d.claim_winner([old, same_time], set()) == same_time


def test_index_keys_and_update_filter() -> None:
    body = {"metadata": {"name": "r", "namespace": "apps", "creationTimestamp": "t",
                         "annotations": {a.HOSTNAME: "App.Example.com", a.TENANT: "home", a.TEMPLATE: "tpl"}}}
    keys = index_route(body)
    assert set(keys) == {("hostname", "app.example.com"), ("tenant", "home"), ("template", "tpl")}
    old = {"metadata": {"annotations": {a.HOSTNAME: "h"}}, "spec": {"x": 1}}
    assert not inputs_changed(old, {"metadata": {"annotations": {a.HOSTNAME: "h", a.CONDITIONS: "[]",
                                                                 a.ACCESS_APP_ID: "i", "other": "o"}},
                                    "spec": {"x": 1}})
    assert inputs_changed(old, {"metadata": {"annotations": {a.HOSTNAME: "h2"}}, "spec": {"x": 1}})
    assert inputs_changed(old, {"metadata": {"annotations": {a.HOSTNAME: "h"}}, "spec": {"x": 2}})


def test_state_round_trip_and_result_annotations() -> None:
    configmap = {"metadata": {"labels": {a.LABEL_ROUTE_NAMESPACE: "apps", a.LABEL_ROUTE_NAME: "r"}},
                 "data": {"hostname": "h.example.com", "tenant_name": "home", "cname_record_id": "c1",
                          "hostname_route_id": TUNNEL, "annotation_hash": "x"}}
    state = from_configmap(configmap)
    assert state is not None and state.published and state.name == "cfzt-apps-r"
    assert state.labels() == {"app.kubernetes.io/managed-by": "cfzt-operator", a.LABEL_ROUTE_NAME: "r",
                              a.LABEL_ROUTE_NAMESPACE: "apps", a.LABEL_TENANT: "home"}
    results = state.result_annotations()
    assert results[a.CNAME_RECORD_ID] == "c1" and results[a.HOSTNAME_ROUTE_ID] == TUNNEL
    assert results[a.DNS_RECORD_ID] is None
    assert from_configmap({"metadata": {}, "data": {}}) is None
    assert not RouteState("apps", "r", {"hostname": "h"}).published
