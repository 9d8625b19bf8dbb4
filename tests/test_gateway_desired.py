"""ChuteGateway desired state: names, hostname resolution, Access rules, cloudflared manifests."""

from __future__ import annotations

import re
from typing import Any

import pytest

from chutes.frontdoors.gateways import desired as d


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "configRef": "default",
        "hostname": "app",
        "service": {"name": "web", "port": 8080},
        "access": {"allowedEmails": ["Alice@Example.com"], "allowedDomains": ["corp.example"]},
    }
    base.update(changes)
    return base


def test_names_and_origin_follow_the_seed() -> None:
    desired = d.desired_gateway("team-a", "blog", spec(), "example.com")
    assert desired.fqdn == "app.example.com"
    assert desired.cloudflare_name == "chute-team-a-blog"
    assert desired.secret_name == "chute-blog-tunnel-token"
    assert desired.deployment_name == "chute-blog-cloudflared"
    assert desired.service_url == "http://web.team-a.svc.cluster.local:8080"
    assert desired.url == "https://app.example.com"
    assert desired.replicas == 2 and desired.session_duration == "24h" and not desired.public


@pytest.mark.parametrize(
    ("hostname", "fqdn"),
    [("app", "app.example.com"), ("app.example.com", "app.example.com"), ("a.b.example.com", "a.b.example.com"),
     ("example.com", "example.com"), ("APP.Example.com.", "app.example.com")],
)
def test_hostname_is_a_label_or_an_fqdn_inside_the_zone(hostname: str, fqdn: str) -> None:
    assert d.resolve_hostname(hostname, "example.com") == fqdn


@pytest.mark.parametrize("hostname", ["app.example.net", "example.com.evil.org", "notexample.com"])
def test_hostname_outside_the_zone_is_refused(hostname: str) -> None:
    with pytest.raises(d.SpecError) as error:
        d.resolve_hostname(hostname, "example.com")
    assert error.value.reason == "HostnameOutsideZone"


def test_no_allowed_identity_is_refused_unless_public() -> None:
    with pytest.raises(d.SpecError, match="allowedEmails or allowedDomains") as error:
        d.desired_gateway("ns", "g", spec(access={}), "example.com")
    assert error.value.reason == "InvalidSpec"
    assert d.desired_gateway("ns", "g", spec(access={"public": True}), "example.com").public


def test_a_name_too_long_for_a_label_value_is_refused_before_anything_is_made() -> None:
    with pytest.raises(d.SpecError, match="is 46 characters long, over 45") as error:
        d.desired_gateway("ns", "g" * 46, spec(), "example.com")
    assert error.value.reason == "InvalidSpec"
    desired = d.desired_gateway("ns", "g" * 45, spec(hostname="g"), "example.com")
    assert max(len(value) for value in desired.object_labels.values()) == 63


