"""The router-hosts front door's world: the Kubernetes emulator, the router-hosts emulator (real mutual TLS), the
operator with the hosts door alone, HostMappings and Traefik routes applied as a user would, and the outcome
read from both sides (the server's entries and request log; status, annotations, finalizers and Events)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from harness.waiting import wait_for
from harness.world import BaseWorld

GROUP, VERSION, PLURAL = "router-hosts.fzymgc.house", "v1alpha1", "hostmappings"
TRAEFIK = ("traefik.io", "v1alpha1")
PLURALS = {"IngressRoute": "ingressroutes", "IngressRouteTCP": "ingressroutetcps"}
NS = "home"
INGRESS_IP = "192.168.1.80"
HOST_IDS = "router-hosts.fzymgc.house/host-ids"
FINALIZER = "router-hosts.fzymgc.house/host-cleanup"
ROUTE_FINALIZER = "router-hosts.fzymgc.house/ingressroute-cleanup"
ROUTE_TAGS = ("kubernetes", "traefik", "ingress")
WRITES = ("AddHost", "UpdateHost", "DeleteHost")


class HostsWorld(BaseWorld):
    def __init__(self, kube: Any, routerhosts: Any) -> None:
        super().__init__(kube, None)
        self.rh = routerhosts

    # -- the operator ----------------------------------------------------------------------------------
    def start(self, **overrides: Any) -> None:
        """The operator with the router-hosts door alone, on the emulator; `overrides`: more settings."""
        settings: dict[str, Any] = {
            "chutes": False, "httproutes": False, "sessions": False,
            "router_hosts_address": self.rh.address, "router_hosts_tls_ca": self.rh.ca,
            "router_hosts_tls_cert": self.rh.cert, "router_hosts_tls_key": self.rh.key,
            "default_ingress_ip": INGRESS_IP, **overrides}
        self.run_operator(**settings)

    # -- HostMappings ----------------------------------------------------------------------------------
    def mapping(self, name: str = "nas", namespace: str = NS, *, meta: dict[str, Any] | None = None,
                status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
        self.namespace(namespace)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HostMapping",
                "metadata": {"name": name, **(meta or {})},
                "spec": {"hostname": f"{name}.lan", "ip": "192.168.1.10", **spec}}
        made = dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body))
        if status is not None:
            made = dict(self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name,
                                                                          {"status": status}))
        return made

    def get_mapping(self, name: str = "nas", namespace: str = NS) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))

    def patch_mapping(self, body: dict[str, Any], name: str = "nas", namespace: str = NS) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)

    def replace_spec(self, spec: dict[str, Any], name: str = "nas", namespace: str = NS) -> None:
        """Replace the whole spec (a field left out is removed, as `kubectl apply` does)."""
        for _attempt in range(5):  # the operator writes the object too (finalizer): a stale replace gets a 409
            current = self.get_mapping(name, namespace)
            current["spec"] = spec
            try:
                self.custom.replace_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, current)
                return
            except kubernetes.client.exceptions.ApiException as exc:
                if exc.status != 409:
                    raise
        raise AssertionError(f"HostMapping {namespace}/{name} kept changing: its spec could not be replaced")

    def delete_mapping(self, name: str = "nas", namespace: str = NS) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def mapping_exists(self, name: str = "nas", namespace: str = NS) -> bool:
        return bool(self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                              field_selector=f"metadata.name={name}")["items"])

    def synced(self, name: str = "nas", namespace: str = NS, reason: str | None = None,
               phase: str = "Synced") -> dict[str, Any]:
        """Wait for the HostMapping's phase (and Synced reason) for its current generation."""
        def probe() -> dict[str, Any] | None:
            body = self.get_mapping(name, namespace)
            status = body.get("status") or {}
            synced = self.condition(body, "Synced")
            if status.get("phase") != phase or status.get("observedGeneration") != body["metadata"]["generation"]:
                return None
            return body if reason is None or synced.get("reason") == reason else None
        return wait_for(f"HostMapping {namespace}/{name} {phase} {reason or ''}", probe)

    @staticmethod
    def condition(body: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
        return next((c for c in (body.get("status") or {}).get("conditions", []) if c["type"] == type_), {})

    # -- Traefik routes ----------------------------------------------------------------------------------
    def route(self, name: str = "web", *matches: str, namespace: str = NS, kind: str = "IngressRoute",
              **meta: Any) -> dict[str, Any]:
        self.namespace(namespace)
        body = {"apiVersion": "traefik.io/v1alpha1", "kind": kind, "metadata": {"name": name, **meta},
                "spec": {"routes": [{"match": m, "kind": "Rule", "services": [{"name": "web", "port": 80}]}
                                    for m in matches]}}
        return dict(self.custom.create_namespaced_custom_object(*TRAEFIK, namespace, PLURALS[kind], body))

    def get_route(self, name: str = "web", namespace: str = NS, kind: str = "IngressRoute") -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(*TRAEFIK, namespace, PLURALS[kind], name))

    def set_matches(self, name: str, *matches: str, namespace: str = NS, kind: str = "IngressRoute") -> None:
        """Replace the route's matches as `kubectl apply` would: a patch of the spec alone (the operator writes the
        host-ids annotation meanwhile; a whole-object replace would race it and get a 409)."""
        routes = [{"match": m, "kind": "Rule", "services": [{"name": "web", "port": 80}]} for m in matches]
        self.custom.patch_namespaced_custom_object(*TRAEFIK, namespace, PLURALS[kind], name,
                                                   {"spec": {"routes": routes}})

    def patch_route(self, name: str, body: dict[str, Any], namespace: str = NS, kind: str = "IngressRoute") -> None:
        self.custom.patch_namespaced_custom_object(*TRAEFIK, namespace, PLURALS[kind], name, body)

    def delete_route(self, name: str = "web", namespace: str = NS, kind: str = "IngressRoute") -> None:
        self.custom.delete_namespaced_custom_object(*TRAEFIK, namespace, PLURALS[kind], name)

    def route_exists(self, name: str = "web", namespace: str = NS, kind: str = "IngressRoute") -> bool:
        items = self.custom.list_namespaced_custom_object(*TRAEFIK, namespace, PLURALS[kind])["items"]
        return any(item["metadata"]["name"] == name for item in items)

    def host_ids(self, name: str = "web", namespace: str = NS, kind: str = "IngressRoute") -> str | None:
        annotations = self.get_route(name, namespace, kind)["metadata"].get("annotations") or {}
        value = annotations.get(HOST_IDS)
        return str(value) if value is not None else None

    # -- the router-hosts server ---------------------------------------------------------------------------
    def entries(self, comment: str | None = None, hostname: str | None = None) -> list[Any]:
        return [e for e in self.rh.entries() if (comment is None or e.comment == comment)
                and (hostname is None or e.hostname == hostname)]

    def hostnames(self, comment: str) -> list[str]:
        return sorted(e.hostname for e in self.entries(comment))

    def wait_hostnames(self, comment: str, names: list[str]) -> list[Any]:
        wait_for(f"entries {names} for {comment}", lambda: self.hostnames(comment) == sorted(names))
        return self.entries(comment)

    def writes(self) -> list[str]:
        return [r.rpc for r in self.rh.requests if r.rpc in WRITES]

    def events(self, name: str, namespace: str = NS) -> list[tuple[str, str, str]]:
        return super().events(name, namespace)

    def wait_event(self, name: str, reason: str, namespace: str = NS) -> tuple[str, str, str]:
        return wait_for(f"Event {reason} on {name}", lambda: next(
            (e for e in self.events(name, namespace) if e[1] == reason), None))


def opened(kube: Any, routerhosts: Any, **settings: Any) -> Iterator[HostsWorld]:
    """A started hosts world for one test (the body of a fixture)."""
    world = HostsWorld(kube, routerhosts)
    try:
        world.start(**settings)
        yield world
    finally:
        world.close()


running = contextlib.contextmanager(opened)  # `with running(kube, routerhosts, policy=...) as world:`


@pytest.fixture(name="hosts")
def hosts_fixture(kube: Any, routerhosts: Any) -> Iterator[HostsWorld]:
    """The hosts world with the operator running (default settings but a 2 s resync)."""
    yield from opened(kube, routerhosts, resync_interval=2.0)
