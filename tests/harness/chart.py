"""The Helm chart under test: rendering with real Helm (helm-python-sdk), the combinations of values the chart
tests render, validation of what it renders, and an RBAC authorizer that evaluates rendered Roles and
bindings the way kube-apiserver does, for the recorded operator calls."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from harness.manifests import SAFE_LOADER, to_jsonschema

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "chutes-operator"
RELEASE = "rel"
NAMESPACE = "chute-system"
KUBE_VERSION = "1.31"
SESSION_VALUES = {"domain": "example.org", "routerServiceUrl": "http://opencode-router.opencode-router.svc:80",
                  "credentials": {"secretName": "cloudflare"}}

# What every authenticated user may read (kube-apiserver's system:discovery and system:public-info-viewer).
DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/version", "/version/",
                  "/openapi", "/openapi/*")


def render(values: Mapping[str, Any] | None = None, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Every manifest the chart renders (NOTES.txt excluded), in template order."""
    chart = helm.Chart.load(str(CHART))
    try:
        out = chart.render(dict(values or {}), name=RELEASE, namespace=namespace, is_install=True)
    finally:
        chart.close()
    docs: list[dict[str, Any]] = []
    for path in sorted(out):
        if path.endswith(".txt"):
            continue
        docs.extend(doc for doc in yaml.load_all(out[path], Loader=SAFE_LOADER) if doc)
    return docs


