"""The soak's world (issue 16 §1): the emulators with canary credentials, the foreign objects put in place before the
operator starts (and kept to be compared byte for byte at the end), the objects every front door needs (ChuteConfig,
tenant, Tunnels, Services and their Secrets), and the environment of a `chutes run` replica serving every door (the
router-hosts one on the router-hosts emulator, over mutual TLS: see :mod:`harness.soak_hosts`)."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any

import cloudflare
import kubernetes

from chutes.sandbox.cloudflare import SandboxConfig
from harness.processes import free_port, run_env
from harness.world import user_client

ZONE, SESSION_ZONE = "example.com", "example.net"
GW_NS, APPS_NS, OPNS, SYSTEM_NS, SESSION_NS = "team-a", "apps", "cloudflare-zero-trust", "chute-system", "ns1"
HOSTS_NS, INGRESS_IP = "home", "192.168.1.80"  # HostMappings and Traefik routes; the IP route hostnames get
NAMESPACES = ["default", GW_NS, APPS_NS, OPNS, SYSTEM_NS, SESSION_NS, HOSTS_NS]
# The canaries: the API tokens are made of them, so any of their bytes in a log, an Event or a status is a leak.
CANARY_TOKEN = "soakCANARYtoken0a1b2c3d4e5f6a7b8c9d0e1f2"
FOREIGN_TOKEN = "soakFOREIGNtoken9f8e7d6c5b4a39281706f5e4"
SESSION_SUFFIX = "-oc"
SESSION_SELECTOR = {"app.kubernetes.io/managed-by": "opencode-router"}
SESSION_HASH_LABEL = "opencode.ai/session-hash"
PEERING = "chutes-soak"
EMAILS = ["alice@example.org"]
TUNNEL_GROUP = "networking.cfargotunnel.com"


def sandbox_config() -> SandboxConfig:
    """Both zones, the operator's canary token and the foreign writer's own; a limit far above what a soak sends
    (the request budget is §4's subject, not this one's)."""
    return SandboxConfig.from_dict({
        "tokens": [{"name": "operator", "value": CANARY_TOKEN}, {"name": "foreign", "value": FOREIGN_TOKEN}],
        "rate_limit": {"requests": 10_000_000, "period": 300},
    })


@dataclass
class Foreign:
    """What someone else made, by id, as it was before the operator started (deep copies of the snapshot's
    entries); `shared`: the shared tunnel's id (tenant, session door and an existingTunnel all use it);
    `foreign_rules`: its foreign ingress rules in order, the catch-all last (changed by the foreign writer)."""

    shared: str = ""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    tunnels: dict[str, dict[str, Any]] = field(default_factory=dict)
    apps: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    idps: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # other tunnels' configurations, whole
    foreign_rules: list[dict[str, Any]] = field(default_factory=list)
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)  # router-hosts entries, as its snapshot shows


def foreign_sdk(cf: Any) -> cloudflare.Cloudflare:
    return cloudflare.Cloudflare(api_token=FOREIGN_TOKEN, base_url=cf.base_url, max_retries=0)


def shared_rules() -> list[dict[str, Any]]:
    """The shared tunnel's foreign rules: a plain one, one shaped like a ChuteGateway's, one shaped like a
    session's (reached only through the foreign wildcard record), a path rule, and a foreign catch-all."""
    return [
        {"hostname": "legacy.example.com", "service": "http://legacy.internal:80"},
        {"hostname": "chute-team-a-ghost.example.com", "service": "http://ghost.internal:80"},
        {"hostname": f"deadbeef{SESSION_SUFFIX}.{SESSION_ZONE}", "service": "http://router.internal:80"},
        {"hostname": "paths.example.com", "path": "/foreign", "service": "http://paths.internal:80"},
        {"service": "http_status:418"},
    ]


