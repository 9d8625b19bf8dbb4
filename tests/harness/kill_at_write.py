"""A kill at every write (issue 16 §2), for the ChuteGateway door: one lifecycle (a ChuteConfig; a protected
ChuteGateway published; its hostname changed; the gateway deleted) on fresh emulators, with the operator (`chutes
run`, a process of its own) killed with SIGKILL right after the k-th Cloudflare write has been applied (the
emulator's response hook: the write is in its state, the answer never reaches the operator) and restarted at
once. See :func:`run_once` for what is checked; used by ``bench/kill_at_every_write.py`` (every k) and
``tests/test_kill_at_write.py`` (a few)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudflare
import kubernetes

from chutes.sandbox.cloudflare import SandboxConfig, SandboxThread
from chutes.sandbox.kubernetes import KubeSandbox
from harness.processes import run_env
from harness.protection import WRITE_METHODS, ProtectionWatch
from harness.replicas import Replica

GROUP, VERSION, NS = "chutes.troubleshat.com", "v1alpha1", "team-a"
PROTECTED = ("blog.example.com", "news.example.com")
PHASE_TIMEOUT = 90.0


@dataclass
class Run:
    kill_at: int | None  # the 1-based write after which the operator is killed (None: never)
    writes: list[str] = field(default_factory=list)  # the writes the emulator answered, in order
    unprotected: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    kills: int = 0
    end: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def names(cf: Any) -> dict[str, Any]:
    """Cloudflare as names (ids differ between runs): tunnels (not deleted), apps, records, rules."""
    state = cf.snapshot()
    tunnels = sorted(t["name"] for t in state["tunnels"].values() if not t.get("deleted_at"))
    apps = sorted((a["name"], a.get("domain")) for a in state["access_apps"].values())
    records = sorted((r["name"], r["type"]) for zone in state["dns_records"].values() for r in zone)
    rules = sorted(str(rule.get("hostname")) for config in state["tunnel_configs"].values()
                   for rule in ((config or {}).get("config") or {}).get("ingress", []) if rule.get("hostname"))
    return {"tunnels": tunnels, "apps": apps, "records": records, "rules": rules}


def duplicates(view: dict[str, Any]) -> list[str]:
    found = []
    for kind in ("tunnels", "apps", "records", "rules"):
        counts = Counter(view[kind])
        found += [f"{kind}: {item} x{n}" for item, n in counts.items() if n > 1]
    return found


@dataclass
class World:
    """What a lifecycle acts on: the clients, the Cloudflare emulator, and the run's wait (it restarts a killed
    operator, plays the Deployment controller and checks for duplicates at the end of each phase)."""

    core: Any
    custom: Any
    cf: Any
    wait: Callable[[str, Callable[[], bool]], bool]

    def published(self, hostname: str, ready: bool, gone: str = "") -> bool:
        """`ready` (the source says so), `hostname`'s CNAME and rule in place, and nothing left of `gone`."""
        view = names(self.cf)
        return (ready and (hostname, "CNAME") in view["records"] and hostname in view["rules"]
                and (not gone or (gone not in view["rules"] and all(n != gone for n, _ in view["records"])
                                  and all(d != gone for _, d in view["apps"]))))


Lifecycle = Callable[[World], bool]  # runs every phase; False once one did not converge


def _gateway(world: World) -> dict[str, Any]:
    try:
        return dict(world.custom.get_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog"))
    except kubernetes.client.exceptions.ApiException:
        return {}


def gateway_lifecycle(world: World) -> bool:
    """A ChuteConfig; a protected ChuteGateway published; its hostname changed; the gateway deleted."""
    custom, cf = world.custom, world.cf
    world.core.create_namespaced_secret("chute-system", {"metadata": {"name": "cf"},
                                                         "stringData": {"apiToken": cf.token}})
    world.core.create_namespaced_service(NS, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})
    custom.create_cluster_custom_object(GROUP, VERSION, "chuteconfigs", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChuteConfig", "metadata": {"name": "default"},
        "spec": {"apiTokenSecretRef": {"name": "cf", "namespace": "chute-system"}, "accountId": cf.account_id,
                 "zoneId": cf.zone_id("example.com"), "domain": "example.com"}})
    if not world.wait("config ready", lambda: bool(custom.get_cluster_custom_object(
            GROUP, VERSION, "chuteconfigs", "default").get("status", {}).get("ready"))):
        return False
    start = names(cf)

    def published(hostname: str, gone: str = "") -> bool:
        status = _gateway(world).get("status") or {}
        return world.published(hostname, bool(status.get("ready") and status.get("hostname") == hostname), gone)

    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ChuteGateway", "metadata": {"name": "blog"},
        "spec": {"configRef": "default", "hostname": "blog", "service": {"name": "web", "port": 80},
                 "access": {"allowedEmails": ["a@example.org"]}, "replicas": 1}})
    if not world.wait("published", lambda: published("blog.example.com")):
        return False
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog", {"spec": {"hostname": "news"}})
    if not world.wait("hostname changed", lambda: published("news.example.com", gone="blog.example.com")):
        return False
    custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog")
    return world.wait("deleted", lambda: not _gateway(world) and names(cf) == start)  # no orphan


ROUTES = ("gateway.networking.k8s.io", "v1", NS, "httproutes")
CFZT = "cfzt.cloudflare.com/"
OPNS = "cloudflare-zero-trust"


def _route(world: World) -> dict[str, Any]:
    try:
        return dict(world.custom.get_namespaced_custom_object(*ROUTES, "web"))
    except kubernetes.client.exceptions.ApiException:
        return {}


