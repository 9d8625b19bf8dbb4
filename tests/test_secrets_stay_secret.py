"""Secrets stay secret: the operator scenarios run with recognisable canary credentials (the Cloudflare API
token, a revoked token, the service-token client secrets the Cloudflare emulator hands out) while every
log record is captured at DEBUG; afterwards no canary, and no tunnel token, may appear in any log record,
any Event, or any object in the cluster other than the Secrets meant to hold them (status, annotations,
ConfigMaps included). Each secret is looked for as is and base64-encoded."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from harness.gateways import NS, World
from harness.leaks import assert_nowhere, cluster_text, log_text
from harness.waiting import wait_for

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
        world.close()
    assert published["status"]["tunnelId"]
    assert any("chutes.cloudflare_core" in r.name or r.name.startswith("kopf") for r in debug_logs.records)
    assert any(r.levelno == logging.DEBUG for r in debug_logs.records)
    events, objects = cluster_text(kube)
    objects += published_objects
    assert "CredentialsInvalid" in events and "journal.example.com" in objects  # the dumps are not empty
    assert_nowhere({"API token": CANARY_TOKEN, "revoked token": REVOKED_CANARY, "tunnel token": tunnel_token},
                   log_text(debug_logs), events, objects)


def test_httproute_scenarios_leak_no_secret(kube: Any, cloudflare: Any, debug_logs: pytest.LogCaptureFixture) -> None:
    from harness import httproutes as hr

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
    from chutes.frontdoors.sessions import handlers
    from chutes.frontdoors.sessions.scheduler import Timing
    from harness import sessions as sh

    monkeypatch.setattr(handlers, "DEFAULT_TIMING", Timing(
        quiet=0.1, max_delay=0.5, removal_quiet=0.2, removal_max_delay=0.8, settle=0.4, jitter=0.3,
        backoff=(0.2, 0.5, 1.0)))
    tunnel = sh.create_tunnel(cloudflare)
    api = sh.kube_client(kube)
    try:
        with sh.operator(cloudflare, sh.session_env(cloudflare, tunnel)):
            assert CANARY_TOKEN in sh.session_env(cloudflare, tunnel, 0).values()
            sh.create_pod(api, sh.pod("alice", "8b6cc2aa9a45"))
            sh.create_pod(api, sh.pod("upper", "ABCDEF123456"))
            wait_for("published", lambda: sh.published(cloudflare, api, tunnel).sessions() == {"8b6cc2aa9a45"})
            wait_for("the refusal's Event", lambda: sh.events_for(api, "upper"))
            _events, published_objects = cluster_text(kube)
            sh.delete_pod(api, "alice")
            wait_for("unpublished", lambda: not sh.published(cloudflare, api, tunnel).sessions())
    finally:
        api.close()  # type: ignore[no-untyped-call]
    events, objects = cluster_text(kube)
    objects += published_objects
    assert "InvalidSessionHash" in events and "opencode-session-8b6cc2aa9a45" in objects
    assert_nowhere({"API token": CANARY_TOKEN}, log_text(debug_logs), events, objects)


# --- a malformed token: refused where it is read, never sent, never logged --------------------------------

MALFORMED_TOKEN = "CANARYxMALFORMEDxFIRSTxLINEx0123\r\nX-Canary-Leak: CANARYxSECONDxLINE"
MALFORMED = {"malformed token": MALFORMED_TOKEN, "its first line": "CANARYxMALFORMEDxFIRSTxLINEx0123",
             "its second line": "CANARYxSECONDxLINE", "its header": "X-Canary-Leak"}


def test_a_chute_configs_malformed_token_is_refused_unsent_and_unlogged(kube: Any, cloudflare: Any,
                                                                       debug_logs: pytest.LogCaptureFixture) -> None:
    world = World(kube, cloudflare)
    world.start()
    try:
        cloudflare.reset_log()
        world.token_secret(token=MALFORMED_TOKEN)
        world.config()
        config = wait_for("CredentialsInvalid", lambda: (c := world.get_config())
                          and world.condition(c).get("reason") == "CredentialsInvalid" and c)
        world.service()
        world.gateway()
        wait_for("the gateway refused", lambda: world.condition(world.get_gateway()).get("reason") == "ConfigNotReady")
        wait_for("the Warning Event", lambda: ("Warning", "CredentialsInvalid") in {
            (t, r) for t, r, _ in world.events("default", "default")})
    finally:
        world.close()
    assert config["status"]["ready"] is False
    assert "printable ASCII without whitespace" in world.condition(config)["message"]
    assert cloudflare.requests == []  # nothing sent, so nothing published
    events, objects = cluster_text(kube)
    assert_nowhere(MALFORMED, log_text(debug_logs), events, objects)


def test_a_tenants_malformed_token_is_refused_unsent_and_unlogged(kube: Any, cloudflare: Any,
                                                                 debug_logs: pytest.LogCaptureFixture) -> None:
    from harness import httproutes as hr

    world = hr.World(kube, cloudflare)
    try:
        world.token_secret(token=MALFORMED_TOKEN)
        world.tenant()
        cloudflare.reset_log()
        world.start()
        world.route("web", "web.example.com")
        refused = world.wait_reason("web", "CredentialsInvalid")
        hr.wait_for("the Warning Event", lambda: ("Warning", "CredentialsInvalid") in {
            (t, r) for t, r, _ in world.events("web")})
    finally:
        world.close()
    assert refused["status"] == "False" and "printable ASCII without whitespace" in refused["message"]
    assert cloudflare.requests == []
    events, objects = cluster_text(kube)
    assert_nowhere(MALFORMED, log_text(debug_logs), events, objects)


def test_a_malformed_session_token_stops_the_session_door_naming_the_variable_not_the_token() -> None:
    from chutes.frontdoors.sessions.config import SessionConfigError, load_config

    environ = {"CF_API_TOKEN": MALFORMED_TOKEN, "CF_ZONE_ID": "0" * 32,
               "CF_TUNNEL_ID": "00000000-0000-0000-0000-000000000000", "DOMAIN": "example.org",
               "ROUTER_SERVICE_URL": "http://opencode-router.opencode-router.svc:80"}
    with pytest.raises(SessionConfigError) as refused:
        load_config(environ)
    message = str(refused.value)
    assert "CF_API_TOKEN" in message and "printable ASCII without whitespace" in message
    assert_nowhere(MALFORMED, message, "", "")


def test_log_level_debug_keeps_the_sdk_and_the_http_stack_at_info(cloudflare: Any, caplog: pytest.LogCaptureFixture,
                                                                  restored_logging: None) -> None:
    from chutes import cli
    from chutes.cloudflare_core import CloudflareCore, RequestBudget
    from chutes.settings import load_settings

    cli.configure_logging(load_settings({}, log_level="DEBUG"))

    async def requests() -> None:
        async with CloudflareCore(CANARY_TOKEN, cloudflare.base_url, budget=RequestBudget()) as core:
            await core.list_tunnels(cloudflare.account_id)
            cloudflare.faults.fail(op="tunnels.list", status=503, count=1)
            await core.list_tunnels(cloudflare.account_id)

    asyncio.run(requests())
    assert logging.getLogger("chutes").isEnabledFor(logging.DEBUG)
    assert [c.status for c in cloudflare.calls(op="tunnels.list")] == [200, 503, 200]
    below = [(r.name, r.getMessage()[:80]) for r in caplog.records
             if r.name.split(".")[0] in ("httpx", "httpcore", "cloudflare") and r.levelno < logging.INFO]
    assert below == []


async def test_an_sdk_error_quoting_the_token_never_reaches_our_errors_cause_chain(cloudflare: Any) -> None:
    import cloudflare as sdk
    import httpx

    from chutes.cloudflare_core import CloudflareClient, CloudflareError, RequestBudget, TransientError

    async def header_refused() -> None:  # what httpx and the SDK raise for a header h11 refuses
        try:
            raise httpx.LocalProtocolError(f"Illegal header value b'Bearer {CANARY_TOKEN}'")
        except httpx.LocalProtocolError as exc:
            raise sdk.APIConnectionError(request=httpx.Request("GET", cloudflare.base_url)) from exc

    async def bad_argument(quote: bool) -> None:
        raise ValueError(f"unexpected argument {CANARY_TOKEN if quote else 'zone'}")

    def chain(error: BaseException) -> str:
        return "".join(traceback.format_exception(error))

    client = CloudflareClient(CANARY_TOKEN, cloudflare.base_url, budget=RequestBudget(), backoff=0.01)
    try:
        with pytest.raises(TransientError) as unavailable:
            await client.call("tunnels.list", header_refused)
        with pytest.raises(CloudflareError) as quoting:
            await client.call("tunnels.list", bad_argument, True)
        with pytest.raises(CloudflareError) as plain:
            await client.call("tunnels.list", bad_argument, False)
    finally:
        await client.aclose()
    for error in (unavailable.value, quoting.value):
        assert CANARY_TOKEN not in chain(error) and "Bearer" not in chain(error)
        assert error.__cause__ is None and error.__context__ is None
    assert isinstance(plain.value.__cause__, ValueError)  # a bug of ours keeps its traceback
