"""What the operator tells the outside world: /healthz, /readyz and /metrics, JSON logs, Prometheus
metrics per front door, and a Kubernetes Event on the source object for every Cloudflare create,
delete and refusal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from chutes.cores import fingerprint
from chutes.observability.metrics import HOSTNAMES, HostnameBook, reconcile_timer
from chutes.observability.readiness import Insights, Readiness, Vault
from chutes.observability.server import MetricsServer
from harness import gateways
from harness.gateways import NS, World
from harness.processes import chutes_command, free_port, run_env, wait_http_ok
from harness.waiting import wait_for

world = gateways.world_fixture  # the fixture: both emulators and the operator (ChuteGateway door)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


# --- the process: probes, metrics, JSON logs ---------------------------------------------------------


def test_chutes_run_serves_healthz_readyz_and_metrics_and_logs_json(kube: Any, cloudflare: Any) -> None:
    probes, metrics = free_port(), free_port()
    process = subprocess.Popen(
        [*chutes_command(), "run", "-A", "--standalone", "--log-format", "json", "--log-level", "DEBUG",
         f"--liveness=http://127.0.0.1:{probes}/healthz", f"--metrics-port={metrics}"],
        env=run_env(kube, cloudflare), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert "front_doors" in wait_http_ok(f"http://127.0.0.1:{probes}/healthz")
        wait_for("ready", lambda: http_get(f"http://127.0.0.1:{metrics}/readyz") == (200, "ok\n"))
        status, text = http_get(f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200
        for family in ("chutes_reconcile_duration_seconds", "chutes_managed_hostnames", "chutes_orphans_removed",
                       "chutes_conflicts", "chutes_cloudflare_requests", "chutes_cloudflare_budget_remaining"):
            assert re.search(rf"^# TYPE {family}(_total)? ", text, re.M), family
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(r, dict) and r.get("message") and r.get("severity") for r in records)
    assert any(r["message"] == "Serving front doors: chutes, httproutes, tunnels" for r in records)
    assert any(r["message"].startswith("Serving /metrics and /readyz on port") for r in records)
    assert {"debug", "info"} <= {r["severity"] for r in records}


async def test_readyz_says_what_is_missing_until_logged_in_and_watching() -> None:
    import kopf

    vault, insights = Vault(), Insights()
    server = MetricsServer(0, Readiness(vault, insights).problems, host="127.0.0.1", registry=CollectorRegistry())
    port = await server.start()
    try:
        status, text = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/readyz")
        assert status == 503
        assert "not logged in" in text and "resource discovery not finished" in text
        await vault.populate({"login": kopf.ConnectionInfo(server="https://cluster.example")})
        insights.ready_resources.set()
        insights.ready_namespaces.set()
        assert await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/readyz") == (200, "ok\n")
        status, _ = await asyncio.to_thread(http_get, f"http://127.0.0.1:{port}/nothing")
        assert status == 404
    finally:
        await server.stop()


# --- metric helpers ------------------------------------------------------------------------------------


def test_hostnames_count_distinct_names_per_front_door() -> None:
    book = HostnameBook()
    book.publish("test-door", "A/ns/a", ["a.example.com", "shared.example.com"])
    book.publish("test-door", "B/ns/b", ["shared.example.com"])
    assert sample("chutes_managed_hostnames", front_door="test-door") == 2
    book.publish("test-door", "A/ns/a", ["a2.example.com"])
    assert book.hostnames("test-door") == {"a2.example.com", "shared.example.com"}
    book.forget("test-door", "A/ns/a")
    book.forget("test-door", "B/ns/b")
    assert sample("chutes_managed_hostnames", front_door="test-door") == 0


@pytest.mark.parametrize(("raised", "outcome"), [(None, "success"), (RuntimeError("boom"), "error")])
async def test_reconcile_timer_observes_every_outcome(raised: Exception | None, outcome: str) -> None:
    import kopf

    before = {o: sample("chutes_reconcile_duration_seconds_count", front_door="timer-test", outcome=o)
              for o in ("success", "retry", "refused", "error")}
    for error in (raised, kopf.TemporaryError("later"), kopf.PermanentError("spec")):
        with pytest.raises(type(error)) if error else contextlib.nullcontext():
            async with reconcile_timer("timer-test"):
                if error:
                    raise error
    after = {o: sample("chutes_reconcile_duration_seconds_count", front_door="timer-test", outcome=o)
             for o in before}
    expected = {"success": 0, "retry": 1, "refused": 1, "error": 0}
    expected[outcome] += 1
    assert {o: after[o] - before[o] for o in before} == expected


# --- the ChuteGateway door: Events and metrics ---------------------------------------------------------

CREATED = ["TunnelReady", "AccessApplicationReady", "AccessPolicyReady", "TunnelRuleReady", "DNSRecordReady"]
REMOVED = ["DNSRecordRemoved", "TunnelRuleRemoved", "AccessPolicyRemoved", "AccessApplicationRemoved",
           "TunnelRemoved", "Unpublished"]


def test_every_cloudflare_create_and_delete_posts_an_event_and_the_metrics_follow(world: World) -> None:
    success = sample("chutes_reconcile_duration_seconds_count", front_door="chutes", outcome="success")
    world.ready_config()
    config_events = wait_for("config Event", lambda: [
        (e.type, e.reason) for e in world.core.list_namespaced_event("default").items
        if e.involved_object.name == "default"])
    assert ("Normal", "IdentityProviderReady") in config_events  # a cluster-scoped object's Events go to default
    world.service()
    world.gateway()
    world.ready_gateway()
    events = wait_for("create Events", lambda: (e := world.events("blog")) and len(e) >= len(CREATED) and e)
    assert sorted(reason for _, reason, _ in events) == sorted(CREATED)  # one each (posting order may vary)
    assert all(type_ == "Normal" for type_, _, _ in events)
    assert "blog.example.com" in HOSTNAMES.hostnames("chutes")
    wait_for("the reconcile timed", lambda: sample(  # recorded as the handler returns, after its status writes
        "chutes_reconcile_duration_seconds_count", front_door="chutes", outcome="success") > success)
    budget = sample("chutes_cloudflare_budget_remaining", token=fingerprint(world.cf.token))
    assert 0 < budget < 1200
    exposition = generate_latest(REGISTRY).decode()
    assert f'token="{fingerprint(world.cf.token)}"' in exposition and world.cf.token not in exposition

    world.custom.delete_namespaced_custom_object("chutes.troubleshat.com", "v1alpha1", NS, "chutegateways", "blog")
    wait_for("gateway gone", lambda: not world.custom.list_namespaced_custom_object(
        "chutes.troubleshat.com", "v1alpha1", NS, "chutegateways")["items"])
    reasons = wait_for("delete Events", lambda: (r := [reason for _, reason, _ in world.events("blog")])
                       and len(r) >= len(CREATED + REMOVED) and r)
    assert sorted(reasons) == sorted(CREATED + REMOVED)
    assert "blog.example.com" not in HOSTNAMES.hostnames("chutes")


def test_a_refusal_posts_one_warning_and_counts_a_conflict(world: World) -> None:
    conflicts = sample("chutes_conflicts_total", front_door="chutes")
    refused = sample("chutes_reconcile_duration_seconds_count", front_door="chutes", outcome="retry")
    world.ready_config()
    world.service()
    world.service(namespace="team-b")
    world.gateway()
    world.ready_gateway()
    world.gateway(name="blog", namespace="team-b")
    world.wait_reason("HostnameConflict", "blog", "team-b")
    warnings = wait_for("Warning", lambda: [(t, r) for t, r, _ in world.events("blog", "team-b") if t == "Warning"])
    assert warnings == [("Warning", "HostnameConflict")]
    wait_for("the conflict counted", lambda: sample("chutes_conflicts_total", front_door="chutes") >= conflicts + 1
             and sample("chutes_reconcile_duration_seconds_count", front_door="chutes", outcome="retry") >= refused + 1)
    assert [r for _, r, _ in world.events("blog", "team-b")] == ["HostnameConflict"]  # nothing was created


def test_metric_types_follow_prometheus_conventions() -> None:
    text = generate_latest(REGISTRY).decode()
    for family in ("chutes_cloudflare_requests", "chutes_orphans_removed", "chutes_conflicts"):
        assert f"# TYPE {family}_total counter" in text
    assert "# TYPE chutes_reconcile_duration_seconds histogram" in text
    assert "# TYPE chutes_managed_hostnames gauge" in text
