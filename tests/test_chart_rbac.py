"""Least privilege, checked: every Kubernetes API call the operator made during this session's operator
tests (recorded by the emulator under the operator's own token, see conftest.py) must be allowed by the
RBAC the chart renders for the same configuration: the same front doors, the same watched namespaces,
peering on or off. Permissions the rendered rules grant that no recorded call used (verb x resource, in
a ClusterRole or a Role, over every configuration checked) are listed in build/rbac-unused.json, and when
the session ran the whole suite (every test file, unfiltered) there must be none: the chart grants nothing
beyond what the operator was seen to need.

The check runs last (marker ``last``), over whatever operator tests ran in the session; the scenario
in this file runs the operator namespace-restricted with peering, so the file alone checks something.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import httproutes_harness as httproutes
from chart_harness import NAMESPACE, RELEASE, SESSION_VALUES, Grant, allowing, grants, render
from chutes.sandbox.kubernetes import OPERATOR_TOKEN, USER_TOKEN, ApiCall
from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings
from conftest import REPO, ApiCallRecord, OperatorProfile
from test_gateways_operator import GROUP, NS, VERSION, World, wait_for

UNUSED_FILE = REPO / "build" / "rbac-unused.json"
SERVICE_ACCOUNT = f"{RELEASE}-chutes-operator"
SIDECAR = "opencode-router"  # the ServiceAccount of Pods running the session door as a sidecar
SIDECAR_IDENTITY = f"{RELEASE}-chutes-operator-sessions-sidecar"  # or its own (sidecarIdentity)


def values_for(profile: OperatorProfile) -> tuple[dict[str, Any], str]:
    """The chart values (and release namespace) that install the operator the way the test ran it."""
    doors = set(profile.front_doors)
    door_namespaces = dict(profile.door_namespaces)
    sessions: dict[str, Any] = {"enabled": "sessions" in doors}
    if "sessions" in doors:
        watch = door_namespaces.get("WATCH_NAMESPACE", "opencode-router")
        sessions |= {**SESSION_VALUES, "watchNamespace": watch,
                     "ingressRouteNamespace": door_namespaces.get("INGRESSROUTE_NAMESPACE", ""),
                     "sidecarServiceAccounts": [{"name": SIDECAR, "namespace": watch}],
                     "sidecarIdentity": {"create": True}}
    implied = doors == {"sessions"} and profile.namespaces == (sessions.get("watchNamespace"),)
    values = {
        "frontDoors": {"chutes": {"enabled": "chutes" in doors}, "httproutes": {"enabled": "httproutes" in doors},
                       "sessions": sessions},
        "watchNamespaces": [] if implied else list(profile.namespaces),
        "peering": {"enabled": profile.peering, "name": profile.peering_name or ""},
        "ledgerNamespace": door_namespaces.get("CHUTES_LEDGER_NAMESPACE", ""),
    }
    return values, door_namespaces.get("OPERATOR_NAMESPACE", NAMESPACE)


# --- a scenario of its own: namespace-restricted, with peering ------------------------------------


def test_namespaced_operator_with_peering_publishes_and_removes_a_gateway(kube: Any, cloudflare: Any) -> None:
    world = World(kube, cloudflare)
    world.namespace(NS)
    kube.seed("kopf.dev/v1/kopfpeerings", {"metadata": {"name": "chutes", "namespace": NS}})
    settings = load_settings({}, cloudflare_base_url=cloudflare.base_url, httproutes=False, sessions=False,
                             namespaces=(NS,), peering="chutes", priority=10)
    world.operator = OperatorThread(settings, {}).start()
    try:
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
        world.stop()
        world.client.close()
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
    finally:
        world.close()
    made = {(c.verb, c.resource, c.subresource, c.namespace) for c in kube.api_calls(OPERATOR_TOKEN)}
    assert ("patch", "cloudflarezerotrusttemplates", "", httproutes.OPNS) in made
    assert ("patch", "cloudflarezerotrusttemplates", "status", httproutes.OPNS) in made


# --- the check ----------------------------------------------------------------------------------------


def _call_text(call: Any) -> str:
    if call.url is not None:
        return f"{call.verb} {call.url}"
    resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
    where = f"namespace {call.namespace}" if call.namespace else "cluster-wide"
    name = f" name={call.name}" if call.name else ""
    return f"{call.verb} {call.group or 'core'}/{resource} ({where}){name}"


Permission = tuple[str, str, str, str]  # verb, group, resource[/subresource], "ClusterRole" or "Role"


def _permissions(grant: Grant) -> set[Permission]:
    kind = "ClusterRole" if grant.namespace is None else "Role"
    return {(verb, group, resource, kind) for verb, group, resource in grant.permissions()}


def _used(grant: Grant, call: Any) -> Permission:
    resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
    return call.verb, call.group, resource, "ClusterRole" if grant.namespace is None else "Role"


def compare(record: ApiCallRecord) -> tuple[list[str], list[str]]:
    """The recorded calls the chart's RBAC denies, and the permissions it grants that no recorded call used."""
    denied: list[str] = []
    rendered: set[Permission] = set()
    used: set[Permission] = set()
    for profile, calls in sorted(record.calls.items(), key=lambda item: repr(item[0])):
        values, namespace = values_for(profile)
        docs = render(values, namespace=namespace)
        accounts = {"the chart's Deployment": grants(docs, SERVICE_ACCOUNT, namespace)}
        if profile.front_doors == ("sessions",) and not profile.peering:  # also what the sidecar mode grants
            watch = values["frontDoors"]["sessions"]["watchNamespace"]
            accounts["the session sidecar"] = grants(docs, SIDECAR, watch)
            accounts["the session sidecar's own identity"] = grants(docs, SIDECAR_IDENTITY, namespace)
        for account, granted in accounts.items():
            rendered.update(p for grant in granted for p in _permissions(grant))
            for call in sorted(calls, key=_call_text):
                allowed = allowing(granted, call)
                if not allowed:
                    denied.append(f"{_call_text(call)} for {account}: {list(profile.front_doors)} "
                                  f"namespaces={list(profile.namespaces)} peering={profile.peering} "
                                  f"(first in {record.first_seen[(profile, call)]})")
                used.update(_used(grant, call) for grant in allowed)
    unused = [f"{verb} {group or 'core'}/{resource} ({kind})" for verb, group, resource, kind in
              sorted(rendered - used)]
    return denied, unused


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


