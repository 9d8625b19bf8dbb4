"""The tunnels door's reading of adyanth's API (pure): both spec generations, deployPatch, subjects, origins."""

from __future__ import annotations

from typing import Any

import pytest

from chutes.frontdoors.tunnels import model as m

BASE: dict[str, Any] = {"newTunnel": {"name": "t"},
                        "cloudflare": {"domain": "Example.com", "secret": "s", "accountId": "a" * 32}}


def parse(**spec: Any) -> m.TunnelSpec:
    return m.parse_tunnel("Tunnel", "apps", "web", {**BASE, **spec}, resource_namespace="ops", owner_id="c1")


def test_v1alpha1_fields_and_adyanths_defaults() -> None:
    spec = parse(size=3, image="img:1", nodeSelectors={"a": "b"}, tolerations=[{"key": "k"}])
    assert (spec.replicas, spec.image, dict(spec.node_selector), spec.tolerations) == (3, "img:1", {"a": "b"},
                                                                                       ({"key": "k"},))
    default = parse()
    assert (default.replicas, default.image, default.protocol, default.fallback) == (
        1, "cloudflare/cloudflared:2025.4.0", "auto", "http_status:404")
    assert default.domain == "example.com" and default.credentials.token_key == "CLOUDFLARE_API_TOKEN"
    assert default.cloudflare_name == "t@c1"  # owner-qualified, as every door names things


def test_deploy_patch_overrides_the_v1alpha1_fields() -> None:
    spec = parse(size=3, deployPatch='{"spec": {"replicas": 2, "template": {"spec": {"nodeSelector": {"x": "y"}, '
                 '"containers": [{"name": "cloudflared", "image": "img:2", "resources": {"limits": {"cpu": "1"}}}]}}}}')
    assert (spec.replicas, spec.image, dict(spec.node_selector)) == (2, "img:2", {"x": "y"})
    assert spec.resources == {"limits": {"cpu": "1"}}
    assert parse(deployPatch="{}").replicas == 1


@pytest.mark.parametrize("patch", [
    "spec: {replicas: [1",  # not YAML
    "[1, 2]",  # not a mapping
    "spec: {template: {spec: {hostNetwork: true}}}",
    "spec: {template: {spec: {containers: [{name: cloudflared, securityContext: {privileged: true}}]}}}",
    "spec: {template: {spec: {containers: [{name: sidecar, image: x}]}}}",
    "metadata: {labels: {a: b}}",
    "spec: {replicas: 99}",
])
def test_a_deploy_patch_that_unhardens_the_pod_or_does_not_parse_is_refused(patch: str) -> None:
    with pytest.raises(m.SpecError) as refused:
        parse(deployPatch=patch)
    assert refused.value.reason == "InvalidSpec"


@pytest.mark.parametrize("spec", [
    {"existingTunnel": {"name": "x"}},  # both
    {"newTunnel": None},  # neither
    {"cloudflare": {"domain": "example.com", "secret": "s"}},  # no account
    {"cloudflare": {"domain": "not a domain", "secret": "s", "accountId": "a"}},
    {"protocol": "udp"},
    {"size": True},
])
def test_bad_tunnel_specs_are_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(m.SpecError):
        parse(**spec)


@pytest.mark.parametrize(("port", "protocol", "expected"), [
    (22, "TCP", "ssh"), (139, "TCP", "smb"), (445, "TCP", "smb"), (443, "TCP", "https"), (3389, "TCP", "rdp"),
    (8080, "TCP", "http"), (80, "TCP", "http"), (53, "UDP", "udp"),
])
def test_protocol_defaults_per_port_as_adyanth(port: int, protocol: str, expected: str) -> None:
    assert m.default_protocol(port, protocol) == expected


