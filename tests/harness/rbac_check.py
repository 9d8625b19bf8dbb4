"""The chart's RBAC against the operator's recorded calls (:mod:`harness.rbac_record`): every call must be
allowed by the rules the chart renders for the configuration the operator ran with (front doors, watched
namespaces, peering), and, once the whole suite ran, every permission the chart grants must have been used
by some call. Run by ``tests/test_chart_rbac.py`` (marked ``last``) in a serial session, and by the
pytest-xdist controller over every worker's record (see :mod:`harness.rbac_record`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness.chart import NAMESPACE, RELEASE, REPO, SESSION_VALUES, Grant, allowing, grants, render
from harness.rbac_record import ApiCallRecord, OperatorProfile

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
                       "sessions": sessions, "hosts": {"enabled": "hosts" in doors},
                       "tunnels": {"enabled": "tunnels" in doors, "clusterResourceNamespace": door_namespaces.get(
                           "CHUTES_CLUSTER_RESOURCE_NAMESPACE", "")}},
        "watchNamespaces": [] if implied else list(profile.namespaces),
        "peering": {"enabled": profile.peering, "name": profile.peering_name or ""},
        "ledgerNamespace": door_namespaces.get("CHUTES_LEDGER_NAMESPACE", ""),
    }
    return values, door_namespaces.get("OPERATOR_NAMESPACE", NAMESPACE)


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


@dataclass(frozen=True)
class Verdict:
    """What the check found in a record: the calls the chart denies, the permissions no call used (a failure
    only when `complete`: the record holds the calls of the whole suite), and calls made by no known operator."""

    denied: list[str]
    unused: list[str]
    complete: bool
    unattributed: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    configurations: int = 0

    def failures(self) -> list[str]:
        """Why the run must fail (none: the chart's RBAC is exactly what the operator was seen to need)."""
        found = []
        if self.unattributed:
            found.append(f"calls made with the operator's token by no in-process operator: {self.unattributed}; run "
                         "the operator through chutes.runtime.run (OperatorThread) so its configuration is known")
        if self.denied:
            found.append("the chart's RBAC does not allow:\n  " + "\n  ".join(self.denied))
        if self.complete and self.unused:
            found.append("the chart grants permissions no operator call used (drop them, or add a test making the "
                         "call):\n  " + "\n  ".join(self.unused))
        return found

    def summary(self) -> str:
        return (f"RBAC: {self.calls} distinct calls in {self.configurations} configurations; {len(self.unused)} "
                f"permissions never used (see {UNUSED_FILE.relative_to(REPO)})")


def check(record: ApiCallRecord, *, complete: bool) -> Verdict:
    """Compare `record` with the chart."""
    denied, unused = compare(record) if record.calls else ([], [])
    return Verdict(denied, unused, complete, dict(record.unattributed),
                   sum(len(c) for c in record.calls.values()), len(record.calls))


def write_unused(verdict: Verdict) -> None:
    """List the permissions no call used in build/rbac-unused.json."""
    UNUSED_FILE.parent.mkdir(exist_ok=True)
    UNUSED_FILE.write_text(json.dumps({"unused": verdict.unused, "complete": verdict.complete}, indent=1) + "\n",
                           encoding="utf-8")
