"""Reconcile ChuteConfigs and ChuteGateways: gather, plan (pure), act through the Cloudflare core and the
kube module, record each ID in status before the next step.

Order for a protected gateway: tunnel → Access app → policy → tunnel rule → CNAME → Secret and
cloudflared. The seed created DNS before Access; we create Access first so the hostname is never
routable unprotected. Deletion runs the other way round: cloudflared, CNAME and rule go before the
Access app, the tunnel last.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.authorization import HostnameRules
from chutes.cloudflare_core import (
    AccessAppSpec,
    AppPolicySpec,
    CloudflareCore,
    CloudflareError,
    Conflict,
    DesiredRecord,
    IngressRule,
)
from chutes.cores import CorePool
from chutes.frontdoors import adoption
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.gateways.status import StatusWriter
from chutes.frontdoors.problems import (
    CONFLICT_RETRY,
    MISSING_RETRY,
    EventSink,
    Problem,
    problem_from_cloudflare,
    step,
)
from chutes.observability.metrics import HOSTNAMES

FRONT_DOOR = "chutes"  # the label of this front door in metrics

logger = logging.getLogger(__name__)

CONFIG_RETRY = 5.0


@dataclass(frozen=True)
class Account:
    """What a ChuteConfig provides to its gateways."""

    name: str
    account_id: str
    zone_id: str
    domain: str
    otp_idp_id: str | None
    core: CloudflareCore


async def read_token(api: client.ApiClient, spec: Mapping[str, Any]) -> str:
    ref = spec.get("apiTokenSecretRef") or {}
    namespace, name, key = ref.get("namespace", ""), ref.get("name", ""), ref.get("key") or "apiToken"
    try:
        token = await kube.read_secret_value(api, namespace, name, key)
    except KeyError:
        raise Problem(c.SECRET_KEY_MISSING, f"Secret {namespace}/{name} has no key {key!r}", MISSING_RETRY) from None
    if token is None:
        raise Problem(c.SECRET_NOT_FOUND, f"Secret {namespace}/{name} does not exist", MISSING_RETRY)
    token = token.strip()
    if not token:
        raise Problem(c.SECRET_KEY_MISSING, f"Secret {namespace}/{name} key {key!r} is empty", MISSING_RETRY)
    return token


async def load_account(api: client.ApiClient, cores: CorePool, config_name: str, *, need_ready: bool) -> Account:
    config = await kube.get_custom(api, d.GROUP, d.VERSION, d.CONFIG_PLURAL, config_name)
    if config is None:
        raise Problem(c.CONFIG_NOT_FOUND, f"ChuteConfig {config_name!r} does not exist", MISSING_RETRY)
    spec, status = config.get("spec") or {}, config.get("status") or {}
    if need_ready and not status.get("otpIdentityProviderId"):
        raise Problem(c.CONFIG_NOT_READY, f"ChuteConfig {config_name!r} is not ready yet", CONFIG_RETRY)
    token = await read_token(api, spec)
    return Account(
        name=config_name,
        account_id=spec.get("accountId", ""),
        zone_id=spec.get("zoneId", ""),
        domain=str(spec.get("domain", "")).lower(),
        otp_idp_id=status.get("otpIdentityProviderId"),
        core=cores.core_for(token),
    )


# --- ChuteConfig -----------------------------------------------------------------------------------


async def reconcile_config(api: client.ApiClient, cores: CorePool, name: str, spec: Mapping[str, Any],
                           status: StatusWriter, events: EventSink | None = None) -> None:
    try:
        token = await read_token(api, spec)
        core = cores.core_for(token)
        account_id, zone_id = spec.get("accountId", ""), spec.get("zoneId", "")
        domain = str(spec.get("domain", "")).lower()
        try:
            zone = await core.verify_access(account_id, zone_id)
        except CloudflareError as exc:
            raise problem_from_cloudflare(exc, "checking the account and zone") from exc
        if not (domain == zone.name or domain.endswith("." + zone.name)):
            raise Problem(c.INVALID_SPEC, f"domain {domain!r} is not inside zone {zone.name!r}", None)
        status.condition(c.CREDENTIALS_READY, "True", c.RECONCILED, f"the token reaches account and zone {zone.name}")
        try:
            idp = await core.ensure_otp_idp(account_id)
        except CloudflareError as exc:
            raise problem_from_cloudflare(exc, "ensuring the one-time-PIN identity provider") from exc
        if events is not None and status.get("otpIdentityProviderId") != idp.id:
            events.normal("IdentityProviderReady", f"one-time PIN identity provider {idp.id}")
        status.set(otpIdentityProviderId=idp.id, ready=True, observedGeneration=status.generation)
        status.condition(c.IDENTITY_PROVIDER_READY, "True", c.RECONCILED, f"one-time PIN provider {idp.id}")
        status.condition(c.READY, "True", c.RECONCILED, "credentials verified, one-time PIN ready")
    except Problem as problem:
        if problem.reason in (c.SECRET_NOT_FOUND, c.SECRET_KEY_MISSING, c.CREDENTIALS_INVALID):
            status.condition(c.CREDENTIALS_READY, "False", problem.reason, problem.message)
        status.set(ready=False, observedGeneration=status.generation)
        status.condition(c.READY, "False", problem.reason, problem.message)
        raise
    finally:
        await status.flush()


async def gateways_using(api: client.ApiClient, config_name: str) -> list[str]:
    gateways = await kube.list_custom(api, d.GROUP, d.VERSION, d.GATEWAY_PLURAL)
    return sorted(
        f"{g['metadata']['namespace']}/{g['metadata']['name']}"
        for g in gateways
        if (g.get("spec") or {}).get("configRef") == config_name
    )


# --- ChuteGateway ----------------------------------------------------------------------------------


def _claim_key(gateway: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = gateway["metadata"]
    return (str(meta.get("creationTimestamp", "")), meta.get("namespace", ""), meta["name"])


async def check_hostname_claim(api: client.ApiClient, plan: d.GatewayPlan, account: Account,
                               body: Mapping[str, Any], rules: HostnameRules | None = None) -> None:
    """The first gateway (by creation time, then namespace/name) to claim an FQDN keeps it; a gateway whose
    namespace may not publish the FQDN (hostname rules) claims nothing."""
    mine = _claim_key(body)
    domains: dict[str, str | None] = {account.name: account.domain}
    for other in await kube.list_custom(api, d.GROUP, d.VERSION, d.GATEWAY_PLURAL):
        meta = other["metadata"]
        if (meta.get("namespace"), meta["name"]) == (plan.namespace, plan.name) or meta.get("deletionTimestamp"):
            continue
        spec = other.get("spec") or {}
        ref = spec.get("configRef", "")
        if ref not in domains:
            config = await kube.get_custom(api, d.GROUP, d.VERSION, d.CONFIG_PLURAL, ref)
            domains[ref] = str((config or {}).get("spec", {}).get("domain", "")).lower() or None
        domain = domains[ref]
        if domain is None:
            continue
        try:
            fqdn = d.resolve_hostname(str(spec.get("hostname", "")), domain)
        except d.SpecError:
            continue
        if rules is not None and not rules.allows(str(meta.get("namespace", "")), fqdn):
            continue
        if fqdn == plan.fqdn and _claim_key(other) < mine:
            raise Problem(
                c.HOSTNAME_CONFLICT,
                f"hostname {plan.fqdn} is already claimed by ChuteGateway {meta.get('namespace')}/{meta['name']}",
                CONFLICT_RETRY,
            )


async def reconcile_gateway(
    api: client.ApiClient,
    cores: CorePool,
    body: Mapping[str, Any],
    status: StatusWriter,
    events: EventSink,
    rules: HostnameRules | None = None,
) -> None:
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    try:
        account = await load_account(api, cores, spec.get("configRef", ""), need_ready=True)
        try:
            plan = d.plan_gateway(namespace, name, spec, account.domain, account.core.owner_id)
        except d.SpecError as exc:
            raise Problem(exc.reason, str(exc), None) from exc
        if rules is not None and not rules.allows(namespace, plan.fqdn):
            await withdraw(api, cores, body, status, events)
            raise Problem(c.HOSTNAME_NOT_AUTHORIZED, rules.explain(namespace, plan.fqdn), None)
        await check_hostname_claim(api, plan, account, body, rules)
        if not await kube.service_exists(api, namespace, plan_service_name(spec)):
            raise Problem(c.SERVICE_NOT_FOUND, f"Service {namespace}/{plan_service_name(spec)} does not exist",
                          MISSING_RETRY)
        await publish(api, account, plan, body, status, events)
    except Problem as problem:
        status.set(ready=False, observedGeneration=status.generation)
        status.condition(c.READY, "False", problem.reason, problem.message)
        raise
    finally:
        await status.flush()


async def withdraw(
    api: client.ApiClient, cores: CorePool, body: Mapping[str, Any], status: StatusWriter, events: EventSink
) -> None:
    """A gateway that may no longer publish (hostname rules): what it published goes as if it were deleted
    (cloudflared, CNAME, rule, Access, tunnel), and its status forgets it. Nothing to do when it never
    published anything."""
    if not any(status.get(key) for key in ("tunnelId", "hostname", "accessAppId", "dnsRecordId")):
        return
    await unpublish_gateway(api, cores, body, status, events)
    status.set(tunnelId=None, accessAppId=None, accessPolicyId=None, dnsRecordId=None, hostname=None, url=None)
    for type_ in (c.TUNNEL_READY, c.ACCESS_READY, c.DNS_READY, c.CONNECTOR_READY):
        status.condition(type_, "False", c.HOSTNAME_NOT_AUTHORIZED, "not published: outside the hostname rules")
    await status.flush()


def plan_service_name(spec: Mapping[str, Any]) -> str:
    return str((spec.get("service") or {}).get("name", ""))


async def publish(
    api: client.ApiClient,
    account: Account,
    plan: d.GatewayPlan,
    body: Mapping[str, Any],
    status: StatusWriter,
    events: EventSink,
) -> None:
    core, account_id = account.core, account.account_id
    if status.get("observedGeneration") != status.generation:
        status.set(ready=False)
        status.condition(c.READY, "False", c.PROGRESSING, f"applying generation {status.generation}")
    previous_fqdn = status.get("hostname")
    previous_app = status.get("accessAppId")
    previous_policy = status.get("accessPolicyId")

    # 0. Refuse a hostname held by a record that is not ours before writing anything.
    # With adoption asked for, a record or Access app without any marker of ours is taken over instead.
    take_over = adoption.gateway_requests(body)
    await step(f"checking DNS for {plan.fqdn}", core.check_dns_name_available(account.zone_id, plan.fqdn, plan.source,
                                                                              adopt=take_over))

    # 1. Tunnel.
    tunnel = await step("ensuring the tunnel", core.ensure_tunnel(account_id, plan.cloudflare_name))
    if status.get("tunnelId") != tunnel.id:
        events.normal("TunnelReady", f"tunnel {plan.cloudflare_name} ({tunnel.id})")
    status.set(tunnelId=tunnel.id)
    await status.flush()

    # 2-3. Access application and policy (before anything routes traffic to the hostname).
    if plan.public:
        status.condition(c.ACCESS_READY, "True", c.PUBLIC, "access.public is true: no Access application")
    else:
        if not account.otp_idp_id:
            raise Problem(c.CONFIG_NOT_READY, f"ChuteConfig {account.name!r} has no one-time PIN provider",
                          CONFIG_RETRY)
        app = await step("ensuring the Access application", core.ensure_access_app(account_id, AccessAppSpec(
            name=plan.cloudflare_name,
            domain=plan.fqdn,
            session_duration=plan.session_duration,
            allowed_idps=(account.otp_idp_id,),
            auto_redirect_to_identity=True,
            adopt=take_over,
        )))
        if previous_app != app.id:
            events.normal("AccessApplicationReady", f"Access application {plan.cloudflare_name} for {plan.fqdn}")
        status.set(accessAppId=app.id)
        await status.flush()
        policy = await step("ensuring the Access policy", core.ensure_app_policy(account_id, app.id, AppPolicySpec(
            name=d.POLICY_NAME, decision="allow", include=tuple(d.policy_include(plan)),
        )))
        if previous_policy != policy.id:
            events.normal("AccessPolicyReady", f"Access policy {d.POLICY_NAME} ({policy.id}) on {plan.fqdn}")
        status.set(accessPolicyId=policy.id)
        status.condition(c.ACCESS_READY, "True", c.RECONCILED,
                         f"{len(plan.emails)} email(s) and {len(plan.domains)} domain(s) allowed")
        await status.flush()

    # 4. Tunnel rule, then 5. the CNAME.
    rule = IngressRule(hostname=plan.fqdn, service=plan.service_url)
    await step("writing the tunnel ingress rule", core.set_ingress_rule(account_id, tunnel.id, rule))
    route = f"{plan.fqdn} → {plan.service_url}"
    before = c.find(status.get("conditions"), c.TUNNEL_READY)
    if before is None or (before.get("status"), before.get("message")) != ("True", route):
        events.normal("TunnelRouteReady", f"tunnel ingress rule {route}")
    status.condition(c.TUNNEL_READY, "True", c.RECONCILED, route)
    record = await step(f"ensuring the CNAME for {plan.fqdn}", core.ensure_dns_record(account.zone_id, DesiredRecord(
        name=plan.fqdn, type="CNAME", content=f"{tunnel.id}.cfargotunnel.com", proxied=True, source=plan.source,
        adopt=take_over,
    )))
    if status.get("dnsRecordId") != record.id:
        events.normal("DNSRecordReady", f"proxied CNAME {plan.fqdn} → {tunnel.id}.cfargotunnel.com")
    status.set(dnsRecordId=record.id, hostname=plan.fqdn, url=plan.url)
    status.condition(c.DNS_READY, "True", c.RECONCILED, f"CNAME {plan.fqdn}")
    await status.flush()
    HOSTNAMES.publish(FRONT_DOOR, plan.source, [plan.fqdn])

    # The previous hostname (spec change): its DNS and rule go before its Access application.
    if previous_fqdn and previous_fqdn != plan.fqdn:
        await step(f"removing the CNAME of {previous_fqdn}",
                   core.delete_dns_record(account.zone_id, previous_fqdn, "CNAME"))
        await step(f"removing the rule of {previous_fqdn}", core.remove_ingress_rule(account_id, tunnel.id,
                                                                                     previous_fqdn))
        events.normal("HostnameRemoved", f"{previous_fqdn} is no longer published")
    current_app = None if plan.public else status.get("accessAppId")
    if previous_app and previous_app != current_app:
        if previous_policy and plan.public:
            await step("removing the old Access policy", core.delete_app_policy(account_id, previous_app,
                                                                                previous_policy))
            events.normal("AccessPolicyRemoved", f"Access policy {previous_policy} removed")
        await step("removing the old Access application", core.delete_access_app(account_id, previous_app))
        events.normal("AccessApplicationRemoved", f"Access application {previous_app} removed")
    if plan.public:
        status.set(accessAppId=None, accessPolicyId=None)

    # 6. The tunnel token Secret and the cloudflared Deployment, owned by the gateway.
    token = await step("reading the tunnel token", core.get_tunnel_token(account_id, tunnel.id))
    secret = d.secret_manifest(plan, token)
    deployment = d.deployment_manifest(plan)
    for manifest in (secret, deployment):
        adopt(manifest, body)
    await kube.apply_secret(api, secret)
    deployment_status = await kube.apply_deployment(api, deployment)
    connector_condition(status, plan.replicas, deployment_status)
    ready_condition(status)


def adopt(manifest: dict[str, Any], owner: Mapping[str, Any]) -> None:
    meta = owner["metadata"]
    manifest["metadata"]["ownerReferences"] = [{
        "apiVersion": f"{d.GROUP}/{d.VERSION}",
        "kind": d.GATEWAY_KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }]


def connector_condition(status: StatusWriter, replicas: int, deployment_status: Mapping[str, Any] | None) -> None:
    available = int((deployment_status or {}).get("availableReplicas") or 0)
    if replicas == 0:
        status.condition(c.CONNECTOR_READY, "False", c.CONNECTORS_UNAVAILABLE, "spec.replicas is 0")
    elif available > 0:
        status.condition(c.CONNECTOR_READY, "True", c.CONNECTORS_AVAILABLE, f"{available}/{replicas} available")
    else:
        status.condition(c.CONNECTOR_READY, "False", c.CONNECTORS_UNAVAILABLE, f"0/{replicas} available")


def ready_condition(status: StatusWriter) -> None:
    steps = (c.TUNNEL_READY, c.ACCESS_READY, c.DNS_READY, c.CONNECTOR_READY)
    waiting = [t for t in steps if not status.is_true(t)]
    ready = not waiting
    status.set(ready=ready, observedGeneration=status.generation)
    if ready:
        status.condition(c.READY, "True", c.RECONCILED, f"published at {status.get('url')}")
    else:
        status.condition(c.READY, "False", c.PENDING, "waiting for " + ", ".join(waiting))


# --- deletion ----------------------------------------------------------------------------------------


async def unpublish_gateway(
    api: client.ApiClient, cores: CorePool, body: Mapping[str, Any], status: StatusWriter, events: EventSink
) -> None:
    """Tear down in reverse order. Without credentials nothing can be cleaned: the finalizer stays."""
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    names = d.GatewayPlan(namespace=namespace, name=name, fqdn=status.get("hostname") or "", service_url="",
                          public=True, emails=(), domains=(), session_duration="24h", replicas=0, image="")
    await kube.delete_namespaced(api, "Deployment", namespace, names.deployment_name)
    await kube.delete_namespaced(api, "Secret", namespace, names.secret_name)
    try:
        account = await load_account(api, cores, spec.get("configRef", ""), need_ready=False)
    except Problem as problem:
        raise Problem(
            c.DELETING,
            f"cannot remove the Cloudflare objects: {problem.message}. Restore it, or remove the finalizer "
            f"{d.GROUP}/cleanup to abandon them.",
            problem.delay or MISSING_RETRY,
        ) from None
    core, account_id = account.core, account.account_id
    names = dataclasses.replace(names, owner_id=core.owner_id)

    async def remove(doing: str, coroutine: Any, reason: str, message: str) -> None:
        """One deletion and its Event; what turns out not to be ours stays (a Warning says so)."""
        try:
            await coroutine
        except Conflict as exc:
            events.warning(c.HOSTNAME_CONFLICT, f"{doing}: left in place, not ours ({exc.message})")
            return
        except CloudflareError as exc:
            raise problem_from_cloudflare(exc, doing) from exc
        events.normal(reason, message)

    fqdn = status.get("hostname")
    tunnel_id = status.get("tunnelId")
    if not tunnel_id:  # stopped before the tunnel's id was recorded: find it by name
        tunnel = await step("finding the tunnel", core.find_tunnel(account_id, names.cloudflare_name))
        tunnel_id = tunnel.id if tunnel is not None else None
    if fqdn:
        await remove(f"removing the CNAME {fqdn}", core.delete_dns_record(account.zone_id, fqdn, "CNAME"),
                     "DNSRecordRemoved", f"CNAME {fqdn} removed")
        if tunnel_id:
            await remove(f"removing the rule of {fqdn}", core.remove_ingress_rule(account_id, tunnel_id, fqdn),
                         "TunnelRouteRemoved", f"tunnel ingress rule for {fqdn} removed")
    HOSTNAMES.forget(FRONT_DOOR, names.source)
    app_id = status.get("accessAppId")
    if app_id:
        policy_id = status.get("accessPolicyId")
        if policy_id:
            await remove("removing the Access policy", core.delete_app_policy(account_id, app_id, policy_id),
                         "AccessPolicyRemoved", f"Access policy {policy_id} removed")
        await remove("removing the Access application", core.delete_access_app(account_id, app_id),
                     "AccessApplicationRemoved", f"Access application {app_id} removed")
    if tunnel_id:
        await remove("removing the tunnel", core.delete_tunnel(account_id, tunnel_id),
                     "TunnelRemoved", f"tunnel {names.cloudflare_name} ({tunnel_id}) removed")
    events.normal("Unpublished", f"{fqdn or name}: Cloudflare objects removed")