def put_foreign_objects(cf: Any) -> Foreign:
    """Before the operator starts: records without a marker and with another owner id, wildcard records, a shared
    tunnel with foreign rules and catch-all, tunnels, Access apps and policies, a service token named and shaped
    like ours."""
    account, zone, session_zone = cf.account_id, cf.zone_id(ZONE), cf.zone_id(SESSION_ZONE)
    made: dict[str, set[str]] = {"records": set(), "tunnels": set(), "apps": set(), "policies": set(), "tokens": set()}
    with foreign_sdk(cf) as sdk:
        tunnels = sdk.zero_trust.tunnels.cloudflared
        shared = str(tunnels.create(account_id=account, name="home", config_src="cloudflare").id)
        tunnels.configurations.update(shared, account_id=account, config={"ingress": shared_rules()})  # type: ignore[arg-type]
        lookalike = str(tunnels.create(account_id=account, name="chute-team-a-ghost", config_src="cloudflare").id)
        tunnels.configurations.update(lookalike, account_id=account, config={"ingress": [  # type: ignore[arg-type]
            {"hostname": "ghost.example.com", "service": "http://ghost.internal:80"}, {"service": "http_status:404"}]})
        made["tunnels"] |= {shared, lookalike,
                            str(tunnels.create(account_id=account, name="t1-tunnel-lookalike",
                                               config_src="cloudflare").id)}
        target = f"{shared}.cfargotunnel.com"
        for zone_id, name, type_, content, comment in [
            (zone, "legacy.example.com", "A", "192.0.2.1", None),  # no marker
            (zone, "blue-g1.example.com", "CNAME", target,
             "chutes-operator owner=blue src=ChuteGateway/team-a/g1"),  # another owner id
            (zone, "cfzt-lookalike.example.com", "CNAME", target, "made by hand"),
            (zone, "ghost.example.com", "CNAME", f"{lookalike}.cfargotunnel.com", None),
            (zone, "*.wild.example.com", "CNAME", target, None),  # a wildcard: paths.wild... reached through it
            (session_zone, f"*.{SESSION_ZONE}", "CNAME", target, None),  # every session-shaped name reached through it
        ]:
            extra = {"comment": comment} if comment else {}
            record = sdk.dns.records.create(zone_id=zone_id, name=name, type=type_, content=content,  # type: ignore[call-overload]
                                            ttl=1, proxied=type_ == "CNAME", **extra)
            made["records"].add(str(record.id))
        policy = sdk.zero_trust.access.policies.create(account_id=account, name="Hand-made allow", decision="allow",
                                                       include=[{"email": {"email": "ops@example.org"}}])
        made["policies"].add(str(policy.id))
        for name, domain in [("cfzt-ghost.example.com", "ghost.example.com"),
                             ("chute-team-a-ghost", "chute-team-a-ghost.example.com"),
                             ("Hand-made app", "legacy.example.com")]:
            app = sdk.zero_trust.access.applications.create(account_id=account, name=name, domain=domain,  # type: ignore[call-overload]
                                                            type="self_hosted",
                                                            policies=[{"id": str(policy.id), "precedence": 1}])
            made["apps"].add(str(app.id))
        token = sdk.zero_trust.access.service_tokens.create(account_id=account, name="cfzt-svctoken-ghost")
        made["tokens"].add(str(token.id))
    state = cf.snapshot()
    foreign = Foreign(shared=shared, foreign_rules=shared_rules())
    foreign.records = {r["id"]: copy.deepcopy(r) for z in state["dns_records"].values() for r in z
                       if r["id"] in made["records"]}
    foreign.tunnels = {k: copy.deepcopy(v) for k, v in state["tunnels"].items() if k in made["tunnels"]}
    foreign.apps = {k: copy.deepcopy(v) for k, v in state["access_apps"].items() if k in made["apps"]}
    foreign.policies = {k: copy.deepcopy(v) for k, v in state["access_policies"].items()}  # every one so far
    foreign.tokens = {k: copy.deepcopy(v) for k, v in state["service_tokens"].items() if k in made["tokens"]}
    foreign.idps = {k: copy.deepcopy(v) for k, v in state["identity_providers"].items()}
    foreign.configs = {k: copy.deepcopy(v) for k, v in state["tunnel_configs"].items() if k != shared}
    return foreign


class Kube:
    """The user's clients on the Kubernetes emulator."""

    def __init__(self, kube: Any) -> None:
        self.client = user_client(kube.kubeconfig)
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.apps = kubernetes.client.AppsV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)

    def close(self) -> None:
        self.client.close()

    def connectors_up(self) -> None:
        """Play the Deployment controller (none runs in the emulator): every Deployment's replicas available."""
        for namespace in NAMESPACES:
            for deployment in self.apps.list_namespaced_deployment(namespace).items:
                want = deployment.spec.replicas or 0
                if deployment.status is None or (deployment.status.available_replicas or 0) != want:
                    with contextlib.suppress(kubernetes.client.exceptions.ApiException):  # deleted meanwhile
                        self.apps.patch_namespaced_deployment_status(deployment.metadata.name, namespace, {
                            "status": {"replicas": want, "availableReplicas": want, "readyReplicas": want}})


SECRETS: dict[str, tuple[str, dict[str, str]]] = {
    # name -> (namespace, data): the API token Secrets of the ChuteConfig, the tenant and the Tunnels
    "cf": (SYSTEM_NS, {"apiToken": CANARY_TOKEN}),
    "cf-token": (OPNS, {"token": CANARY_TOKEN}),
    "cloudflare-secrets": (APPS_NS, {"CLOUDFLARE_API_TOKEN": CANARY_TOKEN}),
}


def secret_body(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "stringData": SECRETS[name][1]}


