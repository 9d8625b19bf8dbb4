"""Namespace -> hostname authorization (``--hostname-rules``) through the real operator and both emulators, for
every front door: a claim outside the rules is refused (condition and one Warning Event, or the Pod's Warning
Event) and nothing is written to Cloudflare for it, while an allowed one publishes; what a source had published
before the rules refused it is unpublished at the restart that brings the rules; a bad rules file stops
``chutes run`` with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chutes.frontdoors.sessions import handlers as session_handlers
from harness import httproutes as routes_h
from harness import sessions as h
from harness.gateways import World as GatewayWorld
from harness.processes import chutes_command, free_port
from harness.sessions import api_fixture  # noqa: F401  (a pytest fixture)
from harness.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
REASON = "HostnameNotAuthorized"
NAMESPACED = [{"namespaces": ["team-a", "apps"], "hostnames": ["*.{namespace}.example.com"]}]


def rules_file(tmp_path: Path, rules: list[dict[str, Any]]) -> str:
    path = tmp_path / "hostname-rules.yaml"
    path.write_text(yaml.safe_dump({"rules": rules}))
    return str(path)


def writes_mentioning(cloudflare: Any, text: str) -> list[str]:
    """Cloudflare writes whose path or body mention `text`."""
    return [f"{r.method} {r.path}" for r in cloudflare.requests
            if r.method != "GET" and text in r.path + json.dumps(r.body)]


def warnings(events: list[tuple[str, str, str]], reason: str = REASON) -> list[str]:
    return [message for type_, why, message in events if (type_, why) == ("Warning", reason)]


# --- ChuteGateway -------------------------------------------------------------------------------------


@pytest.fixture()
def gateways(kube: Any, cloudflare: Any) -> Iterator[GatewayWorld]:
    yield from GatewayWorld.opened(kube, cloudflare)


def test_a_gateway_outside_the_rules_is_refused_and_claims_nothing(gateways: GatewayWorld, tmp_path: Path) -> None:
    world = gateways
    world.start(hostname_rules=rules_file(tmp_path, NAMESPACED))
    world.ready_config()
    world.service(namespace="team-a")
    world.service(namespace="team-b")
    # team-b asks first for team-a's hostname, and for one of its own that no rule allows.
    world.gateway("thief", "team-b", hostname="blog.team-a.example.com")
    world.gateway("shop", "team-b", hostname="shop")
    for name, fqdn in (("thief", "blog.team-a.example.com"), ("shop", "shop.example.com")):
        gateway = world.wait_reason(REASON, name, "team-b")
        assert gateway["status"]["ready"] is False
        ready = world.condition(gateway)
        assert ready["status"] == "False"
        assert ready["message"] == (f"namespace team-b may not publish {fqdn} (operator hostname rules: no rule "
                                    "allows it any hostname)")
        assert wait_for(f"the Warning Event on {name}", lambda n=name: warnings(world.events(n, "team-b"))) == [
            ready["message"]]

    world.gateway("blog", "team-a", hostname="blog.team-a.example.com")
    gateway = world.ready_gateway("blog", "team-a")  # not a HostnameConflict: the refused claim does not count
    assert gateway["status"]["hostname"] == "blog.team-a.example.com"
    assert [r["name"] for r in world.records()] == ["blog.team-a.example.com"]
    [tunnel] = world.live_tunnels()
    assert [r.get("hostname") for r in world.ingress(tunnel["id"])] == ["blog.team-a.example.com", None]
    assert [a["domain"] for a in world.state()["access_apps"].values()] == ["blog.team-a.example.com"]
    assert writes_mentioning(world.cf, "team-b") == [] and writes_mentioning(world.cf, "shop.example.com") == []
    assert [d.metadata.name for d in world.apps.list_namespaced_deployment("team-b").items] == []


def test_a_published_gateway_the_new_rules_refuse_is_unpublished_at_restart(
    gateways: GatewayWorld, tmp_path: Path
) -> None:
    world = gateways
    world.start(hostname_rules=None)
    world.ready_config()
    world.service(namespace="team-a")
    world.gateway("blog", "team-a")  # blog.example.com: fine without rules
    world.ready_gateway("blog", "team-a")
    assert len(world.records("blog.example.com")) == 1 and len(world.live_tunnels()) == 1
    world.stop()

    world.start(hostname_rules=rules_file(tmp_path, NAMESPACED))  # team-a: only *.team-a.example.com now
    gateway = world.wait_reason(REASON, "blog", "team-a")
    assert world.condition(gateway)["message"] == (
        "namespace team-a may not publish blog.example.com (operator hostname rules: it may publish "
        "*.team-a.example.com)")
    status = gateway["status"]
    assert not any(status.get(key) for key in ("hostname", "tunnelId", "accessAppId", "dnsRecordId"))
    assert world.condition(gateway, "DNSReady")["status"] == "False"
    assert world.records() == [] and world.live_tunnels() == [] and world.state()["access_apps"] == {}
    assert world.apps.list_namespaced_deployment("team-a").items == []
    events = wait_for("the Warning Event", lambda: warnings(world.events("blog", "team-a")))
    assert events == [world.condition(gateway)["message"]]


# --- HTTPRoutes ---------------------------------------------------------------------------------------


@pytest.fixture()
def routes(kube: Any, cloudflare: Any) -> Iterator[routes_h.World]:
    yield from routes_h.World.opened(kube, cloudflare)


def test_a_route_outside_the_rules_is_refused_and_claims_nothing(routes: routes_h.World, tmp_path: Path) -> None:
    world = routes
    world.token_secret()
    world.tenant()
    world.start(hostname_rules=rules_file(tmp_path, NAMESPACED))
    world.route("thief", "web.apps.example.com", namespace="other")  # first to ask for apps' hostname
    world.route("evil", "evil.example.com", namespace="other")
    for name, hostname in (("thief", "web.apps.example.com"), ("evil", "evil.example.com")):
        ready = world.wait_reason(name, REASON, namespace="other")
        assert ready["status"] == "False"
        assert ready["message"] == (f"namespace other may not publish {hostname} (operator hostname rules: no rule "
                                    "allows it any hostname)")
        assert wait_for(f"the Warning Event on {name}", lambda n=name: warnings(world.events(n, "other"))) == [
            ready["message"]]
        assert world.state(name, "other") is None

    world.route("web", "web.apps.example.com")  # namespace apps
    world.wait_ready("web")  # not a HostnameConflict: the refused claim does not count
    [record] = world.records()
    assert record["name"] == "web.apps.example.com" and "src=HTTPRoute/apps/web" in record["comment"]
    assert [r.get("hostname") for r in world.ingress()] == ["web.apps.example.com", None]
    assert world.rule("evil.example.com") is None and world.apps("evil.example.com") == []
    assert writes_mentioning(world.cf, "evil.example.com") == []
    assert writes_mentioning(world.cf, "HTTPRoute/other/") == []


def test_a_published_route_the_new_rules_refuse_is_unpublished_at_restart(
    routes: routes_h.World, tmp_path: Path
) -> None:
    world = routes
    world.token_secret()
    world.tenant()
    world.start(hostname_rules=None)
    world.route("web", "web.example.com")
    world.wait_ready("web")
    assert len(world.records("web.example.com")) == 1 and world.rule("web.example.com") is not None
    world.stop()

    world.start(hostname_rules=rules_file(tmp_path, NAMESPACED))  # apps: only *.apps.example.com now
    ready = world.wait_reason("web", REASON)
    assert "namespace apps may not publish web.example.com" in ready["message"]
    assert world.records() == [] and world.rule("web.example.com") is None
    assert world.apps("web.example.com") == [] and world.state("web") is None
    annotations = world.annotations("web")
    assert not [key for key in annotations if key.endswith(("cnameRecordId", "hostnameRouteId", "accessAppId"))]
    assert wait_for("the Warning Event", lambda: warnings(world.events("web"))) == [ready["message"]]


# --- session Pods -------------------------------------------------------------------------------------


@pytest.fixture()
def fast_sessions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_handlers, "DEFAULT_TIMING", h.FAST_TIMING)


ALLOWED, REFUSED = "aaaa00000001", "bbbb00000002"


def session_rules(tmp_path: Path) -> str:
    return rules_file(tmp_path, [{"namespaces": [h.NAMESPACE], "hostnames": [h.hostname(ALLOWED)]}])


def names_of(state: h.Published, session_hash: str) -> set[str]:
    """What is published for one session: record, rule, IngressRoutes."""
    hostname, label = h.hostname(session_hash), f"{session_hash}{h.SUFFIX}"
    return ({hostname} & state.records) | ({hostname} & state.rules) | {r for r in state.routes if label in r}


def test_a_session_outside_the_rules_is_refused_on_its_pod(
    cloudflare: Any, kube: Any, api: Any, fast_sessions: None, tmp_path: Path
) -> None:
    tunnel = h.create_tunnel(cloudflare)
    environ = h.session_env(cloudflare, tunnel)
    with h.operator(cloudflare, environ, hostname_rules=session_rules(tmp_path)):
        h.create_pod(api, h.pod("refused", REFUSED))
        h.create_pod(api, h.pod("allowed", ALLOWED))
        events = wait_for("an Event on the refused Pod", lambda: h.events_for(api, "refused"))
        assert [(e.type, e.reason) for e in events] == [("Warning", REASON)]
        assert events[0].message == (f"namespace {h.NAMESPACE} may not publish {h.hostname(REFUSED)} (operator "
                                     f"hostname rules: it may publish {h.hostname(ALLOWED)}): nothing is published")
        wait_for("the allowed one", lambda: h.published(cloudflare, api, tunnel).sessions() == {ALLOWED})
        assert names_of(h.published(cloudflare, api, tunnel), REFUSED) == set()
        assert writes_mentioning(cloudflare, h.hostname(REFUSED)) == []


def test_a_published_session_the_new_rules_refuse_is_unpublished_at_restart(
    cloudflare: Any, kube: Any, api: Any, fast_sessions: None, tmp_path: Path
) -> None:
    tunnel = h.create_tunnel(cloudflare)
    environ = h.session_env(cloudflare, tunnel)
    with h.operator(cloudflare, environ):
        h.create_pod(api, h.pod("allowed", ALLOWED))
        h.create_pod(api, h.pod("refused", REFUSED))
        wait_for("both", lambda: h.published(cloudflare, api, tunnel).sessions() == {ALLOWED, REFUSED})
    restarted = {**environ, "HEALTH_PORT": str(free_port())}  # a new process's port: the old one may linger a moment
    with h.operator(cloudflare, restarted, hostname_rules=session_rules(tmp_path)):
        wait_for("unpublished", lambda: not names_of(h.published(cloudflare, api, tunnel), REFUSED))
        state = h.published(cloudflare, api, tunnel)
        assert state.sessions() == {ALLOWED} and state.duplicates == 0
        warned = wait_for("the Warning Event", lambda: [e for e in h.events_for(api, "refused") if e.type == "Warning"])
        assert [e.reason for e in warned] == [REASON]


# --- chutes run ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [None, "rules: [{namespaces: [a]}]\n", "rules: [\n"],
                         ids=["missing", "malformed", "not-yaml"])
def test_chutes_run_with_a_bad_rules_file_exits_2_naming_it(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "rules.yaml"
    if content is not None:
        path.write_text(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDFLARE_", "CHUTES_", "CF_", "KUBECONFIG"))}
    env["PYTHONPATH"] = str(REPO / "operator")
    result = subprocess.run([*chutes_command(), "run", "--standalone", "--hostname-rules", str(path)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"CHUTES_HOSTNAME_RULES (--hostname-rules): {path}: " in result.stderr
    assert "Traceback" not in result.stderr
