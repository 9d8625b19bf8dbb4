"""The Helm chart, rendered and linted by real Helm (helm-python-sdk), for the main combinations of values:
every manifest validates against Kubernetes 1.31 (kubernetes-validate, strict) or its CRD's schema, the
operator accepts the settings the chart gives it, bad values are refused, and the chart's CRDs are the
repository's. Also the image: the Dockerfile's key lines and its pinned runtime dependencies."""

from __future__ import annotations

import re
import sys
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from chutes.settings import load_settings
from harness.chart import (
    CHART,
    COMBINATIONS,
    KUBE_VERSION,
    NAMESPACE,
    REPO,
    SESSION_VALUES,
    SESSIONS_ONLY,
    container_env,
    deployment,
    grants,
    notes,
    of_kind,
    rbac_summary,
    refuses,
    render,
    sidecar_snippet,
    validate,
)

# --- lint and validate every combination --------------------------------------------------------------


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_chart_lints_and_every_manifest_validates(values: dict[str, Any]) -> None:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}.0")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report["messages"]
    docs = render(values)
    for doc in docs:
        validate(doc)
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names)), "duplicate objects"


@pytest.mark.parametrize("values", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_the_operator_accepts_the_settings_the_chart_gives_it(values: dict[str, Any]) -> None:
    env = container_env(render(values))
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    settings = load_settings(plain)  # raises on any malformed CHUTES_* variable
    doors = values.get("frontDoors", {})
    assert settings.chutes is doors.get("chutes", {}).get("enabled", True)
    assert settings.httproutes is doors.get("httproutes", {}).get("enabled", False)
    assert settings.sessions is doors.get("sessions", {}).get("enabled", False)
    hosts = doors.get("hosts", {}).get("enabled", False)
    assert ("hosts" in settings.front_doors(plain)) is hosts
    if hosts:
        router = values.get("routerHosts", {})
        assert settings.router_hosts_address == router.get("serverAddress", "router.lan:50051")
        assert settings.default_ingress_ip == router.get("defaultIngressIP", "")
    assert settings.owner_id == values.get("ownerId", "default")
    assert settings.policy == values.get("policy", "sync")
    assert settings.dry_run is values.get("dryRun", False)
    assert settings.sweep_max_deletions == values.get("sweepMaxDeletions", 50)
    assert settings.max_reconciles == values.get("maxReconciles", 64)
    assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert settings.metrics_port == values.get("metrics", {}).get("port", 9090)
    assert settings.log_format == values.get("logFormat", "json")
    assert settings.cloudflared_images == tuple(values.get("cloudflaredImages", ["cloudflare/cloudflared"]))
    peering = values.get("peering", {}).get("enabled", True)
    assert settings.standalone is not peering
    if peering:
        assert (settings.peering, settings.priority) == ("rel-chutes-operator", "auto")
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


SESSIONS_ON = {"sessions": {"enabled": True, **SESSION_VALUES}}


@pytest.mark.parametrize(("values", "share"), [
    ({}, 1200),
    ({"replicas": 3}, 1200),  # only the active peer calls Cloudflare
    ({"replicas": 3, "frontDoors": SESSIONS_ON}, 400),  # every replica runs the session door
    ({"replicas": 2, "frontDoors": SESSIONS_ON, "cloudflare": {"otherProcesses": 2}}, 300),
    ({"cloudflare": {"otherProcesses": 3}}, 300),  # e.g. three session sidecars with the same token
    ({"cloudflare": {"rateLimit": 3, "otherProcesses": 9}}, 1),  # never 0
], ids=["defaults", "ha", "ha-sessions", "ha-sessions-sidecars", "sidecars", "tiny"])
def test_the_tokens_request_budget_is_divided_between_the_processes_using_it(values: dict[str, Any],
                                                                              share: int) -> None:
    env = container_env(render(values))
    settings = load_settings({k: v for k, v in env.items() if isinstance(v, str)})
    assert (settings.rate_limit, settings.rate_window) == (share, 300.0)


def test_defaults_watch_the_cluster_with_one_peering_replica_and_metrics() -> None:
    docs = render()
    spec = deployment(docs)["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "RollingUpdate"
    assert container["image"] == "ghcr.io/troubleshat/chutes-operator:0.1.0"
    assert "CHUTES_NAMESPACES" not in container_env(docs)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"probes": 8080, "metrics": 9090}
    [service] = of_kind(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    [peering] = of_kind(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "rel-chutes-operator"
    # The only Role: the ledger's, in the release namespace (claims and tunnel Leases).
    assert [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in of_kind(docs, "Role")] == [
        (NAMESPACE, "rel-chutes-operator")]
    assert of_kind(docs, "ServiceMonitor") == [] and of_kind(docs, "PodDisruptionBudget") == []
    [account] = of_kind(docs, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"] and pod["automountServiceAccountToken"] is True


def test_the_pod_is_hardened() -> None:
    pod = deployment(render())["spec"]["template"]["spec"]
    [container] = pod["containers"]
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["limits"]["memory"]
    assert [v["mountPath"] for v in container["volumeMounts"]] == ["/tmp"]  # the only writable path


def test_ha_runs_peering_replicas_with_distinct_priorities_and_a_disruption_budget() -> None:
    docs = render(COMBINATIONS["ha"])
    spec = deployment(docs)["spec"]
    env = container_env(docs)
    assert spec["replicas"] == 3
    assert (env["CHUTES_STANDALONE"], env["CHUTES_PRIORITY"]) == ("false", "auto")
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    [budget] = of_kind(docs, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    [monitor] = of_kind(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    # 'auto' gives each replica its own priority (kopf pauses every replica when two are equal).
    settings = load_settings({"CHUTES_PRIORITY": "auto"})
    priorities = {settings.peering_priority({"POD_ID": f"rel-chutes-operator-7d9f-{n}"}, started=1.8e9)
                  for n in "abcde"}  # even started at the same instant
    assert len(priorities) == 5


def test_without_peering_the_operator_is_standalone_and_never_overlaps() -> None:
    docs = render(COMBINATIONS["standalone"])
    spec = deployment(docs)["spec"]
    [container] = spec["template"]["spec"]["containers"]
    assert container_env(docs)["CHUTES_STANDALONE"] == "true"
    assert spec["strategy"] == {"type": "Recreate"}
    assert of_kind(docs, "ClusterKopfPeering") == [] and of_kind(docs, "Service") == []
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "probes"}  # no metrics port


def test_watched_namespaces_get_roles_and_the_release_namespace_joins_for_httproutes() -> None:
    docs = render(COMBINATIONS["namespaced-with-httproutes"])
    assert container_env(docs)["CHUTES_NAMESPACES"] == f"{NAMESPACE},team-a,team-b"
    assert sorted(p["metadata"]["namespace"] for p in of_kind(docs, "KopfPeering")) == [NAMESPACE, "team-a", "team-b"]
    roles = {r["metadata"]["namespace"] for r in of_kind(docs, "Role")}
    assert roles == {NAMESPACE, "team-a", "team-b", "default"}  # default: Events about ChuteConfigs
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in of_kind(docs, "RoleBinding")}
    assert bindings == {(ns, "rel-chutes-operator") for ns in roles}
    cluster_wide = [g for g in grants(docs, "rel-chutes-operator", NAMESPACE) if g.namespace is None]
    assert ("list", "", "secrets") not in {p for g in cluster_wide for p in g.permissions()}


def test_session_pods_alone_watch_their_namespace_and_the_sidecar_gets_its_own_role() -> None:
    docs = render(SESSIONS_ONLY)
    env = container_env(docs)
    assert env["CHUTES_NAMESPACES"] == "opencode-router"
    assert env["CF_API_TOKEN"] == {"secretKeyRef": {"name": "cloudflare", "key": "CF_API_TOKEN"}}
    assert env["CF_ZONE_ID"] == {"secretKeyRef": {"name": "cloudflare", "key": "CF_ZONE_ID"}}
    assert env["CF_TUNNEL_ID"] == {"secretKeyRef": {"name": "cloudflare", "key": "CF_TUNNEL_ID"}}
    assert (env["WATCH_NAMESPACE"], env["INGRESSROUTE_NAMESPACE"], env["HEALTH_PORT"]) == (
        "opencode-router", "opencode-router", "8081")
    sidecar = grants(docs, "opencode-router", "opencode-router")
    assert sidecar and {g.role.split("@")[0] for g in sidecar} == {
        "ClusterRole/rel-chutes-operator-sessions-sidecar", "Role/rel-chutes-operator-sessions-sidecar"}
    assert not [p for g in sidecar for p in g.permissions() if p[2] == "secrets"]


@pytest.mark.parametrize("name", ["all-doors-cluster-wide", "sessions-only"])
def test_session_pods_are_read_in_their_namespace_only_in_every_mode(name: str) -> None:
    docs = render(COMBINATIONS[name])
    pods = {(g.namespace, p[0]) for g in grants(docs, "rel-chutes-operator", NAMESPACE) for p in g.permissions()
            if p[2] == "pods"}
    assert pods == {("opencode-router", "list"), ("opencode-router", "watch")}


@pytest.mark.parametrize("name", ["all-doors-cluster-wide", "hosts-namespaced"])
def test_the_router_hosts_tls_secret_is_mounted_where_the_settings_read_it(name: str) -> None:
    docs = render(COMBINATIONS[name])
    [deployment] = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "router-hosts-tls"]
    secret = COMBINATIONS[name].get("routerHosts", {}).get("tlsSecret", {}).get("name", "router-hosts-mtls")
    assert volume["secret"] == {"secretName": secret, "defaultMode": 0o400}
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "router-hosts-tls"]
    assert mount == {"name": "router-hosts-tls", "mountPath": "/etc/router-hosts/tls", "readOnly": True}
    env = container_env(docs)
    assert {env[f"CHUTES_ROUTER_HOSTS_TLS_{k}"] for k in ("CA", "CERT", "KEY")} == {
        "/etc/router-hosts/tls/ca.crt", "/etc/router-hosts/tls/tls.crt", "/etc/router-hosts/tls/tls.key"}


def test_without_the_hosts_door_nothing_of_it_is_rendered() -> None:
    docs = render({})
    text = yaml.safe_dump_all(docs)
    assert "router-hosts" not in text and "CHUTES_ROUTER_HOSTS" not in text


def test_notes_name_the_front_doors_and_the_crd_upgrade_step() -> None:
    text = notes(COMBINATIONS["namespaced-with-httproutes"])
    assert "ChuteConfig/ChuteGateway HTTPRoutes" in text and "team-a" in text
    assert "kubectl apply --server-side -f" in text


# --- bad values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 2, "peering": {"enabled": False}}, "/peering/enabled"),
        ({"replicas": 0}, "/replicas"),
        ({"securityContext": {"readOnlyRootFilesystem": False, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
                              "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}},
         "/securityContext/readOnlyRootFilesystem"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "/securityContext/allowPrivilegeEscalation"),
        ({"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}},
         "/securityContext/capabilities"),
        ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser"),
        ({"ownerId": "Cluster_A"}, "/ownerId"),
        ({"resyncInterval": 0}, "/resyncInterval"),
        ({"policy": "delete-all"}, "/policy"),
        ({"sweepMaxDeletions": -1}, "/sweepMaxDeletions"),
        ({"maxReconciles": -1}, "/maxReconciles"),
        ({"dryRun": "yes"}, "/dryRun"),
        ({"logFormat": "xml"}, "/logFormat"),
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"watchNamespaces": ["Team-A"]}, "/watchNamespaces/0"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"frontDoors": {"chutes": {"enabled": False}, "tunnels": {"enabled": False}}}, "/frontDoors"),
        ({"frontDoors": {"sessions": {"enabled": True}}}, "/frontDoors/sessions"),
        ({"frontDoors": {"sessions": {"enabled": True, **SESSION_VALUES, "routerServiceUrl": "router:80"}}},
         "/frontDoors/sessions/routerServiceUrl"),
        ({"extraEnv": [{"name": "CHUTES_OWNER_ID", "value": "x"}]}, "/extraEnv/0/name"),
        ({"cloudflaredImages": []}, "/cloudflaredImages"),
        ({"cloudflaredImages": ["a/b,c/d"]}, "/cloudflaredImages/0"),
        ({"replica": 2}, "additional properties 'replica'"),
    ],
    ids=lambda v: str(v) if isinstance(v, str) else "",
)
def test_bad_values_are_refused_naming_the_value(values: dict[str, Any], complaint: str) -> None:
    refuses(values, complaint)