@pytest.mark.last
def test_the_chart_allows_every_call_the_operator_made_and_grants_nothing_else(
        operator_api_calls: ApiCallRecord, request: pytest.FixtureRequest) -> None:
    record, session = operator_api_calls, request.session
    assert not record.unattributed, (
        f"calls made with the operator's token by no in-process operator: {record.unattributed}; run the "
        "operator through chutes.runtime.run (OperatorThread) so its configuration is known")
    if not record.calls:
        pytest.skip("no operator test ran in this session (the scenario above checks the recording itself)")
    denied, unused = compare(record)
    UNUSED_FILE.parent.mkdir(exist_ok=True)
    UNUSED_FILE.write_text(json.dumps({"unused": unused, "complete": _whole_suite(session)}, indent=1) + "\n",
                           encoding="utf-8")
    print(f"\nRBAC: {sum(len(c) for c in record.calls.values())} distinct calls in {len(record.calls)} "
          f"configurations; {len(unused)} permissions never used (see {UNUSED_FILE.relative_to(REPO)})")
    for line in unused:
        print("  never used:", line)
    assert not denied, "the chart's RBAC does not allow:\n  " + "\n  ".join(denied)
    # Nothing beyond: every permission the chart grants was used by some recorded call. Only a session that
    # ran every test file unfiltered has recorded every call the operator needs.
    if _whole_suite(session):
        assert not unused, ("the chart grants permissions no operator call used (drop them, or add a test "
                            "making the call):\n  " + "\n  ".join(unused))


def _whole_suite(session: pytest.Session) -> bool:
    """Whether this session collected every test file, unfiltered (no -k, -m, --deselect, no single tests)."""
    option = session.config.option
    if getattr(option, "keyword", "") or getattr(option, "markexpr", "") or getattr(option, "deselect", None):
        return False
    if any("::" in str(arg) for arg in session.config.args):
        return False
    collected = {item.path.resolve() for item in session.items}
    return all(path.resolve() in collected for path in (REPO / "tests").glob("test_*.py"))
