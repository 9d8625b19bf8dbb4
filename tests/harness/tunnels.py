"""The Tunnel / ClusterTunnel / TunnelBinding front door's world: adyanth-style manifests applied as a user would
(the API token Secret, Tunnels of either API generation, Services, TunnelBindings), and the outcome read from both
sides (Cloudflare state and request log; status, conditions, Events, the cloudflared Deployment)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from harness.waiting import wait_for
from harness.world import BaseWorld, CloudflareReads

GROUP = "networking.cfargotunnel.com"
NS = "apps"
OPERATOR_NS = "default"  # the operator's namespace in tests: ClusterTunnel Secrets and cloudflared, the ledger


class World(BaseWorld, CloudflareReads):
    """Both emulators, the operator (the tunnels door alone), and the user's view of them."""

    def __init__(self, kube: Any, cloudflare: Any) -> None:
        super().__init__(kube, cloudflare)
        self.apps = kubernetes.client.AppsV1Api(self.client)
        self.zone = cloudflare.zone_id("example.com")

    def start(self, **overrides: Any) -> None:
        """The operator with the tunnels door alone; `overrides`: more settings."""
        self.run_operator(chutes=False, httproutes=False, sessions=False, **overrides)

    @classmethod
    def opened(cls, kube: Any, cloudflare: Any, *, start: bool = False, **overrides: Any) -> Iterator[World]:
        opened = cls(kube, cloudflare)
        try:
            if start:
                opened.start(**overrides)
            yield opened
        finally:
            opened.close()

    # -- objects -------------------------------------------------------------------------------
    def api_secret(self, namespace: str = NS, name: str = "cloudflare-secrets", **data: str) -> None:
        self.namespace(namespace)
        self.core.create_namespaced_secret(namespace, {
            "metadata": {"name": name}, "stringData": data or {"CLOUDFLARE_API_TOKEN": self.cf.token}})

    def cloudflare(self, **extra: Any) -> dict[str, Any]:
        return {"domain": "example.com", "secret": "cloudflare-secrets", "accountId": self.account, **extra}

    def tunnel(self, name: str = "web", namespace: str = NS, version: str = "v1alpha2", *,
               cluster: bool = False, **spec: Any) -> dict[str, Any]:
        spec.setdefault("cloudflare", self.cloudflare())
        if "existingTunnel" not in spec:
            spec.setdefault("newTunnel", {"name": f"{name}-tunnel"})
        body = {"apiVersion": f"{GROUP}/{version}", "kind": "ClusterTunnel" if cluster else "Tunnel",
                "metadata": {"name": name}, "spec": spec}
        if cluster:
            return dict(self.custom.create_cluster_custom_object(GROUP, version, "clustertunnels", body))
        self.namespace(namespace)
        return dict(self.custom.create_namespaced_custom_object(GROUP, version, namespace, "tunnels", body))

    def get_tunnel(self, name: str = "web", namespace: str = NS, version: str = "v1alpha2", *,
                   cluster: bool = False) -> dict[str, Any]:
        if cluster:
            return dict(self.custom.get_cluster_custom_object(GROUP, version, "clustertunnels", name))
        return dict(self.custom.get_namespaced_custom_object(GROUP, version, namespace, "tunnels", name))

    def ready_tunnel(self, name: str = "web", namespace: str = NS, *, cluster: bool = False) -> dict[str, Any]:
        return wait_for(f"tunnel {name} Ready", lambda: (t := self.get_tunnel(name, namespace, cluster=cluster))
                        and self.condition(t).get("status") == "True" and t)

    def service(self, name: str, port: int = 80, namespace: str = NS, protocol: str = "TCP",
                ports: list[dict[str, Any]] | None = None) -> None:
        self.namespace(namespace)
        self.core.create_namespaced_service(namespace, {"metadata": {"name": name}, "spec": {
            "ports": [{"port": port, "protocol": protocol}] if ports is None else ports, "selector": {"app": name}}})

    def binding(self, name: str, subjects: list[dict[str, Any]], tunnel: str = "web", kind: str = "Tunnel",
                namespace: str = NS, annotations: dict[str, str] | None = None, **ref: Any) -> dict[str, Any]:
        self.namespace(namespace)
        body = {"apiVersion": f"{GROUP}/v1alpha1", "kind": "TunnelBinding",
                "metadata": {"name": name, "annotations": annotations or {}},
                "subjects": subjects, "tunnelRef": {"kind": kind, "name": tunnel, **ref}}
        return dict(self.custom.create_namespaced_custom_object(GROUP, "v1alpha1", namespace, "tunnelbindings", body))

    def get_binding(self, name: str, namespace: str = NS) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, "v1alpha1", namespace, "tunnelbindings",
                                                                 name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_binding(self, name: str, patch: dict[str, Any], namespace: str = NS) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, "v1alpha1", namespace, "tunnelbindings", name, patch)

    def ready_binding(self, name: str, namespace: str = NS, hostnames: str | None = None) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            found = self.get_binding(name, namespace)
            if found is None or self.condition(found).get("status") != "True":
                return None
            if hostnames is not None and found.get("status", {}).get("hostnames") != hostnames:
                return None
            return found
        return wait_for(f"binding {name} Ready", ready)

    def condition(self, obj: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
        return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})

    def wait_reason(self, reason: str, read: Any) -> dict[str, Any]:
        return wait_for(f"Ready reason {reason}", lambda: (o := read()) and self.condition(o).get("reason") == reason
                        and o)

    def deployment(self, name: str, namespace: str = NS) -> Any:
        return wait_for(f"Deployment {namespace}/{name}", lambda: self._read_deployment(name, namespace))

    def local_tunnel(self, name: str) -> str:
        """A tunnel made by hand in Cloudflare whose configuration is a local file (``config_src: local``)."""
        import httpx

        created = httpx.post(f"{self.cf.base_url}/accounts/{self.account}/cfd_tunnel", headers={
            "Authorization": f"Bearer {self.cf.token}"}, json={"name": name, "config_src": "local"})
        created.raise_for_status()
        return str(created.json()["result"]["id"])

    def config_yaml(self, name: str = "web", namespace: str = NS) -> str | None:
        """``config.yaml`` of a locally configured tunnel's ConfigMap (None: no ConfigMap)."""
        try:
            found = self.core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return str((found.data or {}).get("config.yaml"))

    def _read_deployment(self, name: str, namespace: str) -> Any:
        try:
            return self.apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise



@pytest.fixture(name="world")
def world_fixture(kube: Any, cloudflare: Any) -> Iterator[World]:
    """The tunnels world with the operator running (default settings)."""
    yield from World.opened(kube, cloudflare, start=True)