@pytest.mark.parametrize(
    ("values", "complaint"),
    [({"metrics": {"port": 8080}}, "metrics.port must differ from probes.port"),
     ({"frontDoors": {"sessions": {"enabled": True, **SESSION_VALUES, "healthPort": 9090}}},
      "healthPort must differ")],
    ids=["metrics-on-the-probe-port", "session-health-on-the-metrics-port"],
)
def test_colliding_ports_are_refused(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=complaint):
        render(values)


# --- CRDs ------------------------------------------------------------------------------------------


def test_the_charts_crds_are_the_repositorys_plus_kopf_peering() -> None:
    ours = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert set(shipped) == set(ours) | {"kopf-peerings.yaml"}, "run `make crds`"
    stale = [name for name in ours if shipped[name] != ours[name]]
    assert stale == [], f"charts/chutes-operator/crds differs from crds/ for {stale}: run `make crds`"
    for path in (CHART / "crds").glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)
    peering = (CHART / "crds" / "kopf-peerings.yaml").read_text()
    kinds = {doc["spec"]["names"]["kind"] for doc in yaml.safe_load_all(peering)}
    assert kinds == {"ClusterKopfPeering", "KopfPeering"}


# --- the image -------------------------------------------------------------------------------------


def test_dockerfile_is_slim_pinned_non_root_and_runs_chutes_with_the_liveness_endpoint() -> None:
    text = (REPO / "Dockerfile").read_text()
    [base] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-bookworm", base)
    assert match, f"pin an exact slim Python image, not {base}"
    assert (int(match[1]), int(match[2])) == sys.version_info[:2], "the image runs the Python the tests run"
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert "pip install --no-deps -r requirements-runtime.txt" in text and "pip install --no-deps ." in text
    assert "[test" not in text and "[dev" not in text  # runtime dependencies only
    [user] = re.findall(r"^USER (\S+)$", text, re.M)
    assert user == "10001:10001"
    assert 'ENTRYPOINT ["chutes", "run"]' in text
    assert "CHUTES_LIVENESS_ENDPOINT=http://0.0.0.0:8080/healthz" in text
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*" and "!operator/" in ignored  # nothing else enters the build context


