"""Least privilege, checked: every Kubernetes API call the operator made during this session's operator
tests (recorded by the emulator under the operator's own token, see harness/rbac_record.py) must be allowed by the
RBAC the chart renders for the same configuration: the same front doors, the same watched namespaces,
peering on or off. Permissions the rendered rules grant that no recorded call used (verb x resource, in
a ClusterRole or a Role, over every configuration checked) are listed in build/rbac-unused.json, and when
the session ran the whole suite (every test file, unfiltered) there must be none: the chart grants nothing
beyond what the operator was seen to need.

The check runs last (marker ``last``), over whatever operator tests ran in the session; the scenario
in this file runs the operator namespace-restricted with peering, so the file alone checks something.
Under pytest-xdist each worker checks its own calls, and the controller checks every worker's calls
together at the end of the run, failing it as this test would (harness/rbac_record.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chutes.sandbox.kubernetes import OPERATOR_TOKEN, USER_TOKEN, ApiCall
from harness import httproutes
from harness.chart import NAMESPACE
from harness.gateways import GROUP, NS, VERSION, World
from harness.rbac_check import check, compare, write_unused
from harness.rbac_record import ApiCallRecord, OperatorProfile, whole_suite
from harness.waiting import wait_for

# --- a scenario of its own: namespace-restricted, with peering ------------------------------------


def test_namespaced_operator_with_peering_publishes_and_removes_a_gateway(kube: Any, cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    world.namespace(NS)
    kube.seed("kopf.dev/v1/kopfpeerings", {"metadata": {"name": "chutes", "namespace": NS}})
    try:
        world.run_operator(standalone=False, httproutes=False, sessions=False, namespaces=(NS,), peering="chutes",
                           priority=10)
        world.ready_config()
        world.service()
        world.gateway()
        world.ready_gateway()
        peers = wait_for("peering keep-alive", lambda: world.custom.get_namespaced_custom_object(
            "kopf.dev", "v1", NS, "kopfpeerings", "chutes").get("status"))
        assert [p["priority"] for p in peers.values()] == [10]
        # Repairs patch what is ours: a tampered token Secret, and the Deployment for a replica change.
        token = world.core.read_namespaced_secret("chute-blog-tunnel-token", NS).data["token"]
        world.core.patch_namespaced_secret("chute-blog-tunnel-token", NS, {"stringData": {"token": "tampered"}})
        world.patch_gateway("blog", {"replicas": 1})
        wait_for("replicas applied", lambda: world.apps.read_namespaced_deployment(
            "chute-blog-cloudflared", NS).spec.replicas == 1)
        wait_for("token repaired", lambda: world.core.read_namespaced_secret(
            "chute-blog-tunnel-token", NS).data["token"] == token)
        world.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog")
        wait_for("gateway gone", lambda: not world.custom.list_namespaced_custom_object(
            GROUP, VERSION, NS, "chutegateways")["items"])
        assert world.live_tunnels() == [] and world.records() == []
    finally:
        world.close()
    # The recording: the operator's calls carry its own token, the test's calls (it created the
    # ChuteConfig, the ChuteGateway and the Service) another one.
    calls = kube.api_calls(OPERATOR_TOKEN)
    made = {(c.verb, c.resource, c.subresource, c.namespace) for c in calls}
    assert ("patch", "chutegateways", "status", NS) in made and ("create", "deployments", "", NS) in made
    assert ("patch", "deployments", "", NS) in made and ("patch", "secrets", "", NS) in made
    assert ("patch", "kopfpeerings", "", NS) in made  # the keep-alive
    assert not {("create", "chuteconfigs", "", None), ("create", "chutegateways", "", NS),
                ("create", "services", "", NS)} & made
    assert ("create", "chutegateways", "", NS) in {(c.verb, c.resource, c.subresource, c.namespace)
                                                   for c in kube.api_calls(USER_TOKEN)}


def test_namespaced_operator_serves_routes_with_templates(kube: Any, cloudflare: Any) -> None:
    """The HTTPRoute door restricted to its namespaces: templates and their status are patched in a Role."""
    world = httproutes.World(kube, cloudflare)
    try:
        httproutes.home(world, base={"originService": {"url": "https://traefik.traefik.svc:443"}},
                        namespaces=(httproutes.OPNS, "apps"))
        world.template("protected", {"accessApplication": {"enabled": True, "sessionDuration": "8h"}})
        world.route("a", "a.example.com", template="protected")
        world.wait_ready("a")
        world.patch_template("protected", {"accessApplication": {"enabled": True, "sessionDuration": "4h"}})
        wait_for("template applied", lambda: world.apps("a.example.com")[0]["session_duration"] == "4h")
        # kopf records the template's handling (a patch of the template) after its handler: waited for, not
        # raced by the stop (these calls are what the Role must grant)
        wait_for("the template and its status patched", lambda: {
            ("patch", "cloudflarezerotrusttemplates", "", httproutes.OPNS),
            ("patch", "cloudflarezerotrusttemplates", "status", httproutes.OPNS)} <= {
            (c.verb, c.resource, c.subresource, c.namespace) for c in kube.api_calls(OPERATOR_TOKEN)})
    finally:
        world.close()


# --- the check ----------------------------------------------------------------------------------------


def test_the_comparison_reports_a_denied_call_and_every_grant_no_call_used() -> None:
    profile = OperatorProfile(("sessions",), ("opencode-router",), False,
                              (("CHUTES_LEDGER_NAMESPACE", NAMESPACE), ("WATCH_NAMESPACE", "opencode-router")))
    record = ApiCallRecord()
    record.add(profile, {ApiCall(OPERATOR_TOKEN, "watch", "", "pods", namespace="opencode-router"): 1,
                         ApiCall(OPERATOR_TOKEN, "list", "", "pods"): 1}, "a test")  # cluster-wide: denied
    denied, unused = compare(record)
    assert len(denied) == 3 and all(d.startswith("list core/pods (cluster-wide)") for d in denied)  # every account
    assert "watch core/pods (Role)" not in unused
    assert {"list core/pods (Role)", "create traefik.io/ingressroutes (Role)", "create core/events (Role)",
            "list apiextensions.k8s.io/customresourcedefinitions (ClusterRole)"} <= set(unused)


def synthetic_record(*calls: ApiCall, test: str = "a test") -> ApiCallRecord:
    """A record of a session door operator (watching opencode-router) that made `calls`."""
    profile = OperatorProfile(("sessions",), ("opencode-router",), False,
                              (("CHUTES_LEDGER_NAMESPACE", NAMESPACE), ("WATCH_NAMESPACE", "opencode-router")))
    record = ApiCallRecord()
    record.add(profile, dict.fromkeys(calls, 1), test)
    return record


def test_records_merge_across_workers_and_survive_their_json_form() -> None:
    watch = ApiCall(OPERATOR_TOKEN, "watch", "", "pods", namespace="opencode-router")
    patch = ApiCall(OPERATOR_TOKEN, "patch", "traefik.io", "ingressroutes", namespace="opencode-router", name="r")
    one, other = synthetic_record(watch, test="t1"), synthetic_record(watch, patch, test="t2")
    other.unattributed["t3"] = 2
    merged = ApiCallRecord.from_json(json.loads(json.dumps(one.as_json())))  # as a worker hands it over
    merged.update(ApiCallRecord.from_json(json.loads(json.dumps(other.as_json()))))
    [profile] = merged.calls
    assert merged.calls[profile] == {watch: 2, patch: 1}
    assert merged.first_seen[(profile, watch)] == "t1" and merged.first_seen[(profile, patch)] == "t2"
    assert merged.unattributed == {"t3": 2}
    assert ApiCallRecord.from_json(merged.as_json()).as_json() == merged.as_json()


def test_a_denied_call_fails_any_run_and_an_unused_grant_fails_a_whole_suite_run() -> None:
    used = [ApiCall(OPERATOR_TOKEN, "watch", "", "pods", namespace="opencode-router")]
    partial = check(synthetic_record(*used), complete=False)
    assert partial.unused and partial.failures() == []  # a partial run cannot know what goes unused
    [unused] = check(synthetic_record(*used), complete=True).failures()
    assert unused.startswith("the chart grants permissions no operator call used") and "list core/pods (Role)" in unused
    denied = check(synthetic_record(*used, ApiCall(OPERATOR_TOKEN, "list", "", "pods")), complete=False)
    assert [f.splitlines()[0] for f in denied.failures()] == ["the chart's RBAC does not allow:"]
    stray = synthetic_record(*used)
    stray.unattributed["t"] = 1
    assert "by no in-process operator" in check(stray, complete=False).failures()[0]


@pytest.mark.last
def test_the_chart_allows_every_call_the_operator_made_and_grants_nothing_else(
        operator_api_calls: ApiCallRecord, request: pytest.FixtureRequest) -> None:
    """Under pytest-xdist, a worker's own calls only: the controller checks the whole run (harness.rbac_record)."""
    record, session = operator_api_calls, request.session
    assert not record.unattributed, (
        f"calls made with the operator's token by no in-process operator: {record.unattributed}; run the "
        "operator through chutes.runtime.run (OperatorThread) so its configuration is known")
    if not record.calls:
        pytest.skip("no operator test ran in this session (the scenario above checks the recording itself)")
    # Nothing beyond: every permission the chart grants was used by some recorded call. Only a session that
    # ran every test file unfiltered, in one process, has recorded every call the operator needs.
    in_worker = hasattr(request.config, "workerinput")  # the controller writes the whole run's list
    verdict = check(record, complete=whole_suite(session) and not in_worker)
    if not in_worker:
        write_unused(verdict)
    print("\n" + verdict.summary())
    for line in verdict.unused:
        print("  never used:", line)
    assert not verdict.failures(), "\n".join(verdict.failures())
