"""Secrets stay secret: the operator scenarios run with recognisable canary credentials (the Cloudflare API
token, a revoked token, the service-token client secrets the Cloudflare emulator hands out) while every
log record is captured at DEBUG; afterwards no canary, and no tunnel token, may appear in any log record,
any Event, or any object in the cluster other than the Secrets meant to hold them (status, annotations,
ConfigMaps included). Each secret is looked for as is and base64-encoded."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from test_gateways_operator import NS, World, wait_for

CANARY_TOKEN = "CANARYxAPIxTOKENx0123456789abcdefghijkl"  # 40 characters, like Cloudflare's tokens
REVOKED_CANARY = "CANARYxREVOKEDxTOKENx0123456789abcdefgh"
CANARY_CLIENT_SECRET = "ca11ab1e" * 8  # 64 hex digits, like Cloudflare's service-token secrets


def canary_client_secret(token: dict[str, Any]) -> str:
    """Stands in for the Cloudflare emulator's service-token secret generator."""
    token["_secret_sha256"] = hashlib.sha256(CANARY_CLIENT_SECRET.encode()).hexdigest()
    return CANARY_CLIENT_SECRET


@pytest.fixture()
def cloudflare(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The Cloudflare emulator whose one token is the canary (overrides conftest's fixture)."""
    from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread, service_tokens

    monkeypatch.setattr(service_tokens, "_secret", canary_client_secret)
    with SandboxThread(SandboxConfig.from_dict({"tokens": [{"name": "canary", "value": CANARY_TOKEN}]})) as sandbox:
        assert sandbox.token == CANARY_TOKEN
        yield sandbox


@pytest.fixture()
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records, from every thread
    return caplog


def forms(secret: str) -> set[str]:
    raw = secret.encode()
    return {secret, base64.b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("=")}


# Threads that are not the operator: the test itself (whose own clients may log what they read) and the
# emulators. Everything else (the operator's thread and any thread it starts) is the operator's.
NOT_THE_OPERATOR = frozenset({"MainThread", "kube-sandbox", "cloudflare-sandbox"})


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record of the operator: message, exception and every attribute."""
    parts = []
    formatter = logging.Formatter()
    for record in caplog.records:
        if record.threadName in NOT_THE_OPERATOR:
            continue
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
        parts.append(json.dumps({k: repr(v) for k, v in vars(record).items() if k not in ("msg", "args")}))
    return "\n".join(parts)


def cluster_text(kube: Any) -> tuple[str, str]:
    """(every Event, every other object except Secrets), as JSON."""
    async def dump() -> tuple[list[Any], list[Any]]:
        events, others = [], []
        for (resource, _namespace, _name), obj in kube.emulator.store.live():
            if resource.plural == "events":
                events.append(obj)
            elif resource.plural != "secrets":
                others.append(obj)
        return events, others

    events, others = kube.call(dump())
    return json.dumps(events), json.dumps(others)


def assert_nowhere(secrets: dict[str, str], logs: str, events: str, objects: str) -> None:
    leaks = [f"{what} in {where}" for what, secret in secrets.items() for form in forms(secret)
             for where, text in (("logs", logs), ("Events", events), ("objects", objects)) if form in text]
    assert not leaks, "secret material leaked: " + ", ".join(sorted(set(leaks)))


def test_chute_gateway_scenarios_leak_no_secret(kube: Any, cloudflare: Any,
                                                debug_logs: pytest.LogCaptureFixture) -> None:
    world = World(kube, cloudflare)
    world.start()
    try:
        world.ready_config()
        world.service()
        world.gateway()
        published = world.ready_gateway()
        world.patch_gateway("blog", {"hostname": "journal", "replicas": 1})
        wait_for("renamed", lambda: world.get_gateway()["status"].get("hostname") == "journal.example.com"
                 and world.get_gateway()["status"].get("ready"))
        # A second config whose token Cloudflare refuses: the refusal is reported, the token is not.
        world.token_secret(token=REVOKED_CANARY, name="revoked")
        world.custom.create_cluster_custom_object("chutes.troubleshat.com", "v1alpha1", "chuteconfigs", {
            "apiVersion": "chutes.troubleshat.com/v1alpha1", "kind": "ChuteConfig", "metadata": {"name": "revoked"},
            "spec": {"apiTokenSecretRef": {"name": "revoked", "namespace": "chute-system", "key": "apiToken"},
                     "accountId": world.account, "zoneId": world.zone, "domain": "example.com"}})
        wait_for("refused", lambda: ("Warning", "CredentialsInvalid") in {
            (t, r) for t, r, _ in world.events("revoked", "default")})
        secret = world.core.read_namespaced_secret("chute-blog-tunnel-token", NS)
        tunnel_token = base64.b64decode(secret.data["token"]).decode()
        _events, published_objects = cluster_text(kube)  # status and all, while everything exists
        world.custom.delete_namespaced_custom_object("chutes.troubleshat.com", "v1alpha1", NS, "chutegateways", "blog")
        wait_for("gateway gone", lambda: not world.live_tunnels())
    finally:
        world.stop()
        world.client.close()
    assert published["status"]["tunnelId"]
    assert any("chutes.cloudflare_core" in r.name or r.name.startswith("kopf") for r in debug_logs.records)
    assert any(r.levelno == logging.DEBUG for r in debug_logs.records)
    events, objects = cluster_text(kube)
    objects += published_objects
    assert "CredentialsInvalid" in events and "journal.example.com" in objects  # the dumps are not empty
    assert_nowhere({"API token": CANARY_TOKEN, "revoked token": REVOKED_CANARY, "tunnel token": tunnel_token},
                   log_text(debug_logs), events, objects)


def test_httproute_scenarios_leak_no_secret(kube: Any, cloudflare: Any, debug_logs: pytest.LogCaptureFixture) -> None:
    import httproutes_harness as hr

    world = hr.World(kube, cloudflare)
    try:
        for name in hr.EXAMPLE_POLICIES:
            world.reusable_policy(name)
        world.apply_examples()  # the tenant's Secret holds the canary token
        world.start(resync=1.0)  # the resync re-issues a lost service-token Secret
        world.route("api2", "api2.example.com", tenant="prod",
                    **{"serviceToken.enabled": "true", "access.enabled": "true"})
        world.wait_ready("api2")
        world.wait_ready("my-app", "my-app")
        issued = hr.wait_for("service-token Secret", lambda: world.secret("cfzt-svctoken-api2"))
        assert issued["CF_ACCESS_CLIENT_SECRET"] == CANARY_CLIENT_SECRET  # the canary reached its Secret
        world.core.delete_namespaced_secret("cfzt-svctoken-api2", "apps")  # lost: the secret is issued again
        hr.wait_for("re-issued", lambda: world.secret("cfzt-svctoken-api2"))
        _events, published_objects = cluster_text(kube)
        world.delete_route("api2")
        hr.wait_for("service token removed", lambda: world.tokens() == [])
    finally:
        world.close()
    events, objects = cluster_text(kube)
    objects += published_objects
    assert "api2.example.com" in objects and "cloudflarezerotrusttenants" in objects.lower()
    assert_nowhere({"API token": CANARY_TOKEN, "service-token secret": CANARY_CLIENT_SECRET},
                   log_text(debug_logs), events, objects)


def test_session_pod_scenarios_leak_no_secret(kube: Any, cloudflare: Any, debug_logs: pytest.LogCaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import sessions_harness as sh
    from chutes.frontdoors.sessions import handlers
    from chutes.frontdoors.sessions.scheduler import Timing

    monkeypatch.setattr(handlers, "DEFAULT_TIMING", Timing(
        quiet=0.1, max_delay=0.5, removal_quiet=0.2, removal_max_delay=0.8, settle=0.4, jitter=0.3,
        backoff=(0.2, 0.5, 1.0)))
    tunnel = sh.create_tunnel(cloudflare)
    api = sh.kube_client(kube)
    try:
        with sh.operator(cloudflare, sh.session_env(cloudflare, tunnel, sh.free_port())):
            assert CANARY_TOKEN in sh.session_env(cloudflare, tunnel, 0).values()
            sh.create_pod(api, sh.pod("alice", "8b6cc2aa9a45"))
            sh.create_pod(api, sh.pod("upper", "ABCDEF123456"))
            sh.wait_for(lambda: sh.published(cloudflare, api, tunnel).sessions() == {"8b6cc2aa9a45"}, what="published")
            sh.wait_for(lambda: sh.events_for(api, "upper"), what="the refusal's Event")
            _events, published_objects = cluster_text(kube)
            sh.delete_pod(api, "alice")
            sh.wait_for(lambda: not sh.published(cloudflare, api, tunnel).sessions(), what="unpublished")
    finally:
        api.close()  # type: ignore[no-untyped-call]
    events, objects = cluster_text(kube)
    objects += published_objects
    assert "InvalidSessionHash" in events and "opencode-session-8b6cc2aa9a45" in objects
    assert_nowhere({"API token": CANARY_TOKEN}, log_text(debug_logs), events, objects)