def tunnel_body(cf: Any, name: str, foreign: Foreign) -> dict[str, Any]:
    """Tunnel `t1`: a new tunnel of its own; `t2`: the shared tunnel as an existingTunnel (co-owned)."""
    spec: dict[str, Any] = {"cloudflare": {"domain": ZONE, "secret": "cloudflare-secrets", "accountId": cf.account_id}}
    if name == "t1":
        spec["newTunnel"] = {"name": "t1-tunnel"}
    else:
        spec["existingTunnel"] = {"id": foreign.shared}
    return {"apiVersion": f"{TUNNEL_GROUP}/v1alpha2", "kind": "Tunnel", "metadata": {"name": name}, "spec": spec}


def tenant_body(cf: Any, foreign: Foreign) -> dict[str, Any]:
    return {"apiVersion": "cfzt.cloudflare.com/v1alpha1", "kind": "CloudflareZeroTrustTenant",
            "metadata": {"name": "home"},
            "spec": {"accountId": cf.account_id, "tunnelId": foreign.shared,
                     "credentialRef": {"name": "cf-token", "key": "token"}}}


def put_base_objects(k: Kube, cf: Any, foreign: Foreign) -> None:
    """The objects every door's sources stand on: Secrets, the ChuteConfig, the tenant, Tunnels t1 and t2, the
    Services the gateways, bindings and annotated Services name."""
    for name, (namespace, _) in SECRETS.items():
        k.core.create_namespaced_secret(namespace, secret_body(name))
    k.custom.create_cluster_custom_object("chutes.troubleshat.com", "v1alpha1", "chuteconfigs", {
        "apiVersion": "chutes.troubleshat.com/v1alpha1", "kind": "ChuteConfig", "metadata": {"name": "default"},
        "spec": {"apiTokenSecretRef": {"name": "cf", "namespace": SYSTEM_NS, "key": "apiToken"},
                 "accountId": cf.account_id, "zoneId": cf.zone_id(ZONE), "domain": ZONE}})
    k.custom.create_namespaced_custom_object("cfzt.cloudflare.com", "v1alpha1", OPNS, "cloudflarezerotrusttenants",
                                             tenant_body(cf, foreign))
    for name in ("t1", "t2"):
        k.custom.create_namespaced_custom_object(TUNNEL_GROUP, "v1alpha2", APPS_NS, "tunnels",
                                                 tunnel_body(cf, name, foreign))
    k.core.create_namespaced_service(GW_NS, {"metadata": {"name": "web"}, "spec": {
        "ports": [{"port": 8080}], "selector": {"app": "web"}}})
    for i in range(1, 4):
        k.core.create_namespaced_service(APPS_NS, {"metadata": {"name": f"svc{i}"}, "spec": {
            "ports": [{"port": 8080}], "selector": {"app": f"svc{i}"}}})


def replica_env(kube: Any, cf: Any, rh: Any, foreign: Foreign, pod: str) -> dict[str, str]:
    """`chutes run` with every front door on (the session door through the seed's variables, on the shared
    tunnel; the router-hosts door on `rh`, with its client certificate), kopf peering, short intervals so that drift
    and orphans are dealt with within the soak."""
    return run_env(kube, cf) | {
        "POD_ID": pod, "OPERATOR_NAMESPACE": OPNS, "CHUTES_LEDGER_NAMESPACE": OPNS,
        "CHUTES_CLUSTER_RESOURCE_NAMESPACE": OPNS,
        "CHUTES_PEERING": PEERING, "CHUTES_PRIORITY": "auto",
        "CHUTES_CHUTES": "true", "CHUTES_HTTPROUTES": "true", "CHUTES_TUNNELS": "true", "CHUTES_SESSIONS": "true",
        "CHUTES_RESYNC_INTERVAL": "8", "CHUTES_SWEEP_INTERVAL": "8", "CHUTES_SWEEP_MAX_DELETIONS": "200",
        "CHUTES_RATE_LIMIT": "1000000", "CHUTES_LOG_LEVEL": "INFO",
        "CF_API_TOKEN": CANARY_TOKEN, "CF_ZONE_ID": cf.zone_id(SESSION_ZONE), "CF_TUNNEL_ID": foreign.shared,
        "DOMAIN": SESSION_ZONE, "ROUTE_SUFFIX": SESSION_SUFFIX,
        "ROUTER_SERVICE_URL": "http://opencode-router.ns1.svc.cluster.local:80", "WATCH_NAMESPACE": SESSION_NS,
        "INGRESSROUTE_NAMESPACE": SESSION_NS, "HEALTH_PORT": str(free_port()),
        "CHUTES_ROUTER_HOSTS_ADDRESS": rh.address, "CHUTES_ROUTER_HOSTS_TLS_CA": rh.ca,
        "CHUTES_ROUTER_HOSTS_TLS_CERT": rh.cert, "CHUTES_ROUTER_HOSTS_TLS_KEY": rh.key,
        "CHUTES_DEFAULT_INGRESS_IP": INGRESS_IP,
    }
