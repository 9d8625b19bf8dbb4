"""The session front door's configuration: the seed's variables, defaults, and errors that name the variable."""

from __future__ import annotations

from typing import Any

import pytest

from chutes import cli, runtime
from chutes.frontdoors.sessions.config import SessionConfigError, load_config
from chutes.frontdoors.sessions.selector import LabelSelector, SelectorError
from chutes.settings import SettingsError, load_settings

TOKEN = "sEcReT-token-value-0123456789"
REQUIRED = {
    "CF_API_TOKEN": TOKEN,
    "CF_ZONE_ID": "0123456789abcdef0123456789abcdef",
    "CF_TUNNEL_ID": "6ff42ae2-765d-4adf-8112-31c55c1551ef",
    "DOMAIN": "no-panic.org",
    "ROUTER_SERVICE_URL": "http://opencode-router.opencode-router.svc.cluster.local:80",
}


def test_only_the_required_variables_give_the_seeds_defaults() -> None:
    config = load_config(REQUIRED)
    assert (config.zone_id, config.tunnel_id, config.domain) == (
        REQUIRED["CF_ZONE_ID"], REQUIRED["CF_TUNNEL_ID"], "no-panic.org"
    )
    assert config.route_suffix == ""
    assert config.watch_namespace == config.ingressroute_namespace == "opencode-router"
    assert config.pod_selector.text == "app.kubernetes.io/managed-by=opencode-router"
    assert config.oauth2_chain_middleware == "opencode-router-oauth2-chain"
    assert config.router_service_name == "opencode-router"
    assert config.health_port == 8080
    assert config.session_hash_label == "opencode.ai/session-hash"
    assert config.tunnel_target == f"{REQUIRED['CF_TUNNEL_ID']}.cfargotunnel.com"
    assert TOKEN not in repr(config)


def test_every_variable_is_read() -> None:
    config = load_config({
        **REQUIRED, "ROUTE_SUFFIX": "-oc", "WATCH_NAMESPACE": "sessions", "INGRESSROUTE_NAMESPACE": "edge",
        "POD_LABEL_SELECTOR": "app=opencode,tier in (a,b)", "OAUTH2_CHAIN_MIDDLEWARE": "chain",
        "ROUTER_SERVICE_NAME": "router", "HEALTH_PORT": "9090", "SESSION_HASH_LABEL": "example.com/hash",
    })
    assert (config.route_suffix, config.watch_namespace, config.ingressroute_namespace) == ("-oc", "sessions", "edge")
    assert config.pod_selector.matches({"app": "opencode", "tier": "b"})
    assert (config.oauth2_chain_middleware, config.router_service_name) == ("chain", "router")
    assert (config.health_port, config.session_hash_label) == (9090, "example.com/hash")


def test_ingressroute_namespace_follows_watch_namespace() -> None:
    assert load_config({**REQUIRED, "WATCH_NAMESPACE": "team-a"}).ingressroute_namespace == "team-a"


def test_every_missing_required_variable_is_named_at_once() -> None:
    with pytest.raises(SessionConfigError) as caught:
        load_config({"CF_API_TOKEN": TOKEN})
    message = str(caught.value)
    for name in ("CF_ZONE_ID", "CF_TUNNEL_ID", "DOMAIN", "ROUTER_SERVICE_URL"):
        assert f"{name}: required" in message
    assert "CF_API_TOKEN" not in message
    assert isinstance(caught.value, SettingsError)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CF_ZONE_ID", "not-a-zone"),
        ("CF_TUNNEL_ID", "tunnel-1"),
        ("DOMAIN", "no_panic"),
        ("ROUTER_SERVICE_URL", "opencode-router:80"),
        ("ROUTE_SUFFIX", "-oc-"),
        ("ROUTE_SUFFIX", "_oc"),
        ("WATCH_NAMESPACE", "Opencode"),
        ("INGRESSROUTE_NAMESPACE", "a.b"),
        ("OAUTH2_CHAIN_MIDDLEWARE", "chain/x"),
        ("ROUTER_SERVICE_NAME", "-router"),
        ("HEALTH_PORT", "http"),
        ("HEALTH_PORT", "70000"),
        ("POD_LABEL_SELECTOR", "app=a=b"),
        ("SESSION_HASH_LABEL", "not a label"),
    ],
)
def test_a_malformed_variable_is_named(name: str, value: str) -> None:
    with pytest.raises(SessionConfigError, match=rf"{name}: "):
        load_config({**REQUIRED, name: value})


def test_the_token_is_never_echoed() -> None:
    with pytest.raises(SessionConfigError) as caught:
        load_config({**REQUIRED, "CF_ZONE_ID": "x", "DOMAIN": ""})
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "api"}, False),
        ("app!=web", {}, True),
        ("app!=web", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("tier in (a, b),app=web", {"app": "web", "tier": "b"}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("example.com/role=x, app", {"example.com/role": "x", "app": "y"}, True),
    ],
)
def test_label_selectors_match_as_kubernetes_does(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.parse(selector).matches(labels) is expected


@pytest.mark.parametrize("selector", ["a=b=c", "a in b", "tier in ()", "=x", "a b"])
def test_malformed_selectors_are_refused(selector: str) -> None:
    with pytest.raises(SelectorError):
        LabelSelector.parse(selector)


def test_the_seed_variables_switch_the_door_on_and_it_watches_its_namespace_alone() -> None:
    settings = load_settings({}, chutes=False, httproutes=False, tunnels=False)
    environ = {**REQUIRED, "WATCH_NAMESPACE": "sessions"}
    assert runtime.served_front_doors(settings, environ) == ("sessions",)
    assert runtime.implied_namespaces(settings, environ) == ("sessions",)
    alone = load_settings({}, chutes=False, httproutes=False, tunnels=False, namespaces="x")
    assert runtime.implied_namespaces(alone, environ) == ()
    assert runtime.served_front_doors(settings, {}) == ()


def test_chutes_run_sessions_refuses_to_start_naming_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    for name in list(REQUIRED):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CF_API_TOKEN", TOKEN)
    monkeypatch.setenv("CF_ZONE_ID", REQUIRED["CF_ZONE_ID"])
    monkeypatch.setattr(cli, "configure_logging", lambda settings: None)  # keep the test run's logging as it is

    code = cli.main(["run", "--sessions", "--no-chutes", "--no-httproutes", "--standalone"])

    error = capsys.readouterr().err
    assert code == 2
    assert "CF_TUNNEL_ID: required" in error and "DOMAIN: required" in error and "ROUTER_SERVICE_URL" in error
    assert TOKEN not in error
