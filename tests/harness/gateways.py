"""The ChuteConfig / ChuteGateway front door's world: its objects applied as a user would (the API token Secret,
a ChuteConfig, Services, ChuteGateways), the Deployment controller played by hand, and the outcome read from
both sides (Cloudflare state and request log; status, conditions and Events)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from harness.waiting import wait_for
from harness.world import BaseWorld, CloudflareReads

GROUP, VERSION = "chutes.troubleshat.com", "v1alpha1"
NS = "team-a"
EMAILS = ["alice@example.org"]


class World(BaseWorld, CloudflareReads):
    """Both emulators, the operator (the ChuteGateway door alone), and the user's view of them."""

    def __init__(self, kube: Any, cloudflare: Any) -> None:
        super().__init__(kube, cloudflare)
        self.apps = kubernetes.client.AppsV1Api(self.client)
        self.zone = cloudflare.zone_id("example.com")

    # -- operator ------------------------------------------------------------------------------
    def start(self, **overrides: Any) -> None:
        """The operator with the ChuteGateway door alone; `overrides`: more settings (policy, dry_run...)."""
        self.run_operator(httproutes=False, sessions=False, **overrides)

    @classmethod
    def opened(cls, kube: Any, cloudflare: Any, *, start: bool = False, **overrides: Any) -> Iterator[World]:
        """A world for one test (the body of a fixture: ``yield from World.opened(...)``), with the operator
        started when `start` (settings `overrides`), stopped and closed after the test."""
        opened = cls(kube, cloudflare)
        try:
            if start:
                opened.start(**overrides)
            yield opened
        finally:
            opened.close()

    # -- objects -------------------------------------------------------------------------------
    def token_secret(self, token: str | None = None, key: str = "apiToken", name: str = "cf") -> None:
        self.namespace("chute-system")
        self.core.create_namespaced_secret("chute-system", {
            "metadata": {"name": name}, "stringData": {key: token or self.cf.token}})

    def config(self, name: str = "default", **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ChuteConfig", "metadata": {"name": name},
                "spec": {"apiTokenSecretRef": {"name": "cf", "namespace": "chute-system", "key": "apiToken"},
                         "accountId": self.account, "zoneId": self.zone, "domain": "example.com", **spec}}
        return dict(self.custom.create_cluster_custom_object(GROUP, VERSION, "chuteconfigs", body))

    def ready_config(self) -> dict[str, Any]:
        self.token_secret()
        self.config()
        return wait_for("ChuteConfig ready", lambda: (c := self.get_config("default")).get("status", {})
                        .get("ready") and c)

    def service(self, name: str = "web", namespace: str = NS) -> None:
        self.namespace(namespace)
        self.core.create_namespaced_service(namespace, {
            "metadata": {"name": name}, "spec": {"ports": [{"port": 8080}], "selector": {"app": name}}})

    def gateway(self, name: str = "blog", namespace: str = NS, **spec: Any) -> dict[str, Any]:
        self.namespace(namespace)
        base: dict[str, Any] = {"configRef": "default", "hostname": name, "service": {"name": "web", "port": 8080},
                                "access": {"allowedEmails": EMAILS, "sessionDuration": "12h"}, "replicas": 2}
        base.update(spec)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ChuteGateway", "metadata": {"name": name},
                "spec": base}
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "chutegateways", body))

    def patch_gateway(self, name: str, spec: dict[str, Any], namespace: str = NS) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "chutegateways", name, {"spec": spec})

    def get_gateway(self, name: str = "blog", namespace: str = NS) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "chutegateways", name))

    def get_config(self, name: str = "default") -> dict[str, Any]:
        return dict(self.custom.get_cluster_custom_object(GROUP, VERSION, "chuteconfigs", name))

    def condition(self, obj: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
        return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})

    def connectors_up(self, name: str = "blog", namespace: str = NS) -> None:
        """Play the Deployment controller: cloudflared replicas become available."""
        deployment = wait_for("cloudflared Deployment", lambda: self.apps.read_namespaced_deployment(
            f"chute-{name}-cloudflared", namespace))
        replicas = deployment.spec.replicas
        self.apps.patch_namespaced_deployment_status(f"chute-{name}-cloudflared", namespace, {
            "status": {"replicas": replicas, "availableReplicas": replicas, "readyReplicas": replicas}})

    def ready_gateway(self, name: str = "blog", namespace: str = NS) -> dict[str, Any]:
        self.connectors_up(name, namespace)
        return wait_for(f"gateway {name} Ready", lambda: (g := self.get_gateway(name, namespace))
                        .get("status", {}).get("ready") and g)

    def wait_reason(self, reason: str, name: str = "blog", namespace: str = NS, type_: str = "Ready") -> dict[str, Any]:
        return wait_for(f"{type_} reason {reason}", lambda: (g := self.get_gateway(name, namespace))
                        and self.condition(g, type_).get("reason") == reason and g)

    def events(self, name: str, namespace: str = NS) -> list[tuple[str, str, str]]:
        return super().events(name, namespace)



@pytest.fixture(name="world")
def world_fixture(kube: Any, cloudflare: Any) -> Iterator[World]:
    """The gateway world with the operator running (default settings)."""
    yield from World.opened(kube, cloudflare, start=True)