def test_runtime_lock_pins_exactly_the_tested_runtime_dependencies() -> None:
    from runtime_lock import lock_text

    expected = lock_text()
    assert (REPO / "operator" / "requirements-runtime.txt").read_text() == expected, "run `make lock`"
    pinned = {line.split("==")[0] for line in expected.splitlines() if "==" in line}
    assert {"kopf", "cloudflare", "kubernetes-asyncio", "prometheus-client"} <= pinned
    assert not pinned & {"kmock", "pytest", "kubernetes", "helm-python-sdk", "mypy"}  # test tools stay out


# --- the README's session sidecar ----------------------------------------------------------------------


def test_the_readmes_sidecar_container_is_valid_and_configures_the_session_door_alone() -> None:
    from chutes.frontdoors.sessions.config import load_config

    [container] = sidecar_snippet()
    token = {"name": "sessions-sidecar-token",
             "secret": {"secretName": "chutes-chutes-operator-sessions-sidecar-token"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "opencode-router", "namespace": "opencode-router"},
           "spec": {"containers": [{"name": "router", "image": "opencode-router:1"}, container], "volumes": [token]}}
    assert "{name: sessions-sidecar-token, secret: {secretName:\nchutes-chutes-operator-sessions-sidecar-token}}" in (
        CHART / "README.md").read_text()  # the volume the README tells to add
    assert container["volumeMounts"] == [{"name": "sessions-sidecar-token", "readOnly": True,
                                          "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    from_secret = {e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert from_secret == {"CF_API_TOKEN", "CF_ZONE_ID", "CF_TUNNEL_ID"}
    tunnel_id = "00000000-0000-0000-0000-000000000000"
    environ = {**plain, "CF_API_TOKEN": "t", "CF_ZONE_ID": "0" * 32, "CF_TUNNEL_ID": tunnel_id,
               "WATCH_NAMESPACE": "opencode-router"}
    settings = load_settings(environ)
    assert settings.front_doors(environ) == ("sessions",) and settings.standalone
    assert settings.rate_limit == 1200 // 3  # its share of the token's limit: two router replicas and the operator
    assert not settings.liveness_endpoint  # no kopf liveness server competing for a port of the router's Pod
    config = load_config(environ)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"sessions-health": config.health_port, "metrics": settings.metrics_port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "sessions-health"}
    assert "readinessProbe" not in container
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_readmes_sidecar_rbac_command_renders_the_sidecar_identity_and_its_role_alone() -> None:
    values = {"frontDoors": {"sessions": {"sidecarIdentity": {"create": True}}}, "ledgerNamespace": NAMESPACE}
    readme = (CHART / "README.md").read_text()
    assert f"--set ledgerNamespace={NAMESPACE}" in readme  # the command renders these values
    assert "--set frontDoors.sessions.sidecarIdentity.create=true" in readme
    docs = render(values, namespace="opencode-router")
    assert not grants(docs, "opencode-router", "opencode-router")  # the router's own ServiceAccount: nothing
    [account] = [d for d in of_kind(docs, "ServiceAccount") if "sidecar" in d["metadata"]["name"]]
    [token] = [d for d in of_kind(docs, "Secret") if "sidecar" in d["metadata"]["name"]]
    name = account["metadata"]["name"]
    assert (token["type"], token["metadata"]["annotations"]) == (
        "kubernetes.io/service-account-token", {"kubernetes.io/service-account.name": name})
    assert account["metadata"]["namespace"] == token["metadata"]["namespace"] == "opencode-router"
    sidecar = grants(docs, name, "opencode-router")
    assert {(g.namespace, g.role.split("@")[0]) for g in sidecar} == {
        (None, "ClusterRole/rel-chutes-operator-sessions-sidecar"),
        ("opencode-router", "Role/rel-chutes-operator-sessions-sidecar"),
        (NAMESPACE, "Role/rel-chutes-operator-sessions-sidecar")}
    permissions = {(g.namespace, p) for g in sidecar for p in g.permissions()}
    assert ("opencode-router", ("watch", "", "pods")) in permissions
    assert ("opencode-router", ("create", "traefik.io", "ingressroutes")) in permissions
    assert (None, ("list", "", "namespaces")) in permissions
    assert not [p for _, p in permissions if p[2] == "secrets"]
    # The ledger: claims read, tunnel Leases taken, nothing else.
    assert {(ns, p) for ns, p in permissions if p[2] in ("configmaps", "leases")} == {
        (NAMESPACE, (verb, group, resource)) for verb, group, resource in
        [("get", "", "configmaps"), ("list", "", "configmaps"), ("get", "coordination.k8s.io", "leases"),
         ("create", "coordination.k8s.io", "leases"), ("update", "coordination.k8s.io", "leases")]}


def test_the_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(node: Any, prefix: str = "") -> list[str]:
        if isinstance(node, dict) and node:
            return [leaf for key, sub in node.items() for leaf in leaves(sub, f"{prefix}{key}.")]
        return [prefix.rstrip(".")]

    def documented(path: str) -> bool:
        parts = path.split(".")
        ancestors = [".".join(parts[:n]) for n in range(1, len(parts) + 1)]
        if any(f"| `{a}`" in readme or f", `{a}`" in readme for a in ancestors):  # the value or a whole object
            return True
        parent, _, last = path.rpartition(".")  # siblings after the first one: `a.b.c`, `d`, `e`
        return bool(parent) and f"`{parent}." in readme and f"`{last}`" in readme

    assert [path for path in leaves(values) if not documented(path)] == []


# The modes the chart README lists the rendered RBAC of (release "rel" in chute-system), in its order.
RBAC_MODES: dict[str, tuple[dict[str, Any], str, str]] = {
    "cluster-wide": ({}, NAMESPACE, "rel-chutes-operator"),
    "cluster-wide, every front door": (COMBINATIONS["all-doors-cluster-wide"], NAMESPACE, "rel-chutes-operator"),
    "namespaced (watchNamespaces: [team-a])": ({"watchNamespaces": ["team-a"]}, NAMESPACE, "rel-chutes-operator"),
    "router-hosts door alone (watchNamespaces: [home])": (COMBINATIONS["hosts-namespaced"], NAMESPACE,
                                                          "rel-chutes-operator"),
    "session door alone": (SESSIONS_ONLY, NAMESPACE, "rel-chutes-operator"),
    "session sidecar (sidecarIdentity, --namespace opencode-router)": (
        {"frontDoors": {"sessions": {"sidecarIdentity": {"create": True}}}, "ledgerNamespace": NAMESPACE},
        "opencode-router", "rel-chutes-operator-sessions-sidecar"),
}


def rbac_listing() -> str:
    """The chart README's per-mode RBAC listing, as rendered."""
    blocks = []
    for mode, (values, namespace, account) in RBAC_MODES.items():
        summary = rbac_summary(render(values, namespace=namespace), account, namespace)
        blocks.append(f"**{mode}**\n\n```text\n{summary}\n```")
    return "\n\n".join(blocks)


def test_the_readme_lists_the_rendered_rbac_of_every_mode() -> None:
    readme = (CHART / "README.md").read_text()
    listed = readme.split("<!-- rbac-listing: begin")[1].split("-->", 1)[1].split("<!-- rbac-listing: end -->")[0]
    assert listed.strip() == rbac_listing(), "update the chart README's RBAC listing to:\n" + rbac_listing()