def route_lifecycle(world: World) -> bool:
    """A tenant on a shared tunnel; an annotated HTTPRoute behind Access published; its hostname changed; the route
    deleted."""
    custom, cf = world.custom, world.cf
    sdk = cloudflare.Cloudflare(api_token=cf.token, base_url=cf.base_url, max_retries=0)
    try:
        tunnel = sdk.zero_trust.tunnels.cloudflared.create(account_id=cf.account_id, name="home",
                                                          config_src="cloudflare").id
    finally:
        sdk.close()
    world.core.create_namespaced_secret(OPNS, {"metadata": {"name": "cf-token"}, "stringData": {"token": cf.token}})
    custom.create_namespaced_custom_object("cfzt.cloudflare.com", "v1alpha1", OPNS, "cloudflarezerotrusttenants", {
        "apiVersion": "cfzt.cloudflare.com/v1alpha1", "kind": "CloudflareZeroTrustTenant",
        "metadata": {"name": "home"},
        "spec": {"accountId": cf.account_id, "tunnelId": tunnel,
                 "credentialRef": {"name": "cf-token", "key": "token"}}})
    start = names(cf)

    def published(hostname: str, gone: str = "") -> bool:
        meta = _route(world).get("metadata") or {}
        conditions = json.loads((meta.get("annotations") or {}).get(CFZT + "conditions") or "[]")
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" and hostname in str(c.get("message"))
                    for c in conditions)
        return world.published(hostname, ready, gone)

    annotations = {CFZT + "enabled": "true", CFZT + "tenant": "home", CFZT + "hostname": "blog.example.com",
                   CFZT + "access.enabled": "true", CFZT + "access.allowEmails": "a@example.org"}
    custom.create_namespaced_custom_object(*ROUTES, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "annotations": annotations},
        "spec": {"rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}})
    if not world.wait("published", lambda: published("blog.example.com")):
        return False
    custom.patch_namespaced_custom_object(*ROUTES, "web", {"metadata": {"annotations": {
        CFZT + "hostname": "news.example.com"}}})
    if not world.wait("hostname changed", lambda: published("news.example.com", gone="blog.example.com")):
        return False
    custom.delete_namespaced_custom_object(*ROUTES, "web")
    return world.wait("deleted", lambda: not _route(world) and names(cf) == start
                      and not world.core.list_namespaced_config_map(OPNS, label_selector=(
                          "app.kubernetes.io/managed-by=cfzt-operator")).items)  # no orphan, no state left


LIFECYCLES: dict[str, tuple[Lifecycle, tuple[str, ...], dict[str, str]]] = {
    # name -> (lifecycle, `chutes run` flags, environment)
    "gateway": (gateway_lifecycle, ("--no-httproutes", "--no-tunnels"), {}),
    "httproute": (route_lifecycle, ("--no-chutes", "--no-tunnels"), {"OPERATOR_NAMESPACE": OPNS}),
}


def run_once(kill_at: int | None, door: str = "gateway") -> Run:
    """One lifecycle of `door` (a key of LIFECYCLES), the operator killed right after write `kill_at`."""
    lifecycle, flags, environ = LIFECYCLES[door]
    run = Run(kill_at)
    started = time.monotonic()
    with SandboxThread(SandboxConfig.default()) as cf, KubeSandbox(
            namespaces=["default", NS, "chute-system", OPNS]) as kube:
        client = kubernetes.config.new_client_from_config(config_file=kube.kubeconfig)
        core, apps = kubernetes.client.CoreV1Api(client), kubernetes.client.AppsV1Api(client)
        custom = kubernetes.client.CustomObjectsApi(client)
        operator = Replica("chutes-operator", run_env(kube, cf) | {"CHUTES_LOG_LEVEL": "ERROR"} | environ,
                           ("--standalone", *flags))
        lock = threading.Lock()
        protection = ProtectionWatch(cf, lambda: PROTECTED)

        def answered(event: Any) -> None:  # the emulator's thread, after each request it answered
            if event.method in WRITE_METHODS and event.status < 400:
                with lock:
                    run.writes.append(str(event.op))
                    if kill_at is not None and len(run.writes) == kill_at:
                        operator.kill()
                        run.kills += 1
            protection(event)

        def wait(what: str, done: Callable[[], bool]) -> bool:
            deadline = time.monotonic() + PHASE_TIMEOUT
            while not done():
                operator.revive()  # a restart, as the Deployment's kubelet would
                for deployment in apps.list_namespaced_deployment(NS).items:  # no controller runs in the emulator
                    want = deployment.spec.replicas or 0
                    if deployment.status is None or (deployment.status.available_replicas or 0) != want:
                        apps.patch_namespaced_deployment_status(deployment.metadata.name, NS, {
                            "status": {"replicas": want, "availableReplicas": want, "readyReplicas": want}})
                if time.monotonic() > deadline:
                    run.problems.append(f"{what}: not converged in {PHASE_TIMEOUT:g} s")
                    return False
                time.sleep(0.1)
            if dup := duplicates(names(cf)):
                run.problems.append(f"{what}: duplicates {dup}")
            return True

        cf.on_response = answered
        operator.start()
        try:
            lifecycle(World(core, custom, cf, wait))
            run.end = names(cf)
            run.unprotected = protection.moments
        finally:
            cf.on_response = None
            operator.stop()
            client.close()
    run.seconds = time.monotonic() - started
    return run