def test_subjects_origins_and_origin_request() -> None:
    body = {"subjects": [{"name": "web"}, {"name": "api", "spec": {
        "fqdn": "API.example.com", "protocol": "https", "path": "/v1", "noTlsVerify": True, "proxyType": "socks",
        "proxyAddress": "127.0.0.1", "caPool": "ca.crt"}}]}
    web, api = m.parse_subjects(body, "example.com")
    assert (web.fqdn, web.protocol, dict(web.origin_request)) == ("web.example.com", None, {})
    assert (api.fqdn, api.path) == ("api.example.com", "/v1")
    assert dict(api.origin_request) == {"noTLSVerify": True, "proxyType": "socks",
                                        "caPool": "/etc/cloudflared/certs/ca.crt"}
    service = {"spec": {"ports": [{"port": 8443, "protocol": "TCP"}, {"port": 80}]}}
    assert m.origin(None, None, service, "apps", "web") == "http://web.apps.svc:8443"  # the first port only
    assert m.origin("https", None, service, "apps", "web") == "https://web.apps.svc:8443"
    assert m.origin(None, "tcp://db:5432", None, "apps", "db") == "tcp://db:5432"


@pytest.mark.parametrize(("service", "reason"), [
    (None, "ServiceNotFound"),
    ({"spec": {"ports": []}}, "InvalidSpec"),
    ({"spec": {"ports": [{"port": 53, "protocol": "UDP"}]}}, "InvalidSpec"),  # cloudflared carries no UDP there
])
def test_origins_that_cannot_be_routed(service: dict[str, Any] | None, reason: str) -> None:
    with pytest.raises(m.SpecError) as refused:
        m.origin(None, None, service, "apps", "web")
    assert refused.value.reason == reason


@pytest.mark.parametrize(("subjects", "reason"), [
    ([{"name": "a", "spec": {"fqdn": "a.example.net"}}], "HostnameOutsideZone"),
    ([{"name": "a", "spec": {"protocol": "gopher"}}], "InvalidSpec"),
    ([{"name": "a"}, {"name": "b", "spec": {"fqdn": "a.example.com"}}], "InvalidSpec"),  # twice
    ([{"name": "a", "kind": "Pod"}], "InvalidSpec"),
    ([], "InvalidSpec"),
])
def test_bad_subjects(subjects: list[dict[str, Any]], reason: str) -> None:
    with pytest.raises(m.SpecError) as refused:
        m.parse_subjects({"subjects": subjects}, "example.com")
    assert refused.value.reason == reason


def test_tunnel_ref_kinds_and_access_lists() -> None:
    assert m.tunnel_ref({"tunnelRef": {"kind": "clustertunnel", "name": "x"}}) == ("ClusterTunnel", "x", False)
    with pytest.raises(m.SpecError):
        m.tunnel_ref({"tunnelRef": {"kind": "Gateway", "name": "x"}})
    assert m.access_lists({m.ACCESS_EMAILS: "B@x.org, a@x.org,", m.ACCESS_DOMAINS: "corp.example"}) == (
        ("a@x.org", "b@x.org"), ("corp.example",))
    with pytest.raises(m.SpecError):
        m.access_lists({m.ACCESS_EMAILS: "not-an-email"})


@pytest.mark.parametrize("target", [
    "http://web.team-a.svc:8080", "https://web.team-a.svc.cluster.local", "ssh://git@git.team-a.svc:22",
    "tcp://db.team-a.svc.:5432", "http_status:404",
])
def test_a_shared_tunnels_binding_may_target_its_own_namespaces_services(target: str) -> None:
    assert m.shared_target_problem(target, "team-a") is None


@pytest.mark.parametrize("target", [
    "http://admin.kube-system.svc:80", "http://169.254.169.254/latest/meta-data", "http://web:80",
    "http://web.team-a.svc.evil.example.com", "http://team-a.svc", "https://[::1]:443", "unix:/var/run/docker.sock",
    "http://web.team-a.pod:80", "http://web.team-ab.svc", "hello_world", "http_status:99999",
])
def test_a_shared_tunnels_binding_may_not_target_anything_else(target: str) -> None:
    problem = m.shared_target_problem(target, "team-a")
    assert problem is not None and repr(target) in problem and "team-a" in problem


def test_the_installation_may_allow_more_targets_through_shared_tunnels() -> None:
    ingress = "https://traefik.traefik.svc:443"
    assert m.shared_target_problem(ingress, "team-a") is not None
    assert m.shared_target_problem(ingress, "team-a", {"traefik.traefik.svc"}) is None
    assert m.shared_target_problem("http://admin.kube-system.svc", "team-a", {"traefik.traefik.svc"}) is not None
    assert m.shared_target_problem("http://169.254.169.254", "team-a", {"*"}) is None  # adyanth's behaviour, chosen
