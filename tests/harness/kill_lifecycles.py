"""The lifecycles of :mod:`harness.kill_at_write`, one per front door: each creates, edits and deletes what its door
serves, waits for every phase to converge (the run's `wait`, which restarts a killed operator) and ends with
nothing left of it (no orphan). `DOORS` says how each runs: the lifecycle, the `chutes run` flags and environment
its door needs (made before the operator starts), its protected hostnames, and which server's writes count."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudflare
import kubernetes

from harness import sessions
from harness.kill_world import World, exposed

GROUP, VERSION, NS = "chutes.troubleshat.com", "v1alpha1", "team-a"
NAMESPACES = ["default", NS, "chute-system", "cloudflare-zero-trust", "apps", sessions.NAMESPACE, "home"]
Lifecycle = Callable[[World], bool]  # runs every phase; False once one did not converge
Setup = Callable[[World], tuple[tuple[str, ...], dict[str, str]]]  # more `chutes run` flags, its environment


def _get(read: Callable[[], Any]) -> dict[str, Any]:
    try:
        return dict(read())
    except kubernetes.client.exceptions.ApiException as exc:
        if exc.status != 404:
            raise
        return {}


# --- ChuteGateway -------------------------------------------------------------------------------------------


def _gateway(world: World) -> dict[str, Any]:
    return _get(lambda: world.custom.get_namespaced_custom_object(GROUP, VERSION, NS, "chutegateways", "blog"))


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
    start = exposed(cf)

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
    return world.wait("deleted", lambda: not _gateway(world) and exposed(cf) == start)  # no orphan


# --- annotated HTTPRoute ------------------------------------------------------------------------------------

ROUTES = ("gateway.networking.k8s.io", "v1", NS, "httproutes")
CFZT = "cfzt.cloudflare.com/"
OPNS = "cloudflare-zero-trust"


def _route(world: World) -> dict[str, Any]:
    return _get(lambda: world.custom.get_namespaced_custom_object(*ROUTES, "web"))


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
    start = exposed(cf)

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
    return world.wait("deleted", lambda: not _route(world) and exposed(cf) == start
                      and not world.core.list_namespaced_config_map(OPNS, label_selector=(
                          "app.kubernetes.io/managed-by=cfzt-operator")).items)  # no orphan, no state left


# --- Tunnel and TunnelBinding (adyanth's API) -------------------------------------------------------------------

TUNNELS = "networking.cfargotunnel.com"
TNS = "apps"
ACCESS_EMAILS = "chutes.troubleshat.com/access-allowed-emails"


def _binding(world: World) -> dict[str, Any]:
    return _get(lambda: world.custom.get_namespaced_custom_object(TUNNELS, "v1alpha1", TNS, "tunnelbindings", "site"))


def _tunnel(world: World) -> dict[str, Any]:
    return _get(lambda: world.custom.get_namespaced_custom_object(TUNNELS, "v1alpha2", TNS, "tunnels", "web"))


def _ready(body: dict[str, Any]) -> bool:
    status = body.get("status") or {}
    return (status.get("observedGeneration") == (body.get("metadata") or {}).get("generation")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []))


def tunnel_lifecycle(world: World) -> bool:
    """A Tunnel (newTunnel) with its cloudflared; a TunnelBinding of two Services behind Access (the door's Access
    annotations are the binding's: both subjects are protected); one subject removed; the binding deleted; the
    Tunnel deleted (its cloudflared, token Secret and tunnel gone)."""
    custom, cf, core = world.custom, world.cf, world.core
    start = exposed(cf)
    core.create_namespaced_secret(TNS, {"metadata": {"name": "cloudflare-secrets"},
                                        "stringData": {"CLOUDFLARE_API_TOKEN": cf.token}})
    for service in ("www", "admin"):
        core.create_namespaced_service(TNS, {"metadata": {"name": service}, "spec": {
            "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": service}}})
    custom.create_namespaced_custom_object(TUNNELS, "v1alpha2", TNS, "tunnels", {
        "apiVersion": f"{TUNNELS}/v1alpha2", "kind": "Tunnel", "metadata": {"name": "web"},
        "spec": {"newTunnel": {"name": "web-tunnel"},
                 "cloudflare": {"domain": "example.com", "secret": "cloudflare-secrets", "accountId": cf.account_id}}})
    if not world.wait("tunnel ready", lambda: _ready(_tunnel(world))):
        return False

    def published(*hostnames: str, gone: str = "") -> bool:
        binding = _binding(world)
        ready = _ready(binding) and (binding.get("status") or {}).get("hostnames") == ",".join(hostnames)
        return all(world.published(h, ready, gone) for h in hostnames)

    custom.create_namespaced_custom_object(TUNNELS, "v1alpha1", TNS, "tunnelbindings", {
        "apiVersion": f"{TUNNELS}/v1alpha1", "kind": "TunnelBinding",
        "metadata": {"name": "site", "annotations": {ACCESS_EMAILS: "a@example.org"}},
        "subjects": [{"name": "www"}, {"name": "admin"}], "tunnelRef": {"kind": "Tunnel", "name": "web"}})
    if not world.wait("binding published", lambda: published("www.example.com", "admin.example.com")):
        return False
    custom.patch_namespaced_custom_object(TUNNELS, "v1alpha1", TNS, "tunnelbindings", "site",
                                          {"subjects": [{"name": "admin"}]})
    if not world.wait("subject removed", lambda: published("admin.example.com", gone="www.example.com")):
        return False
    custom.delete_namespaced_custom_object(TUNNELS, "v1alpha1", TNS, "tunnelbindings", "site")
    if not world.wait("binding deleted", lambda: not _binding(world) and world.withdrawn("admin.example.com")):
        return False
    custom.delete_namespaced_custom_object(TUNNELS, "v1alpha2", TNS, "tunnels", "web")
    apps = kubernetes.client.AppsV1Api(core.api_client)
    return world.wait("tunnel deleted", lambda: not _tunnel(world) and exposed(cf) == start
                      and not apps.list_namespaced_deployment(TNS).items
                      and not [s for s in core.list_namespaced_secret(TNS).items
                               if s.metadata.name != "cloudflare-secrets"])  # no orphan on either side


# --- session Pods (the seed's sidecar, configured by its environment) ---------------------------------------------

HASHES = ("8b6cc2aa9a45", "1f0e3d2c4b5a", "a1b2c3d4e5f6")


def session_setup(world: World) -> tuple[tuple[str, ...], dict[str, str]]:
    """The shared tunnel (made before the run counts writes) and the seed's environment."""
    return ("--sessions",), sessions.session_env(world.cf, sessions.create_tunnel(world.cf))


def session_lifecycle(world: World) -> bool:
    """Three labelled session Pods published (CNAME, rule, both IngressRoutes); one deleted; the other two deleted."""
    api = world.core.api_client
    tunnel = next(t["id"] for t in world.cf.snapshot()["tunnels"].values() if t["name"] == "shared")
    start = exposed(world.cf)

    def exactly(hashes: tuple[str, ...]) -> bool:
        state = sessions.published(world.cf, api, tunnel)
        return state.sessions() == set(hashes) and state.records == state.rules == {
            sessions.hostname(x) for x in hashes} and len(state.routes) == 2 * len(hashes)

    for n, session_hash in enumerate(HASHES):
        sessions.create_pod(api, sessions.pod(f"opencode-user{n}-main", session_hash))
    if not world.wait("sessions published", lambda: exactly(HASHES)):
        return False
    sessions.delete_pod(api, "opencode-user0-main")
    if not world.wait("one session gone", lambda: exactly(HASHES[1:])):
        return False
    for n in (1, 2):
        sessions.delete_pod(api, f"opencode-user{n}-main")
    return world.wait("all gone", lambda: exactly(()) and exposed(world.cf) == start)


# --- router-hosts: HostMappings and Traefik routes ---------------------------------------------------------------

RH_GROUP, RH_NS, INGRESS_IP = "router-hosts.fzymgc.house", "home", "192.168.1.80"
TRAEFIK = ("traefik.io", "v1alpha1", RH_NS, "ingressroutes")


def hosts_setup(world: World) -> tuple[tuple[str, ...], dict[str, str]]:
    rh = world.rh
    assert rh is not None
    return ("--router-hosts-address", rh.address, "--router-hosts-tls-ca", rh.ca, "--router-hosts-tls-cert", rh.cert,
            "--router-hosts-tls-key", rh.key, "--default-ingress-ip", INGRESS_IP), {}


def _synced(world: World) -> bool:
    body = _get(lambda: world.custom.get_namespaced_custom_object(RH_GROUP, "v1alpha1", RH_NS, "hostmappings", "nas"))
    status = body.get("status") or {}
    return status.get("phase") == "Synced" and status.get("observedGeneration") == body["metadata"]["generation"]


def hosts_lifecycle(world: World) -> bool:
    """A HostMapping registered; its hostname and IP changed; an IngressRoute of two hosts registered; one host
    dropped from it; the route deleted; the mapping deleted."""
    custom, rh = world.custom, world.rh
    assert rh is not None

    def entries(*wanted: str) -> bool:
        return sorted(f"{e.hostname} {e.ip}" for e in rh.entries()) == sorted(wanted)

    def matches(*hosts: str) -> dict[str, Any]:
        return {"routes": [{"match": " || ".join(f"Host(`{h}`)" for h in hosts), "kind": "Rule",
                            "services": [{"name": "web", "port": 80}]}]}

    custom.create_namespaced_custom_object(RH_GROUP, "v1alpha1", RH_NS, "hostmappings", {
        "apiVersion": f"{RH_GROUP}/v1alpha1", "kind": "HostMapping", "metadata": {"name": "nas"},
        "spec": {"hostname": "nas.lan", "ip": "192.168.1.10"}})
    if not world.wait("mapping synced", lambda: _synced(world) and entries("nas.lan 192.168.1.10")):
        return False
    custom.patch_namespaced_custom_object(RH_GROUP, "v1alpha1", RH_NS, "hostmappings", "nas",
                                          {"spec": {"hostname": "files.lan", "ip": "192.168.1.11"}})
    if not world.wait("mapping changed", lambda: _synced(world) and entries("files.lan 192.168.1.11")):
        return False
    custom.create_namespaced_custom_object(*TRAEFIK, {
        "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute", "metadata": {"name": "web"},
        "spec": matches("a.home.lan", "b.home.lan")})
    route = f"a.home.lan {INGRESS_IP}", f"b.home.lan {INGRESS_IP}"
    if not world.wait("route registered", lambda: entries("files.lan 192.168.1.11", *route)):
        return False
    custom.patch_namespaced_custom_object(*TRAEFIK, "web", {"spec": matches("a.home.lan")})
    if not world.wait("host dropped", lambda: entries("files.lan 192.168.1.11", route[0])):
        return False
    custom.delete_namespaced_custom_object(*TRAEFIK, "web")
    if not world.wait("route deleted", lambda: not _get(lambda: custom.get_namespaced_custom_object(*TRAEFIK, "web"))
                      and entries("files.lan 192.168.1.11")):
        return False
    custom.delete_namespaced_custom_object(RH_GROUP, "v1alpha1", RH_NS, "hostmappings", "nas")
    return world.wait("mapping deleted", lambda: not _get(lambda: custom.get_namespaced_custom_object(
        RH_GROUP, "v1alpha1", RH_NS, "hostmappings", "nas")) and entries())


# --- how each door runs -----------------------------------------------------------------------------------------


def _no_setup(world: World) -> tuple[tuple[str, ...], dict[str, str]]:
    return (), {}


def _operator_namespace(world: World) -> tuple[tuple[str, ...], dict[str, str]]:
    return (), {"OPERATOR_NAMESPACE": OPNS}


@dataclass(frozen=True)
class Door:
    lifecycle: Lifecycle
    flags: tuple[str, ...]  # `chutes run` flags (the other doors off)
    setup: Setup = _no_setup
    protected: tuple[str, ...] = ()  # hostnames never routable without their Access application
    routerhosts: bool = False  # its writes go to the router-hosts server (else to Cloudflare)


OFF = {"chutes": "--no-chutes", "httproutes": "--no-httproutes", "tunnels": "--no-tunnels"}


def _off(*doors: str) -> tuple[str, ...]:
    return tuple(OFF[door] for door in doors)


DOORS: dict[str, Door] = {
    "gateway": Door(gateway_lifecycle, _off("httproutes", "tunnels"),
                    protected=("blog.example.com", "news.example.com")),
    "httproute": Door(route_lifecycle, _off("chutes", "tunnels"), _operator_namespace,
                      protected=("blog.example.com", "news.example.com")),
    "tunnel": Door(tunnel_lifecycle, _off("chutes", "httproutes"),
                   protected=("www.example.com", "admin.example.com")),
    "session": Door(session_lifecycle, _off("chutes", "httproutes", "tunnels"), session_setup),
    "hosts": Door(hosts_lifecycle, _off("chutes", "httproutes", "tunnels"), hosts_setup, routerhosts=True),
}