def notes(values: Mapping[str, Any] | None = None) -> str:
    chart = helm.Chart.load(str(CHART))
    try:
        out = chart.render(dict(values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True)
    finally:
        chart.close()
    return next(text for path, text in out.items() if path.endswith("NOTES.txt"))


def refuses(values: dict[str, Any], complaint: str) -> None:
    """The chart's values schema refuses `values`, and its error names `complaint` (a JSON pointer or words)."""
    chart = helm.Chart.load(str(CHART))
    try:
        with pytest.raises(helm.HelmValuesError, match=re.escape(complaint)):
            chart.validate_schema(values)
    finally:
        chart.close()


def of_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def deployment(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    [found] = of_kind(docs, "Deployment")
    return found


def container_env(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The operator container's env: plain values as strings, references as their ``valueFrom``."""
    [container] = deployment(docs)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


# --- values, validation, the README's sidecar ---------------------------------------------------------


SESSIONS_ONLY = {"frontDoors": {"chutes": {"enabled": False}, "tunnels": {"enabled": False},
                                "sessions": {"enabled": True, **SESSION_VALUES,
                                             "sidecarServiceAccounts": [{"name": "opencode-router",
                                                                         "namespace": "opencode-router"}]}}}


COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced-with-httproutes": {"watchNamespaces": ["team-a", "team-b"],
                                   "frontDoors": {"httproutes": {"enabled": True}}},
    "ha": {"replicas": 3, "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "standalone": {"peering": {"enabled": False}, "metrics": {"port": 0}},
    "sessions-only": SESSIONS_ONLY,
    "hosts-namespaced": {"watchNamespaces": ["home"], "frontDoors": {"chutes": {"enabled": False},
                                                                     "tunnels": {"enabled": False},
                                                                     "hosts": {"enabled": True}}},
    "all-doors-cluster-wide": {"frontDoors": {"httproutes": {"enabled": True},
                                              "sessions": {"enabled": True, **SESSION_VALUES},
                                              "hosts": {"enabled": True}},
                               "routerHosts": {"serverAddress": "router.lan:50051", "defaultIngressIP": "192.168.1.80",
                                               "tlsSecret": {"name": "lan-mtls"}},
                               "image": {"digest": "sha256:" + "a" * 64}, "logFormat": "text", "logLevel": "DEBUG",
                               "ownerId": "cluster-b", "cloudflare": {"baseUrl": "http://cf.example:8787/client/v4"},
                               "policy": "upsert-only", "dryRun": True, "sweepMaxDeletions": 0, "maxReconciles": 0,
                               "cloudflaredImages": ["cloudflare/cloudflared", "registry.example.com/mirror/"],
                               "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]},
}


def crd_validators() -> dict[tuple[str, str], jsonschema.Draft202012Validator]:
    validators = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=SAFE_LOADER):
            for version in crd["spec"]["versions"]:
                schema = to_jsonschema(version["schema"]["openAPIV3Schema"])
                schema.setdefault("properties", {}).update(
                    apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"})
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                validators[key] = jsonschema.Draft202012Validator(schema)
    return validators


VALIDATORS = crd_validators()


def validate(doc: Mapping[str, Any]) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in VALIDATORS:
        errors = [e.message for e in VALIDATORS[key].iter_errors(doc)]
        assert not errors, f"{key}: {errors}"
    elif key == ("monitoring.coreos.com/v1", "ServiceMonitor"):  # the Prometheus operator's CRD is not vendored
        assert doc["spec"]["endpoints"] and doc["spec"]["selector"]["matchLabels"]
    else:
        kubernetes_validate.validate(dict(doc), KUBE_VERSION, strict=True)


def sidecar_snippet() -> list[dict[str, Any]]:
    text = (CHART / "README.md").read_text()
    block = text.split("<!-- sidecar-snippet: begin")[1].split("<!-- sidecar-snippet: end -->")[0]
    return list(yaml.safe_load(block.split("```yaml\n", 1)[1].split("```", 1)[0]))


# --- RBAC ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """One PolicyRule granted to the operator's ServiceAccount; ``namespace`` None means cluster-wide."""

    namespace: str | None
    role: str  # e.g. "ClusterRole/rel-chutes-operator"
    index: int  # the rule's position in its role
    rule: Mapping[str, Any] = field(compare=False)  # (role, namespace, index) identify the grant

    def permissions(self) -> list[tuple[str, str, str]]:
        """(verb, group, resource[/subresource]) triples this rule grants (non-resource rules excluded)."""
        return [(verb, group, resource) for verb in self.rule.get("verbs", ())
                for group in self.rule.get("apiGroups", ()) for resource in self.rule.get("resources", ())]

    def describe(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "cluster-wide"
        names = f" names={list(self.rule['resourceNames'])}" if self.rule.get("resourceNames") else ""
        rule = self.rule
        return (f"{self.role} rule {self.index} ({where}): verbs={list(rule.get('verbs', ()))} "
                f"groups={list(rule.get('apiGroups', ()))} resources={list(rule.get('resources', ()))}{names}")


def _subject_matches(subjects: Iterable[Mapping[str, Any]], name: str, namespace: str) -> bool:
    return any(s.get("kind") == "ServiceAccount" and s.get("name") == name and s.get("namespace") == namespace
               for s in subjects or ())


def grants(docs: Iterable[dict[str, Any]], service_account: str, namespace: str) -> list[Grant]:
    """The rules bound to one ServiceAccount by the rendered (Cluster)RoleBindings."""
    docs = list(docs)
    cluster_roles = {d["metadata"]["name"]: d.get("rules") or [] for d in of_kind(docs, "ClusterRole")}
    roles = {(d["metadata"]["namespace"], d["metadata"]["name"]): d.get("rules") or [] for d in of_kind(docs, "Role")}
    found: list[Grant] = []
    for binding in of_kind(docs, "ClusterRoleBinding"):
        if _subject_matches(binding.get("subjects"), service_account, namespace):
            name = binding["roleRef"]["name"]
            found += [Grant(None, f"ClusterRole/{name}", i, r) for i, r in enumerate(cluster_roles.get(name, []))]
    for binding in of_kind(docs, "RoleBinding"):
        if not _subject_matches(binding.get("subjects"), service_account, namespace):
            continue
        where, ref = binding["metadata"]["namespace"], binding["roleRef"]
        rules = cluster_roles.get(ref["name"], []) if ref["kind"] == "ClusterRole" else roles.get(
            (where, ref["name"]), [])
        found += [Grant(where, f"{ref['kind']}/{ref['name']}@{where}", i, r) for i, r in enumerate(rules)]
    return found


def _matches(value: str, allowed: Iterable[str]) -> bool:
    return any(a == "*" or a == value for a in allowed)


def _url_matches(url: str, allowed: Iterable[str]) -> bool:
    return any(a == "*" or a == url or (a.endswith("*") and url.startswith(a[:-1])) for a in allowed)


def rule_allows(rule: Mapping[str, Any], call: Any) -> bool:
    """kube-apiserver's RBAC rule matching (rbac/v1 PolicyRule) for one request."""
    if not _matches(call.verb, rule.get("verbs", ())):
        return False
    if call.url is not None:
        return _url_matches(call.url, rule.get("nonResourceURLs", ()))
    if "nonResourceURLs" in rule or not _matches(call.group, rule.get("apiGroups", ())):
        return False
    resource = f"{call.resource}/{call.subresource}" if call.subresource else call.resource
    resources = rule.get("resources", ())
    if not (_matches(resource, resources) or (call.subresource and f"*/{call.subresource}" in resources)):
        return False
    names = rule.get("resourceNames")
    return not names or (call.name is not None and call.name in names)


def allowing(granted: Iterable[Grant], call: Any) -> list[Grant]:
    """The grants that allow ``call`` (a namespaced grant covers requests inside its namespace only)."""
    if call.url is not None and _url_matches(call.url, DISCOVERY_URLS) and call.verb == "get":
        return [Grant(None, "ClusterRole/system:discovery", 0, {"nonResourceURLs": list(DISCOVERY_URLS)})]
    return [g for g in granted
            if (g.namespace is None or g.namespace == call.namespace) and rule_allows(g.rule, call)]


def rbac_summary(docs: Iterable[dict[str, Any]], service_account: str, namespace: str) -> str:
    """The rules bound to one ServiceAccount, one line each, as the chart README lists them per mode:
    ``<where> <verbs> <group>/<resources>[  names=...]`` (where: ``cluster`` or the Role's namespace)."""
    lines = []
    for grant in grants(docs, service_account, namespace):
        rule = grant.rule
        if "nonResourceURLs" in rule:
            continue
        group = ",".join(g or "core" for g in rule.get("apiGroups", ()))
        names = f"  names={','.join(rule['resourceNames'])}" if rule.get("resourceNames") else ""
        lines.append(f"{grant.namespace or 'cluster':<16}{','.join(rule.get('verbs', ())):<36}"
                     f"{group}/{','.join(rule.get('resources', ()))}{names}".rstrip())
    return "\n".join(sorted(set(lines), key=lambda line: (not line.startswith("cluster"), line)))