@pytest.mark.parametrize(("change", "complaint"), [
    ({"replicas": 21}, "from 0 to 20"),
    ({"access": {"allowedEmails": ["alice.example.org"]}}, "'alice.example.org'"),
    ({"access": {"allowedDomains": ["*.example.org"]}}, "'*.example.org'"),
])
def test_what_the_crd_refuses_is_refused_when_admission_is_bypassed(change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(d.SpecError, match=re.escape(complaint)) as error:
        d.desired_gateway("ns", "g", spec(**change), "example.com")
    assert error.value.reason == "InvalidSpec"


def test_policy_includes_each_email_and_domain_normalised() -> None:
    desired = d.desired_gateway("ns", "g", spec(), "example.com")
    assert d.policy_include(desired) == [
        {"email": {"email": "alice@example.com"}},
        {"email_domain": {"domain": "corp.example"}},
    ]


def test_cloudflared_deployment_reads_the_token_from_the_secret_and_probes_ready() -> None:
    cloudflared = {"image": "cloudflare/cloudflared:1", "resources": {"limits": {"cpu": "1"}}}
    desired = d.desired_gateway("ns", "g", spec(replicas=3, cloudflared=cloudflared), "example.com")
    deployment = d.deployment_manifest(desired)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "cloudflare/cloudflared:1"
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert container["resources"] == {"limits": {"cpu": "1"}}
    assert "--metrics" in container["args"] and "0.0.0.0:2000" in container["args"]
    assert container["env"] == [{"name": "TUNNEL_TOKEN", "valueFrom": {"secretKeyRef": {"name": "chute-g-tunnel-token",
                                                                                        "key": "token"}}}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 2000}
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    secret = d.secret_manifest(desired, "tok")
    assert secret["stringData"] == {"token": "tok"} and secret["metadata"]["name"] == "chute-g-tunnel-token"


@pytest.mark.parametrize(
    ("image", "allowed", "ok"),
    [
        ("cloudflare/cloudflared:2024.8.3", d.DEFAULT_ALLOWED_IMAGES, True),
        ("docker.io/cloudflare/cloudflared@sha256:" + "0" * 64, d.DEFAULT_ALLOWED_IMAGES, True),
        ("index.docker.io/cloudflare/cloudflared:latest", d.DEFAULT_ALLOWED_IMAGES, True),
        ("cloudflare/cloudflared-evil:1", d.DEFAULT_ALLOWED_IMAGES, False),  # a repository, not a string prefix
        ("evil.example/cloudflare/cloudflared:1", d.DEFAULT_ALLOWED_IMAGES, False),
        ("busybox", d.DEFAULT_ALLOWED_IMAGES, False),
        ("reg.example.com:5000/mirror/cloudflared:1", ("reg.example.com:5000/mirror/",), True),
        ("reg.example.com:5000/other/cloudflared:1", ("reg.example.com:5000/mirror/",), False),
        ("anything/at:all", ("*",), True),
    ],
)
def test_cloudflared_runs_only_from_an_allowed_repository(image: str, allowed: tuple[str, ...], ok: bool) -> None:
    gateway = spec(cloudflared={"image": image})
    if ok:
        assert d.desired_gateway("ns", "g", gateway, "example.com", allowed_images=allowed).image == image
    else:
        with pytest.raises(d.SpecError) as refused:
            d.desired_gateway("ns", "g", gateway, "example.com", allowed_images=allowed)
        assert refused.value.reason == "ImageNotAllowed" and image in str(refused.value)


def test_secret_and_deployment_name_their_gateway_and_owner_the_pods_keep_their_labels() -> None:
    desired = d.desired_gateway("ns", "g", spec(), "example.com", owner_id="blue")
    owned = {"app.kubernetes.io/managed-by": "chutes-operator", "chutes.troubleshat.com/gateway": "g",
             "chutes.troubleshat.com/owner": "blue"}
    deployment, secret = d.deployment_manifest(desired), d.secret_manifest(desired, "tok")
    assert desired.owned_by == owned
    for manifest in (deployment, secret):
        assert owned.items() <= manifest["metadata"]["labels"].items()
    assert "chutes.troubleshat.com/owner" not in deployment["spec"]["template"]["metadata"]["labels"]  # no rollout


@pytest.mark.parametrize(
    "change",
    [{"service": {"name": "web"}}, {"service": {"name": "web", "port": 70000}},
     {"service": {"name": "web", "port": 80, "scheme": "ftp"}},
     {"access": {"allowedEmails": ["a@b.c"], "sessionDuration": "forever"}}, {"replicas": -1}],
)
def test_malformed_specs_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(d.SpecError):
        d.desired_gateway("ns", "g", spec(**change), "example.com")


@pytest.mark.parametrize("public", ["false", "False", "no", 0, 1, "true"])
def test_public_is_a_boolean_only(public: Any) -> None:
    """``bool("false")`` is True: a lax source must not publish a gateway without Access."""
    with pytest.raises(d.SpecError, match=r"access\.public") as error:
        d.desired_gateway("ns", "g", spec(access={"public": public, "allowedEmails": ["a@b.c"]}), "example.com")
    assert error.value.reason == "InvalidSpec"


def test_string_false_never_makes_a_gateway_public() -> None:
    with pytest.raises(d.SpecError) as error:
        d.desired_gateway("ns", "g", spec(access={"public": "false"}), "example.com")
    assert error.value.reason == "InvalidSpec"
    assert not d.desired_gateway("ns", "g", spec(access={"public": False, "allowedEmails": ["a@b.c"]}),
                              "example.com").public


@pytest.mark.parametrize("port", [True, False, "8080", 8080.0, 0, 65536, None])
def test_port_is_an_integer_from_1_to_65535_not_a_boolean(port: Any) -> None:
    with pytest.raises(d.SpecError, match="port") as error:
        d.desired_gateway("ns", "g", spec(service={"name": "web", "port": port}), "example.com")
    assert error.value.reason == "InvalidSpec"


@pytest.mark.parametrize(
    "change",
    [{"replicas": True}, {"replicas": "2"}, {"hostname": 123},
     {"access": {"allowedEmails": "a@b.c"}}, {"access": {"allowedEmails": [1]}},
     {"access": {"allowedDomains": ["corp.example"], "sessionDuration": 24}},
     {"service": {"name": 5, "port": 80}}],
)
def test_values_of_the_wrong_type_are_refused_not_converted(change: dict[str, Any]) -> None:
    with pytest.raises(d.SpecError) as error:
        d.desired_gateway("ns", "g", spec(**change), "example.com")
    assert error.value.reason == "InvalidSpec"
