"""The HTTPRoute front door's test world: both emulators, the operator in-process (OperatorThread), the
user's view through the sync `kubernetes` client and a sync Cloudflare SDK client, and readers of both
sides (Cloudflare state and request log; routes, state ConfigMaps, Secrets, Events)."""

from __future__ import annotations

import base64
import copy
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudflare as cf_sdk
import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from kubernetes_asyncio import client as async_client
from kubernetes_asyncio import config as async_config

from harness.waiting import wait_for, wait_quiet
from harness.world import BaseWorld

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "httproutes"
OPNS = "cloudflare-zero-trust"
GROUP, VERSION = "cfzt.cloudflare.com", "v1alpha1"
RG, RV = "gateway.networking.k8s.io", "v1"
P = "cfzt.cloudflare.com/"
EXAMPLE_POLICIES = ("MyIdentityPolicy", "MyServiceCredPolicy", "My ADAUTH Policy", "My Service Token Policy")


class World(BaseWorld):
    """Both emulators, the operator (the HTTPRoute door alone), a sync Cloudflare SDK client, and the tenant's
    tunnel (made here, or `tunnel`: one made already, shared with another world)."""

    def __init__(self, kube: Any, cloudflare: Any, tunnel: str | None = None) -> None:
        super().__init__(kube, cloudflare)
        self.sdk = cf_sdk.Cloudflare(api_token=cloudflare.token, base_url=cloudflare.base_url, max_retries=0)
        self.zone = cloudflare.zone_id("example.com")
        self.tunnel = tunnel or self.make_tunnel("home")

    # -- operator ----------------------------------------------------------------------------------
    def start(self, resync: float = 300.0, sweep: float = 600.0, *, name: str = "chutes-operator",
              **options: Any) -> None:
        """The operator with the HTTPRoute door only; `options`: more settings (allow_adoption, hostname_rules...)."""
        self.run_operator({"OPERATOR_NAMESPACE": OPNS}, name=name, chutes=False, sessions=False, httproutes=True,
                          resync_interval=resync, sweep_interval=sweep, **options)

    def stop(self) -> None:
        if self.operator is not None:
            self.quiesce()
        super().stop()

    def quiesce(self, quiet: float = 0.35, timeout: float = 3.0) -> None:
        """Wait until nothing is written to the cluster and nothing asked of Cloudflare for `quiet` seconds:
        stopping kopf while it handles an event of an object with timers makes it respawn them and wait 5 s
        for them at exit, and a resync pass still running when the operator stops fails its exit."""
        quiesce(self.core, quiet, timeout, self.cf)

    def close(self) -> None:
        super().close()
        self.sdk.close()

    # -- Kubernetes objects --------------------------------------------------------------------------
    def token_secret(self, token: str | None = None, name: str = "cf-token", key: str = "token",
                     namespace: str = OPNS) -> None:
        self.namespace(namespace)
        self.core.create_namespaced_secret(namespace, {"metadata": {"name": name},
                                                       "stringData": {key: token or self.cf.token}})

    def tenant(self, name: str = "home", namespace: str = OPNS, secret: str = "cf-token", **spec: Any) -> None:
        self.namespace(namespace)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CloudflareZeroTrustTenant",
                "metadata": {"name": name},
                "spec": {"accountId": self.account, "tunnelId": self.tunnel,
                         "credentialRef": {"name": secret, "key": "token"}, **spec}}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "cloudflarezerotrusttenants", body)

    def template(self, name: str, spec: dict[str, Any], namespace: str = OPNS) -> None:
        self.namespace(namespace)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CloudflareZeroTrustTemplate",
                "metadata": {"name": name}, "spec": spec}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "cloudflarezerotrusttemplates", body)

    def patch_template(self, name: str, spec: dict[str, Any], namespace: str = OPNS) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "cloudflarezerotrusttemplates", name,
                                                   {"spec": spec})

    def route(self, name: str, hostname: str | None = None, namespace: str = "apps", tenant: str = "home",
              backend: tuple[str, int] | None = ("web", 8080), other_annotations: dict[str, str] | None = None,
              **annotations: str) -> None:
        """An annotated HTTPRoute; `annotations` get the seed's prefix, `other_annotations` are taken as they are."""
        self.namespace(namespace)
        values = {"enabled": "true", "tenant": tenant, **({"hostname": hostname} if hostname else {}), **annotations}
        body: dict[str, Any] = {
            "apiVersion": f"{RG}/{RV}", "kind": "HTTPRoute",
            "metadata": {"name": name, "annotations": {**{P + k: v for k, v in values.items()},
                                                       **(other_annotations or {})}},
            "spec": {"parentRefs": [{"name": "default"}], "rules": [
                {"backendRefs": [{"name": backend[0], "port": backend[1]}]}] if backend else []},
        }
        self.custom.create_namespaced_custom_object(RG, RV, namespace, "httproutes", body)

    def annotate(self, name: str, namespace: str = "apps", **annotations: str | None) -> None:
        self.custom.patch_namespaced_custom_object(RG, RV, namespace, "httproutes", name, {
            "metadata": {"annotations": {P + k: v for k, v in annotations.items()}}})

    def delete_route(self, name: str, namespace: str = "apps") -> None:
        self.custom.delete_namespaced_custom_object(RG, RV, namespace, "httproutes", name)

    def get_route(self, name: str, namespace: str = "apps") -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(RG, RV, namespace, "httproutes", name))

    def route_exists(self, name: str, namespace: str = "apps") -> bool:
        try:
            self.get_route(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def annotations(self, name: str, namespace: str = "apps") -> dict[str, str]:
        return dict(self.get_route(name, namespace)["metadata"].get("annotations") or {})

    def ready(self, name: str, namespace: str = "apps") -> dict[str, Any]:
        """The route's Ready condition (empty when none)."""
        raw = self.annotations(name, namespace).get(P + "conditions") or "[]"
        return next((c for c in json.loads(raw) if c["type"] == "Ready"), {})

    def wait_ready(self, name: str, namespace: str = "apps", timeout: float = 30.0) -> dict[str, Any]:
        return wait_for(f"route {namespace}/{name} Ready", lambda: (r := self.ready(name, namespace))
                        .get("status") == "True" and r, timeout)

    def wait_reason(self, name: str, reason: str, namespace: str = "apps", timeout: float = 30.0) -> dict[str, Any]:
        return wait_for(f"route {namespace}/{name} reason {reason}", lambda: (r := self.ready(name, namespace))
                        .get("reason") == reason and r, timeout)

    def state(self, name: str, namespace: str = "apps") -> dict[str, str] | None:
        try:
            cm = self.core.read_namespaced_config_map(f"cfzt-{namespace}-{name}", OPNS)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cm.data or {})

    def claims(self, namespace: str = OPNS) -> dict[str, dict[str, Any]]:
        """The hostname claims of the ledger (in `namespace`): hostname -> source and the recorded entries."""
        found = self.core.list_namespaced_config_map(
            namespace, label_selector="chutes.troubleshat.com/claim-kind=hostname").items
        claims: dict[str, dict[str, Any]] = {}
        for item in found:
            data = dict(item.data or {})
            entries = {k: json.loads(v) for k, v in data.items() if k not in ("kind", "key", "source", "claimed_at")}
            claims[data["key"]] = {"source": data["source"], **entries}
        return claims

    def state_labels(self, name: str, namespace: str = "apps") -> dict[str, str]:
        return dict(self.core.read_namespaced_config_map(f"cfzt-{namespace}-{name}", OPNS).metadata.labels or {})

    def secret(self, name: str, namespace: str = "apps") -> dict[str, str] | None:
        try:
            found = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}

    def events(self, name: str, namespace: str = "apps") -> list[tuple[str, str, str]]:
        return super().events(name, namespace)

    def tenant_status(self, name: str = "home", namespace: str = OPNS) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "cloudflarezerotrusttenants", name)
        return dict(found.get("status") or {})

    def template_status(self, name: str, namespace: str = OPNS) -> dict[str, Any]:
        found = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "cloudflarezerotrusttemplates",
                                                         name)
        return dict(found.get("status") or {})

    def apply_examples(self) -> None:
        """examples/httproutes with the sandbox's token and tunnel (as a user edits them)."""
        for path in sorted(EXAMPLES.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    self.apply(self.localised(doc))

    def localised(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = copy.deepcopy(doc)
        if doc["kind"] == "Secret":
            doc["stringData"]["token"] = self.cf.token
        if doc["kind"] == "CloudflareZeroTrustTenant":
            doc["spec"]["tunnelId"] = self.tunnel
        return doc

    def apply(self, doc: dict[str, Any]) -> None:
        kind, meta = doc["kind"], doc["metadata"]
        if kind == "Namespace":
            self.namespace(meta["name"])
        elif kind == "Secret":
            self.core.create_namespaced_secret(meta["namespace"], doc)
        elif kind == "HTTPRoute":
            self.custom.create_namespaced_custom_object(RG, RV, meta["namespace"], "httproutes", doc)
        else:
            plural = {"CloudflareZeroTrustTenant": "cloudflarezerotrusttenants",
                      "CloudflareZeroTrustTemplate": "cloudflarezerotrusttemplates"}[kind]
            self.custom.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], plural, doc)

    # -- Cloudflare ------------------------------------------------------------------------------------
    def make_tunnel(self, name: str) -> str:
        created = self.sdk.zero_trust.tunnels.cloudflared.create(account_id=self.account, name=name,
                                                                 config_src="cloudflare")
        return str(created.id)

    def reusable_policy(self, name: str, decision: str = "allow") -> str:
        created = self.sdk.zero_trust.access.policies.create(account_id=self.account, name=name, decision=decision,
                                                            include=[{"everyone": {}}])
        assert created is not None
        return str(created.id)

    def snapshot(self) -> dict[str, Any]:
        return dict(self.cf.snapshot())

    def records(self, name: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.snapshot()["dns_records"].get(self.zone, []) if name is None or r["name"] == name]

    def ingress(self, tunnel_id: str | None = None) -> list[dict[str, Any]]:
        config = (self.snapshot()["tunnel_configs"].get(tunnel_id or self.tunnel) or {}).get("config") or {}
        return list(config.get("ingress", []))

    def rule(self, hostname: str, tunnel_id: str | None = None) -> dict[str, Any] | None:
        return next((r for r in self.ingress(tunnel_id) if r.get("hostname") == hostname), None)

    def apps(self, domain: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.snapshot()["access_apps"].values() if domain is None or a["domain"] == domain]

    def policies(self) -> list[dict[str, Any]]:
        return list(self.snapshot()["access_policies"].values())

    def tokens(self, name: str | None = None) -> list[dict[str, Any]]:
        return [t for t in self.snapshot()["service_tokens"].values() if name is None or t["name"] == name]

    def ops(self, *, writes: bool = False) -> list[str]:
        return [r.op for r in self.cf.requests if not writes or (r.method != "GET" and 200 <= r.status < 300)]


