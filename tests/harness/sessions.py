"""The session-Pod front door's world, for its tests and benchmark: a shared tunnel, the seed's environment,
session Pods, and the published state read back from both emulators; and the fixtures every session test
module uses (import them: ``from harness.sessions import api_fixture, fast_timing_fixture``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import cloudflare
import kubernetes
import pytest

from chutes.frontdoors.sessions import handlers
from chutes.frontdoors.sessions.scheduler import Timing
from chutes.sandbox.runner import OperatorThread
from chutes.settings import load_settings
from harness.processes import free_port
from harness.world import STOP_GRACE, user_client

ZONE = "example.net"  # a paid zone: room for hundreds of records (Free zones hold 200)
SUFFIX = "-oc"
NAMESPACE = "ns1"
ROUTER_URL = "http://opencode-router.ns1.svc.cluster.local:80"
MANAGED_BY = "opencode-cloudflare-operator"
HASH_LABEL = "opencode.ai/session-hash"
SELECTOR = {"app.kubernetes.io/managed-by": "opencode-router"}
T = TypeVar("T")


def sdk(cf: Any) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=cf.token, base_url=cf.base_url, max_retries=0)


def create_tunnel(cf: Any, foreign_rules: Iterable[dict[str, Any]] = (),
                  catch_all: dict[str, Any] | None = None) -> str:
    """A remotely-managed tunnel, optionally with a configuration written by someone else."""
    with sdk(cf) as client:
        tunnel = client.zero_trust.tunnels.cloudflared.create(
            account_id=cf.account_id, name="shared", config_src="cloudflare"
        )
        tunnel_id = str(tunnel.id)
        rules = list(foreign_rules)
        if rules or catch_all:
            client.zero_trust.tunnels.cloudflared.configurations.update(
                tunnel_id, account_id=cf.account_id,
                config={"ingress": [*rules, catch_all or {"service": "http_status:404"}]},  # type: ignore[arg-type]
            )
    return tunnel_id


def create_foreign_record(cf: Any, name: str, content: str = "192.0.2.7", type_: str = "A") -> None:
    with sdk(cf) as client:
        client.dns.records.create(zone_id=cf.zone_id(ZONE), name=name, type=type_,  # type: ignore[call-overload]
                                  content=content, ttl=1, comment="someone else's")


# Passes a few tenths of a second after the Pod events (the defaults wait seconds for bursts to settle).
FAST_TIMING = Timing(quiet=0.1, max_delay=0.5, removal_quiet=0.2, removal_max_delay=0.8, settle=0.4, jitter=0.3,
                     backoff=(0.2, 0.5, 1.0))


@pytest.fixture(name="fast_timing", autouse=True)
def fast_timing_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session door's short test timings, for every test of a module that imports this fixture."""
    monkeypatch.setattr(handlers, "DEFAULT_TIMING", FAST_TIMING)


def session_env(cf: Any, tunnel_id: str, health_port: int | None = None, **extra: str) -> dict[str, str]:
    """The seed's environment for the session door on the emulators (`health_port`: a free one unless given)."""
    return {
        "CF_API_TOKEN": cf.token,
        "CF_ZONE_ID": cf.zone_id(ZONE),
        "CF_TUNNEL_ID": tunnel_id,
        "DOMAIN": ZONE,
        "ROUTE_SUFFIX": SUFFIX,
        "ROUTER_SERVICE_URL": ROUTER_URL,
        "WATCH_NAMESPACE": NAMESPACE,
        "HEALTH_PORT": str(free_port() if health_port is None else health_port),
        **extra,
    }


@contextmanager
def operator(cf: Any, environ: dict[str, str], **overrides: Any) -> Iterator[OperatorThread]:
    """The whole operator (session door only) in a thread, standalone like the seed's sidecar."""
    settings = load_settings(
        {}, standalone=True, cloudflare_base_url=cf.base_url, chutes=False, httproutes=False, tunnels=False,
        sessions=True, **{"stop_grace": STOP_GRACE, **overrides},
    )
    with OperatorThread(settings, environ, timeout=30) as running:
        yield running


def kube_client(kube: Any) -> kubernetes.client.ApiClient:
    return user_client(kube.kubeconfig)


@pytest.fixture(name="api")
def api_fixture(kube: Any) -> Iterator[kubernetes.client.ApiClient]:
    """A Kubernetes client of the test's own on the emulator, closed after the test."""
    client = kube_client(kube)
    yield client
    client.close()  # type: ignore[no-untyped-call]


def pod(name: str, session_hash: str | None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    all_labels = dict(SELECTOR if labels is None else labels)
    if session_hash is not None:
        all_labels[HASH_LABEL] = session_hash
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"containers": [{"name": "opencode", "image": "opencode:latest"}]},
    }


def create_pod(api: kubernetes.client.ApiClient, body: dict[str, Any], namespace: str = NAMESPACE) -> None:
    kubernetes.client.CoreV1Api(api).create_namespaced_pod(namespace, cast(Any, body))


def delete_pod(api: kubernetes.client.ApiClient, name: str, namespace: str = NAMESPACE) -> None:
    kubernetes.client.CoreV1Api(api).delete_namespaced_pod(name, namespace)


def hostname(session_hash: str) -> str:
    return f"{session_hash}{SUFFIX}.{ZONE}"


@dataclass(frozen=True)
class Published:
    records: frozenset[str]  # names of CNAMEs carrying our marker
    duplicates: int  # records beyond one per name
    rules: frozenset[str]  # session hostnames with a tunnel rule
    ingress: tuple[dict[str, Any], ...]  # the whole ingress list
    routes: frozenset[str]  # IngressRoute names with the managed-by label

    def sessions(self) -> frozenset[str]:
        """Session hashes published in full: record, rule and both routes."""
        full = set()
        for name in self.records & self.rules:
            label = name.split(".")[0]
            session_hash = label[: -len(SUFFIX)]
            if {f"opencode-session-{label}-signin", f"opencode-session-{label}-app"} <= self.routes:
                full.add(session_hash)
        return frozenset(full)


def published(cf: Any, kube_api: kubernetes.client.ApiClient, tunnel_id: str) -> Published:
    state = cf.snapshot()
    zone_records = state["dns_records"][cf.zone_id(ZONE)]
    records = [r for r in zone_records if "chutes-operator owner=" in (r.get("comment") or "")]
    names = [r["name"] for r in records]
    config = (state["tunnel_configs"].get(tunnel_id) or {}).get("config") or {}
    ingress = tuple(config.get("ingress") or ())
    rules = frozenset(str(r["hostname"]) for r in ingress if str(r.get("hostname", "")).endswith(f"{SUFFIX}.{ZONE}"))
    response = kubernetes.client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        "traefik.io", "v1alpha1", NAMESPACE, "ingressroutes",
        label_selector=f"app.kubernetes.io/managed-by={MANAGED_BY}", _preload_content=False,
    )
    routes = frozenset(item["metadata"]["name"] for item in json.loads(cast(Any, response).data)["items"])
    return Published(frozenset(names), len(names) - len(set(names)), rules, ingress, routes)


def events_for(kube_api: kubernetes.client.ApiClient, pod_name: str, namespace: str = NAMESPACE) -> list[Any]:
    listing = kubernetes.client.CoreV1Api(kube_api).list_namespaced_event(namespace)
    return [e for e in listing.items if e.involved_object.name == pod_name]
