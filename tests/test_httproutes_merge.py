"""The HTTPRoute settings merge (annotation > template > base template > default), the value parsers and the
seed-compatible annotation hash. Pure: no emulator."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes.merge import MergeError, NamedSpec, RouteSettings, annotation_hash, merge

P = "cfzt.cloudflare.com/"
BASE = {
    "originService": {
        "url": "https://traefik.traefik.svc.cluster.local:443",
        "httpRedirect": True,
        "originTLS": {"noTLSVerify": True, "tlsTimeout": 10, "originServerName": "{{ hostname }}"},
    },
    "accessApplication": {"enabled": False, "sessionDuration": "12h"},
}


def route(namespace: str = "apps", backend: dict[str, Any] | None = None) -> dict[str, Any]:
    ref = backend if backend is not None else {"name": "web", "port": 8080}
    return {"metadata": {"name": "r", "namespace": namespace}, "spec": {"rules": [{"backendRefs": [ref]}]}}


def settings(annotations: dict[str, str] | None = None, template: dict[str, Any] | None = None,
             base: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> RouteSettings:
    values = {P + "hostname": "app.example.com", P + "tenant": "home", **(annotations or {})}
    return merge(values, body or route(), NamedSpec("tpl", template) if template is not None else None,
                 NamedSpec("base-home", base) if base is not None else None)


# --- the merge table -------------------------------------------------------------------------------
MERGE_TABLE: list[tuple[str, dict[str, str], dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]] = [
    ("defaults: origin from the first backendRef", {}, None, None, {
        "origin_service": "http://web.apps.svc.cluster.local:8080", "origin_tls.no_tls_verify": False,
        "origin_tls.tls_timeout": 10, "access.enabled": False, "access.session_duration": "24h",
        "access.http_only_cookie_attribute": True, "access.app_launcher_visible": True,
        "access.same_site_cookie_attribute": "lax", "service_token.duration": "8760h", "dns_only.ttl": 120,
        "http_redirect": True}),
    ("base template applies", {}, None, BASE, {
        "origin_service": "https://traefik.traefik.svc.cluster.local:443", "origin_tls.no_tls_verify": True,
        "access.session_duration": "12h"}),
    ("{{ hostname }} substituted in template strings", {}, {"accessApplication": {
        "customDenyUrl": "https://{{hostname}}/denied"}}, BASE, {
        "origin_tls.origin_server_name": "app.example.com",
        "access.custom_deny_url": "https://app.example.com/denied"}),
    ("template field wins over base, unset fields fall through (no CRD defaults masking)", {},
     {"originService": {"originTLS": {"tlsTimeout": 15}}}, BASE, {
        "origin_tls.tls_timeout": 15, "origin_tls.no_tls_verify": True,
        "origin_service": "https://traefik.traefik.svc.cluster.local:443"}),
    ("annotation wins over template", {P + "access.enabled": "false", P + "origin.noTLSVerify": "no"},
     {"accessApplication": {"enabled": True}}, BASE, {"access.enabled": False, "origin_tls.no_tls_verify": False}),
    ("present but empty annotation wins (key presence)", {P + "access.existingPolicyNames": ""},
     {"accessApplication": {"enabled": True, "existingPolicyNames": ["Team"]}}, None,
     {"access.existing_policy_names": ()}),
    ("CSV annotations are split and stripped", {P + "access.allowEmails": " a@x.org , b@x.org,,",
                                                P + "access.allowGroups": "g1,g2"}, None, None, {
        "access.allow_emails": ("a@x.org", "b@x.org"), "access.allow_groups": ("g1", "g2")}),
    ("template lists", {}, {"accessApplication": {"existingPolicyNames": ["A", "B"], "allowEmails": ["c@x.org"]}},
     None, {"access.existing_policy_names": ("A", "B"), "access.allow_emails": ("c@x.org",)}),
    ("dnsIp annotation overrides dnsOnly.staticIp", {P + "dnsIp": "10.0.0.7"},
     {"dnsOnly": {"enabled": True, "staticIp": "10.0.0.1", "proxied": True, "ttl": 300}}, None, {
        "dns_only.enabled": True, "dns_only.static_ip": "10.0.0.7", "dns_only.proxied": True, "dns_only.ttl": 300,
        "origin_service": ""}),
    ("ingressServiceRef namespace defaults to the route's", {},
     {"dnsOnly": {"enabled": True, "ingressServiceRef": {"name": "traefik"}}}, None, {
        "dns_only.ingress_service.namespace": "apps", "dns_only.ingress_service.name": "traefik"}),
    ("a cross-namespace backendRef keeps its namespace", {}, None, None, {
        "origin_service": "http://web.shared.svc.cluster.local:80"}),  # see CROSS_NAMESPACE
    ("tunnelId annotation", {P + "tunnelId": "12345678-1234-1234-1234-123456789ABC"}, None, None, {
        "tunnel_id": "12345678-1234-1234-1234-123456789abc"}),
    ("service token from annotations", {P + "serviceToken.enabled": "TRUE", P + "serviceToken.duration": "720h"},
     {"serviceToken": {"enabled": False, "duration": "forever"}}, None, {
        "service_token.enabled": True, "service_token.duration": "720h"}),
    ("a template may make a token last forever", {}, {"serviceToken": {"enabled": True, "duration": "forever"}},
     None, {"service_token.duration": "forever"}),
    ("Access cookie and launcher settings", {P + "access.sameSiteCookieAttribute": "None",
                                             P + "access.httpOnlyCookieAttribute": "0"},
     {"accessApplication": {"appLauncherVisible": False, "serviceAuth401Redirect": True, "logoUrl": "https://l/x.png"}},
     None, {"access.same_site_cookie_attribute": "none", "access.http_only_cookie_attribute": False,
            "access.app_launcher_visible": False, "access.service_auth_401_redirect": True,
            "access.logo_url": "https://l/x.png"}),
]


CROSS_NAMESPACE = route(backend={"name": "web", "namespace": "shared", "port": 80})


def pick(value: Any, path: str) -> Any:
    for part in path.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(("name", "annotations", "template", "base", "expected"), MERGE_TABLE,
                         ids=[case[0] for case in MERGE_TABLE])
def test_merge_table(name: str, annotations: dict[str, str], template: dict[str, Any] | None,
                     base: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    result = settings(annotations, template, base, CROSS_NAMESPACE if "cross-namespace" in name else None)
    assert {path: pick(result, path) for path in expected} == expected


# --- refused values: every problem named, all at once ----------------------------------------------------
BAD: list[tuple[str, dict[str, str], dict[str, Any] | None, str]] = [
    ("bad bool", {P + "access.enabled": "maybe"}, None, f"{P}access.enabled: expected true or false, got 'maybe'"),
    ("empty bool", {P + "serviceToken.enabled": ""}, None, f"{P}serviceToken.enabled: expected true or false"),
    ("bad duration", {P + "access.sessionDuration": "1 day"}, None, "'1 day' is not a duration"),
    ("bad token duration", {P + "serviceToken.duration": "1y"}, None, "'1y' is not a duration"),
    ("bad URL", {P + "origin.url": "traefik:443"}, None, f"{P}origin.url: 'traefik:443' is not a URL"),
    ("URL without host", {P + "origin.url": "https://"}, None, "is not a URL with a host"),
    ("bad IP", {P + "dnsIp": "192.168.1.300"}, {"dnsOnly": {"enabled": True}},
     f"{P}dnsIp: '192.168.1.300' is not an IPv4 or IPv6 address"),
    ("bad template IP", {}, {"dnsOnly": {"enabled": True, "staticIp": "nas"}}, "dnsOnly.staticIp: 'nas' is not"),
    ("bad sameSite", {P + "access.sameSiteCookieAttribute": "loose"}, None, "expected one of none, lax, strict"),
    ("bad email", {P + "access.allowEmails": "alice"}, None, "'alice' is not an email address"),
    ("bad tunnel id", {P + "tunnelId": "home"}, None, f"{P}tunnelId: 'home' is not a tunnel UUID"),
    ("template bool of the wrong type", {}, {"accessApplication": {"enabled": "sure"}},
     "template tpl: spec.accessApplication.enabled: expected true or false, got 'sure'"),
    ("ttl out of range", {}, {"dnsOnly": {"ttl": 0}}, "spec.dnsOnly.ttl: expected an integer from 1 to 86400"),
    ("tlsTimeout out of range", {}, {"originService": {"originTLS": {"tlsTimeout": 301}}}, "from 1 to 300"),
    ("bad service ref", {}, {"dnsOnly": {"enabled": True, "staticIp": "", "ingressServiceRef": {"ns": "x"}}},
     "spec.dnsOnly.ingressServiceRef: expected {name, namespace}"),
    ("bad hostname", {P + "hostname": "not a host"}, None, f"{P}hostname: 'not a host' is not a fully qualified"),
    ("Access on an unproxied DNS-only record", {P + "access.enabled": "true", P + "dnsIp": "192.0.2.1"},
     {"dnsOnly": {"enabled": True}}, f"{P}access.enabled: Access cannot protect a DNS-only record that is not proxied"),
]


def test_a_name_too_long_for_the_state_label_is_refused() -> None:
    body = route()
    body["metadata"]["name"] = "r" * 64
    with pytest.raises(MergeError, match=r"'r{64}' is 64 characters long"):
        settings(body=body)
    body["metadata"]["name"] = "r" * 63
    assert settings(body=body).hostname == "app.example.com"


def test_access_on_a_proxied_dns_only_record_is_fine() -> None:
    found = settings({P + "access.enabled": "true", P + "dnsIp": "192.0.2.1"}, {"dnsOnly": {"enabled": True,
                                                                                          "proxied": True}})
    assert found.access.enabled and found.dns_only.proxied


@pytest.mark.parametrize(("annotations", "template", "message"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_values_are_refused_with_a_message_naming_them(annotations: dict[str, str],
                                                            template: dict[str, Any] | None, message: str) -> None:
    with pytest.raises(MergeError) as caught:
        settings(annotations, template)
    assert message in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(MergeError) as caught:
        merge({P + "access.enabled": "maybe", P + "access.sessionDuration": "x"}, route(), None, None)
    assert caught.value.problems[:2] == (f"{P}hostname is required", f"{P}tenant is required")
    assert len(caught.value.problems) == 4


def test_no_origin_at_all_is_refused_in_tunnel_mode_only() -> None:
    bare = {"metadata": {"name": "r", "namespace": "apps"}, "spec": {}}
    with pytest.raises(MergeError, match="no origin"):
        settings(body=bare)
    assert settings({P + "dnsIp": "10.0.0.1"}, {"dnsOnly": {"enabled": True}}, body=bare).origin_service == ""


def test_an_unused_bad_value_in_another_mode_does_not_block() -> None:
    assert settings({P + "dnsIp": "not-an-ip"}).dns_only.enabled is False


# --- parsers ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["true", "TRUE", "1", "yes", "on", True])
def test_true_values(raw: object) -> None:
    assert a.parse_bool("k", raw) is True


@pytest.mark.parametrize("raw", ["false", "False", "0", "no", "off", False])
def test_false_values(raw: object) -> None:
    assert a.parse_bool("k", raw) is False


@pytest.mark.parametrize("raw", ["https://a.b:443", "http://web.ns.svc.cluster.local:8080", "tcp://db:5432",
                                 "unix:/run/app.sock", "http_status:404", "hello_world", "ssh://host:22"])
def test_origins_cloudflared_accepts(raw: str) -> None:
    assert a.parse_origin("k", raw) == raw


@pytest.mark.parametrize("raw", ["web:8080", "ftp://x", "https://a b", "http://host:port", ""])
def test_origins_refused(raw: str) -> None:
    with pytest.raises(a.ValueProblem):
        a.parse_origin("k", raw)


def test_ipv6_is_normalised() -> None:
    assert a.parse_ip("k", " 2001:DB8::0001 ") == "2001:db8::1"


def test_hostname_is_normalised_and_wildcards_allowed() -> None:
    assert a.parse_hostname("k", "App.Example.COM.") == "app.example.com"
    assert a.parse_hostname("k", "*.example.com") == "*.example.com"
    for bad in ("localhost", "a..b.com", "-a.example.com", "a_b.example.com"):
        with pytest.raises(a.ValueProblem):
            a.parse_hostname("k", bad)


# --- the hash -----------------------------------------------------------------------------------------------
def seed_hash(annotations: dict[str, str], per_route: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    """The seed's compute_annotation_hash, written out independently."""
    written = {"hostnameRouteId", "cnameRecordId", "dnsRecordId", "dnsRecordIp", "accessAppId", "accessPolicyIds",
               "serviceTokenId", "serviceTokenSecretName", "lastReconcile"}
    cfzt = {k: v for k, v in annotations.items() if k.startswith(P) and k[len(P):] not in written}
    hashable: dict[str, Any] = {"annotations": cfzt}
    if per_route:
        hashable["per_route_template"] = per_route
    if base:
        hashable["base_template"] = base
    return hashlib.sha256(json.dumps(hashable, sort_keys=True).encode()).hexdigest()


def test_hash_is_the_seeds_and_ignores_results_and_foreign_annotations() -> None:
    inputs = {P + "enabled": "true", P + "hostname": "app.example.com", P + "tenant": "home", "other/x": "1"}
    outputs = {P + "cnameRecordId": "abc", P + "accessAppId": "id", P + "conditions": "[]", P + "lastReconcile": "t"}
    template = {"accessApplication": {"enabled": True}}
    digest = annotation_hash({**inputs, **outputs}, template, BASE)
    assert digest == seed_hash(inputs, template, BASE)
    assert digest == annotation_hash(inputs, template, BASE)
    assert annotation_hash(inputs, None, {}) == seed_hash(inputs, None, None)


def test_hash_changes_with_any_input() -> None:
    inputs = {P + "hostname": "app.example.com"}
    digests = {
        annotation_hash(inputs, None, None),
        annotation_hash({**inputs, P + "access.enabled": "true"}, None, None),
        annotation_hash(inputs, {"dnsOnly": {"enabled": True}}, None),
        annotation_hash(inputs, None, {"dnsOnly": {"enabled": True}}),
    }
    assert len(digests) == 4