@pytest.fixture(name="world")
def world_fixture(kube: Any, cloudflare: Any) -> Iterator[World]:
    yield from World.opened(kube, cloudflare)


RESYNC_LOGGER = "chutes.frontdoors.httproutes.handlers"  # logs "Resync of tenant ..." as each pass ends


def resyncs_ended(caplog: pytest.LogCaptureFixture) -> int:
    """How many tenant resync passes (of tenants with routes) have ended so far in this test."""
    return sum(1 for r in caplog.records if r.name == RESYNC_LOGGER and r.getMessage().startswith("Resync of tenant"))


def wait_resyncs(caplog: pytest.LogCaptureFixture, passes: int = 1, timeout: float = 20.0) -> None:
    """Until `passes` whole resync passes have run after this call: one more than that must end, since the pass
    under way now began before it (a tenant's passes follow one another: kopf runs its timer's next call only
    once the last one returned)."""
    caplog.set_level(logging.INFO, logger=RESYNC_LOGGER)
    start = resyncs_ended(caplog)
    wait_for(f"{passes} whole resync passes", lambda: resyncs_ended(caplog) >= start + passes + 1, timeout)


def quiesce(core: kubernetes.client.CoreV1Api, quiet: float = 0.35, timeout: float = 3.0,
            cloudflare: Any = None) -> None:
    """Wait until nothing is written to the cluster (its resourceVersion stays) nor, given `cloudflare` (its
    emulator), asked of Cloudflare for `quiet` seconds, at most `timeout` seconds: the operator is idle."""
    wait_quiet("the operator", lambda: (core.list_namespace().metadata.resource_version,
                                        len(cloudflare.requests) if cloudflare is not None else 0),
               quiet, timeout, required=False)


def by_thread(kubeconfigs: dict[str, str]) -> Any:
    """`chutes.kube.load_configuration` for several in-process operators: each operator thread gets its own
    cluster (KUBECONFIG is process-wide), `kubeconfigs` by thread name."""

    async def load() -> async_client.Configuration:
        configuration = async_client.Configuration()
        path = kubeconfigs[threading.current_thread().name]
        await async_config.load_kube_config(config_file=path, client_configuration=configuration)
        return configuration

    return load


def home(world: World, *, resync: float = 300.0, sweep: float = 600.0, base: dict[str, Any] | None = None,
         **options: Any) -> None:
    """Token Secret, tenant "home" and its base template in the operator namespace; the operator running."""
    world.token_secret()
    world.tenant()
    if base is not None:
        world.template("base-home", base)
    world.start(resync=resync, sweep=sweep, **options)
