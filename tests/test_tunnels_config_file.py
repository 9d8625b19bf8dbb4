"""A locally configured tunnel's config.yaml and credentials.json (pure): adyanth's document, regenerated with only
``tunnel`` and ``ingress`` replaced, rules in shadowing order, the catch-all, the checksum, the credentials."""

from __future__ import annotations

import hashlib
import json

import pytest

from chutes.cloudflare_core import IngressRule, Tunnel
from chutes.frontdoors.tunnels import config_file as cf
from chutes.frontdoors.tunnels import model as m

TUNNEL = Tunnel(id="6f1e0000-0000-4000-8000-000000000001", name="local-one", account_id="a" * 32)


def test_the_initial_document_is_adyanths() -> None:
    document = cf.initial_config(TUNNEL.id, "http_status:404", {"noTLSVerify": True})
    assert list(document) == ["tunnel", "ingress", "originRequest", "credentials-file", "metrics", "no-autoupdate"]
    assert document["ingress"] == [{"service": "http_status:404"}]
    assert document["credentials-file"] == "/etc/cloudflared/creds/credentials.json"
    assert "originRequest" not in cf.initial_config(TUNNEL.id, "http_status:404", {})
    assert cf.parse_config(cf.render(document)) == document


def test_regenerating_replaces_tunnel_and_ingress_only_and_keeps_the_users_keys_in_place() -> None:
    mine = {"tunnel": "old", "warp-routing": {"enabled": True}, "ingress": [
        {"hostname": "hand.example.com", "service": "http://hand:80"}, {"service": "http_status:404"}],
        "originRequest": {"connectTimeout": "10s"}, "unknown-key": 1}
    rules = [{"hostname": "*.example.com", "service": "http://wild:80"},
             {"hostname": "a.example.com", "service": "http://a:80"},
             {"hostname": "a.example.com", "path": "/api/v2", "service": "http://v2:80"},
             {"hostname": "a.example.com", "path": "/api", "service": "http://api:80"}]
    result = cf.regenerated(mine, TUNNEL.id, rules, "http_status:418")
    assert list(result) == list(mine)  # every key where it was
    assert (result["tunnel"], result["warp-routing"], result["originRequest"], result["unknown-key"]) == (
        TUNNEL.id, {"enabled": True}, {"connectTimeout": "10s"}, 1)
    assert [(r.get("hostname"), r.get("path"), r["service"]) for r in result["ingress"]] == [
        ("a.example.com", "/api/v2", "http://v2:80"), ("a.example.com", "/api", "http://api:80"),
        ("a.example.com", None, "http://a:80"), ("*.example.com", None, "http://wild:80"),
        (None, None, "http_status:418")]  # a rule written by hand is replaced, as adyanth does
    assert mine["tunnel"] == "old"  # the input is not modified


def test_without_a_fallback_the_catch_all_there_is_kept_with_its_options() -> None:
    there = {"ingress": [{"service": "http://default:80", "originRequest": {"noTLSVerify": True}}]}
    assert cf.regenerated(there, TUNNEL.id, [], None)["ingress"] == there["ingress"]
    assert cf.regenerated({}, TUNNEL.id, [], None) == {"tunnel": TUNNEL.id, "ingress": [
        {"service": "http_status:404"}]}
    assert cf.regenerated(there, TUNNEL.id, [], "http_status:503")["ingress"] == [
        {"service": "http_status:503", "originRequest": {"noTLSVerify": True}}]


@pytest.mark.parametrize("text", ["tunnel: [1", "- a list", "just text"])
def test_a_config_yaml_that_is_not_a_mapping_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        cf.parse_config(text)


def test_a_rule_round_trips_through_a_claims_entry() -> None:
    rule = IngressRule(hostname="who.example.com", service="https://who.apps.svc:443", path="/x",
                       origin_request={"noTLSVerify": True})
    fields = cf.rule_fields(rule)
    assert fields == {"service": "https://who.apps.svc:443", "path": "/x", "originRequest": {"noTLSVerify": True}}
    assert cf.entry_rule("who.example.com", fields) == rule.to_wire()


def test_the_checksum_is_the_md5_of_the_text() -> None:
    assert cf.checksum("tunnel: x\n") == hashlib.md5(b"tunnel: x\n").hexdigest()


def test_credentials_from_the_tunnel_secret_or_the_file() -> None:
    built = json.loads(cf.credentials_json("a" * 32, TUNNEL, "", "c2VjcmV0", "Secret apps/cf"))
    assert built == {"AccountTag": "a" * 32, "TunnelID": TUNNEL.id, "TunnelName": "local-one",
                     "TunnelSecret": "c2VjcmV0"}
    file = json.dumps({"AccountTag": "a" * 32, "TunnelID": TUNNEL.id, "TunnelSecret": "czNjcjN0"})
    assert cf.credentials_json("a" * 32, TUNNEL, file, "ignored", "Secret apps/cf") == file  # the file wins


@pytest.mark.parametrize(("file", "secret", "reason"), [
    ("", "", "SecretKeyMissing"),
    ("not json", "", "CredentialsInvalid"),
    ('{"TunnelID": "6f1e0000-0000-4000-8000-000000000002", "TunnelSecret": "czNjcjN0"}', "", "CredentialsInvalid"),
])
def test_missing_or_wrong_credentials_are_refused_without_echoing_them(file: str, secret: str, reason: str) -> None:
    with pytest.raises(m.SpecError) as raised:
        cf.credentials_json("a" * 32, TUNNEL, file, secret, "Secret apps/cf", ("MY_FILE", "MY_SECRET"))
    assert raised.value.reason == reason and "czNjcjN0" not in str(raised.value)
    if reason == "SecretKeyMissing":
        assert "MY_FILE" in str(raised.value) and "MY_SECRET" in str(raised.value)


def test_fallback_target_asks_only_when_it_is_not_the_default_and_credential_keys_can_be_renamed() -> None:
    base = {"existingTunnel": {"name": "t"}, "cloudflare": {"domain": "example.com", "secret": "s",
                                                            "accountId": "a" * 32}}

    def parse(**extra: object) -> m.TunnelSpec:
        return m.parse_tunnel("Tunnel", "apps", "web", {**base, **extra}, resource_namespace="ops")

    assert not parse().fallback_asked and parse().fallback == "http_status:404"
    assert not parse(fallbackTarget="http_status:404").fallback_asked
    assert parse(fallbackTarget="http_status:503").fallback_asked
    renamed = parse(cloudflare={**base["cloudflare"], "CLOUDFLARE_TUNNEL_CREDENTIAL_FILE": "F"}).credentials
    assert (renamed.credential_file_key, renamed.credential_secret_key) == ("F", "CLOUDFLARE_TUNNEL_CREDENTIAL_SECRET")
    assert (parse().config_name, parse().credentials_secret_name) == ("web", "web-tunnel-credentials")
