"""The hardened cloudflared Deployment and its tunnel-token Secret, shared by the doors that run connectors
(ChuteGateway, Tunnel/ClusterTunnel): cloudflared runs with the tunnel token (the configuration is managed
remotely), or, for a locally configured tunnel (`Connector.config_map`), with ``--config`` from a ConfigMap and
its credentials file from the Secret; non-root, read-only, no capabilities, no service account token. Pure:
manifests only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

METRICS_PORT = 2000
TOKEN_KEY = "token"


@dataclass(frozen=True)
class Connector:
    """One cloudflared Deployment: its names, labels (`labels` on the objects, `pod_labels` on the pods,
    `selector` matching them) and what the pods run."""

    name: str
    namespace: str
    secret_name: str
    labels: Mapping[str, str]
    pod_labels: Mapping[str, str]
    selector: Mapping[str, str]
    image: str
    replicas: int
    resources: Mapping[str, Any] = field(default_factory=dict)
    extra_args: Sequence[str] = ()  # before ``run`` (e.g. ``--protocol quic``)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    affinity: Mapping[str, Any] | None = None
    ca_secret: str | None = None  # a Secret mounted read-only at `ca_dir` (origin CA certificates)
    ca_dir: str = "/etc/cloudflared/certs"
    # A locally configured tunnel: its ConfigMap (key `config_key`, mounted at `config_dir`), the Secret
    # `secret_name` holding its credentials file (mounted at `credentials_dir`), and the pod annotations (the
    # configuration's checksum: a change restarts cloudflared).
    config_map: str | None = None
    config_key: str = "config.yaml"
    config_dir: str = "/etc/cloudflared/config"
    credentials_dir: str = "/etc/cloudflared/creds"
    pod_annotations: Mapping[str, str] = field(default_factory=dict)


def secret_manifest(connector: Connector, tunnel_token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": connector.secret_name, "namespace": connector.namespace, "labels": dict(connector.labels)},
        "type": "Opaque",
        "stringData": {TOKEN_KEY: tunnel_token},
    }


def deployment_manifest(connector: Connector) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/ready", "port": METRICS_PORT}, "periodSeconds": 10, "failureThreshold": 3}
    local = connector.config_map is not None
    config = ("--config", f"{connector.config_dir}/{connector.config_key}") if local else ()
    container: dict[str, Any] = {
        "name": "cloudflared",
        "image": connector.image,
        "args": ["tunnel", "--no-autoupdate", "--metrics", f"0.0.0.0:{METRICS_PORT}", *connector.extra_args,
                 *config, "run"],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "initialDelaySeconds": 10},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if not local:
        container["env"] = [
            {"name": "TUNNEL_TOKEN", "valueFrom": {"secretKeyRef": {"name": connector.secret_name, "key": TOKEN_KEY}}}
        ]
    if connector.resources:
        container["resources"] = dict(connector.resources)
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # cloudflared never talks to the Kubernetes API
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if connector.node_selector:
        pod["nodeSelector"] = dict(connector.node_selector)
    if connector.tolerations:
        pod["tolerations"] = [dict(t) for t in connector.tolerations]
    if connector.affinity:
        pod["affinity"] = dict(connector.affinity)
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if connector.config_map is not None:
        mounts += [{"name": "config", "mountPath": connector.config_dir, "readOnly": True},
                   {"name": "creds", "mountPath": connector.credentials_dir, "readOnly": True}]
        volumes += [{"name": "config", "configMap": {"name": connector.config_map, "items": [
                        {"key": connector.config_key, "path": connector.config_key}], "defaultMode": 0o444}},
                    {"name": "creds", "secret": {"secretName": connector.secret_name, "defaultMode": 0o444}}]
    if connector.ca_secret:
        mounts.append({"name": "certs", "mountPath": connector.ca_dir, "readOnly": True})
        volumes.append({"name": "certs", "secret": {"secretName": connector.ca_secret}})
    if mounts:
        container["volumeMounts"] = mounts
        pod["volumes"] = volumes
    template: dict[str, Any] = {"labels": dict(connector.pod_labels)}
    if connector.pod_annotations:
        template["annotations"] = dict(connector.pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": connector.name, "namespace": connector.namespace, "labels": dict(connector.labels)},
        "spec": {
            "replicas": connector.replicas,
            "selector": {"matchLabels": dict(connector.selector)},
            "template": {"metadata": template, "spec": pod},
        },
    }
