"""Reconcile ChuteConfigs and ChuteGateways: gather, decide (pure), act through the Cloudflare core and the
kube module, record each ID in status (for users) before the next step.

Ownership is recorded, never inferred (issue 11). A gateway's Cloudflare objects are recorded in the ledger
of claims (:mod:`chutes.claims`, through :mod:`chutes.frontdoors.claiming`):

- its *hostname claim* (key: the FQDN; one holder across every front door, the first keeps it until its
  teardown is complete) records the Access application and its policy, the tunnel rule and the CNAME's zone;
- its *tunnel claim* (key ``<account>/chute-<ns>-<name>``) records its tunnel.

Each object's intent is recorded before it is created and its id right after; an object found under its
name is changed only when its claim proves it ours (the DNS record by its marker for this gateway). Deletion,
withdrawal (hostname rules) and a hostname change tear down from the claims, never from the ids in status
(which anyone with write access to ``chutegateways/status`` can change): a claim is released only once what it
records is gone, so a failed removal is retried and nothing is leaked. Under dry-run the ledger is read, never
written (:class:`chutes.claims.DryRunClaims`): a dry-run gateway holds no hostname.

Bootstrap (upgrade from a version without a ledger, or from the seed): when the gateway's hostname claim
records nothing yet and its status names what was published, an object is recorded only if (a) it exists,
(b) its name and natural key are exactly what this gateway would create (tunnel and Access application
``chute-<ns>-<name>``, owner-qualified; the application's domain = the FQDN), and (c) the DNS record at the
FQDN is marked for this gateway: its CNAME target proves the tunnel id. Anything else is foreign.

Order for a protected gateway: tunnel → Access app → policy → tunnel rule → CNAME → Secret and
cloudflared. The seed created DNS before Access; we create Access first so the hostname is never
routable unprotected. Deletion runs the other way round: cloudflared, rule and CNAME go before the
Access app, the tunnel last.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.authorization import HostnameRules
from chutes.claims import Claim, ClaimLost, ClaimStore, HeldElsewhere, claims_for, utc_now
from chutes.cloudflare_core import (
    AccessApp,
    AccessAppSpec,
    AppPolicySpec,
    CloudflareCore,
    CloudflareError,
    Conflict,
    DesiredRecord,
    IngressRule,
    MarkerTooLong,
    Policy,
    cname_target,
    marker,
    marks,
    token_defect,
    tunnel_of,
)
from chutes.cores import CorePool
from chutes.frontdoors import adoption, claiming
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.gateways.status import StatusWriter
from chutes.frontdoors.problems import EventSink, Problem, problem_from_cloudflare, step
from chutes.frontdoors.retries import CONFIG_RETRY, CONFLICT_RETRY, CREDENTIALS_RETRY, LOST_RETRY, MISSING_RETRY
from chutes.frontdoors.status_writer import reported
from chutes.observability.metrics import HOSTNAMES

T = TypeVar("T")

FRONT_DOOR = "chutes"  # the label of this front door in metrics

logger = logging.getLogger(__name__)



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
    if not (isinstance(namespace, str) and namespace and isinstance(name, str) and name and isinstance(key, str)):
        raise Problem(c.INVALID_SPEC, "spec.apiTokenSecretRef needs a name and a namespace (the ChuteConfig is "
                      "cluster-scoped)", None)
    try:
        token = await kube.read_secret_value(api, namespace, name, key)
    except KeyError:
        raise Problem(c.SECRET_KEY_MISSING, f"Secret {namespace}/{name} has no key {key!r}", MISSING_RETRY) from None
    if token is None:
        raise Problem(c.SECRET_NOT_FOUND, f"Secret {namespace}/{name} does not exist", MISSING_RETRY)
    token = token.strip()
    if not token:
        raise Problem(c.SECRET_KEY_MISSING, f"Secret {namespace}/{name} key {key!r} is empty", MISSING_RETRY)
    defect = token_defect(token)
    if defect is not None:  # refused before any client holds it; the message names no character of it
        raise Problem(c.CREDENTIALS_INVALID, f"Secret {namespace}/{name} key {key!r}: the API token {defect}",
                      CREDENTIALS_RETRY)
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
        domain = str(spec.get("domain", "")).lower()
        if not d.is_dns_name(domain):  # the CRD's pattern refuses it; an unvalidated object may still come
            raise Problem(c.INVALID_SPEC, f"domain {domain!r} is not a DNS name such as example.com", None)
        token = await read_token(api, spec)
        core = cores.core_for(token)
        account_id, zone_id = spec.get("accountId", ""), spec.get("zoneId", "")
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
            events.normal(c.IDENTITY_PROVIDER_READY, f"one-time PIN identity provider {idp.id}")
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

LEGACY_HINTS = ("tunnelId", "accessAppId", "accessPolicyId", "dnsRecordId", "hostname")


def gateway_source(namespace: str, name: str) -> str:
    """The gateway as a claim's and a DNS marker's source: ``ChuteGateway/<namespace>/<name>``."""
    return f"{d.GATEWAY_KIND}/{namespace}/{name}"


def tunnel_key(account_id: str, tunnel_name: str) -> str:
    """The tunnel claim's key: ``<account>/<tunnel name>``."""
    return f"{account_id}/{tunnel_name}"


def check_marker(owner_id: str, source: str) -> None:
    """A source whose ownership marker cannot fit in a DNS comment publishes nothing (InvalidSpec)."""
    try:
        marker(owner_id, source)
    except MarkerTooLong as exc:
        raise Problem(c.INVALID_SPEC, exc.message, None) from None


def has_legacy_hints(status: StatusWriter) -> bool:
    """Whether the status names something an earlier version (or the seed) may have published."""
    return any(status.get(key) for key in LEGACY_HINTS)


async def adoption_permitted(api: client.ApiClient, body: Mapping[str, Any], rules: HostnameRules | None,
                             allow_all: bool) -> bool:
    """Whether the gateway asks for adoption and the operator permits it for its hostname (setting
    ``allow_adoption``, or a hostname rule with ``adopt: true``)."""
    if not adoption.gateway_requests(body):
        return False
    if allow_all:
        return True
    if rules is None:
        return False
    meta, spec = body["metadata"], body.get("spec") or {}
    config = await kube.get_custom(api, d.GROUP, d.VERSION, d.CONFIG_PLURAL, str(spec.get("configRef") or ""))
    domain = str(((config or {}).get("spec") or {}).get("domain") or "").lower()
    try:
        fqdn = d.resolve_hostname(str(spec.get("hostname") or ""), domain)
    except d.SpecError:
        return False
    return adoption.permitted(True, str(meta.get("namespace") or ""), fqdn, rules, allow_all)


async def reconcile_gateway(
    api: client.ApiClient,
    cores: CorePool,
    claims: ClaimStore,
    body: Mapping[str, Any],
    status: StatusWriter,
    events: EventSink,
    rules: HostnameRules | None = None,
    allow_adoption: bool = False,
    allowed_images: tuple[str, ...] = d.DEFAULT_ALLOWED_IMAGES,
) -> None:
    """Publish one gateway (or withdraw it when the hostname rules refuse it); every refusal ends up in its
    Ready condition and is raised as a :class:`Problem`. `allowed_images`: the cloudflared image repositories
    a gateway may run (setting ``cloudflared_images``)."""
    async with reported(status, ready=False):
        await _reconcile_gateway(api, cores, claims, body, status, events, rules, allow_adoption, allowed_images)


async def _reconcile_gateway(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                             status: StatusWriter, events: EventSink, rules: HostnameRules | None,
                             allow_adoption: bool, allowed_images: tuple[str, ...]) -> None:
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    try:  # a typo in an annotation changes nothing: what is published stays as it is
        d.check_annotations(meta.get("annotations"))
    except d.SpecError as exc:
        raise Problem(exc.reason, str(exc), None) from exc
    account = await load_account(api, cores, spec.get("configRef", ""), need_ready=True)
    claims = claims_for(claims, dry_run=account.core.dry_run)  # dry-run: the ledger is read, never written
    try:
        desired = d.desired_gateway(namespace, name, spec, account.domain, account.core.owner_id, allowed_images)
    except d.SpecError as exc:
        raise Problem(exc.reason, str(exc), None) from exc
    if rules is not None and not rules.allows(namespace, desired.fqdn):
        await withdraw(api, cores, claims, body, status, events)
        raise Problem(c.HOSTNAME_NOT_AUTHORIZED, rules.explain(namespace, desired.fqdn), None)
    check_marker(account.core.owner_id, desired.source)
    # One hostname, one holder across every front door: the first source whose claim is created keeps it.
    claim = await claiming.hold(claims, "hostname", desired.fqdn, desired.source)
    if not await kube.service_exists(api, namespace, service_name(spec)):
        raise Problem(c.SERVICE_NOT_FOUND, f"Service {namespace}/{service_name(spec)} does not exist",
                      MISSING_RETRY)
    asked = adoption.gateway_requests(body)
    take_over = adoption.permitted(asked, namespace, desired.fqdn, rules, allow_adoption)
    await publish(api, account, desired, body, status, events, claims, claim, adopt=take_over, asked=asked)


async def withdraw(
    api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any], status: StatusWriter,
    events: EventSink,
) -> None:
    """A gateway that may no longer publish (hostname rules): what it published goes as if it were deleted
    (cloudflared, CNAME, rule, Access, tunnel: everything its claims record), and its status forgets it.
    Nothing to do when it holds no claim and its status names nothing published."""
    meta = body["metadata"]
    if not await claims.list(source=gateway_source(meta["namespace"], meta["name"])) and not has_legacy_hints(status):
        return
    await unpublish_gateway(api, cores, claims, body, status, events)
    status.set(tunnelId=None, accessAppId=None, accessPolicyId=None, dnsRecordId=None, hostname=None, url=None)
    for type_ in (c.TUNNEL_READY, c.ACCESS_READY, c.DNS_READY, c.CONNECTOR_READY):
        status.condition(type_, "False", c.HOSTNAME_NOT_AUTHORIZED, "not published: outside the hostname rules")
    await status.flush()


def service_name(spec: Mapping[str, Any]) -> str:
    return str((spec.get("service") or {}).get("name", ""))


async def hinted(doing: str, action: Awaitable[T], hint: str | None) -> T:
    """:func:`step`, with `hint` added to the message of a Conflict (something not ours is in the way)."""
    try:
        return await action
    except CloudflareError as exc:
        problem = problem_from_cloudflare(exc, doing)
        if hint and isinstance(exc, Conflict):
            problem = Problem(problem.reason, f"{problem.message} ({hint})", problem.delay)
        raise problem from exc


async def _intend(claims: ClaimStore, claim: Claim, obj: str, **fields: Any) -> Claim:
    """Record the intent to create `obj` unless the claim records it already (an earlier attempt's intent
    keeps its time, and a recorded id stays the proof)."""
    entry = claim.entry(obj)
    if entry is not None and entry.get("since"):
        return claim
    return await claims.intend(claim, obj, **fields)


async def _route_to(claims: ClaimStore, claim: Claim, obj: str, **fields: Any) -> Claim:
    """Record where the rule (or record) of the claim's hostname goes, when the claim does not say so yet."""
    entry = claim.entry(obj) or {}
    if entry.get("since") and all(entry.get(key) == value for key, value in fields.items()):
        return claim
    return await claims.intend(claim, obj, **fields)


async def _complete(claims: ClaimStore, claim: Claim, obj: str, object_id: str, **fields: Any) -> Claim:
    """Record the id of `obj` (written only when it changed)."""
    entry = claim.entry(obj) or {}
    if entry.get("id") == object_id and all(entry.get(key) == value for key, value in fields.items()):
        return claim
    return await claims.complete(claim, obj, object_id, **fields)


async def publish(
    api: client.ApiClient,
    account: Account,
    desired: d.DesiredGateway,
    body: Mapping[str, Any],
    status: StatusWriter,
    events: EventSink,
    claims: ClaimStore,
    claim: Claim,
    *,
    adopt: bool = False,
    asked: bool = False,
) -> None:
    """Publish the gateway whose hostname claim is `claim`: every object recorded in a claim before it is created
    (and its id after), proven ours before it is changed."""
    core, account_id, source = account.core, account.account_id, desired.source
    if status.get("observedGeneration") != status.generation:
        status.set(ready=False)
        status.condition(c.READY, "False", c.PROGRESSING, f"applying generation {status.generation}")
    previous_app = status.get("accessAppId")
    previous_policy = status.get("accessPolicyId")

    # 0. Refuse a hostname held by a record that is not ours for this gateway before writing anything.
    # With adoption asked for and permitted, a record without any marker of ours is taken over instead.
    hint = adoption.NOT_PERMITTED if asked and not adopt else None  # said when something not ours is in the way
    try:
        await hinted(f"checking DNS for {desired.fqdn}", core.check_dns_name_available(
            account.zone_id, desired.fqdn, source, adopt=adopt), hint)
    except Problem:
        if claim.fresh and not claim.entries:
            await claims.release(claim)  # nothing was written for it
        raise

    # 1. An earlier version's objects (no ledger then): recorded only when proven (see the module docstring).
    if not claim.entries and has_legacy_hints(status):
        claim = await bootstrap(core, claims, account, desired, desired.fqdn, status) or claim
        old = status.get("hostname")
        if old and old != desired.fqdn:  # the spec changed too: its old hostname is torn down below
            await bootstrap(core, claims, account, desired, str(old), status)
    before = claim  # what the claim recorded before this attempt: which rule is ours

    # 2. Tunnel (the tunnel claim records it).
    try:
        tunnel_claim = await claiming.hold(claims, "tunnel", tunnel_key(account_id, desired.cloudflare_name), source)
    except Problem:
        if claim.fresh and not claim.entries:
            await claims.release(claim)
        raise
    tunnel_claim = await _intend(claims, tunnel_claim, claiming.TUNNEL, account=account_id,
                                 name=desired.cloudflare_name)
    tunnel = await step("ensuring the tunnel", core.ensure_tunnel(account_id, desired.cloudflare_name,
                                                                  tunnel_claim.recorded(claiming.TUNNEL)))
    await _complete(claims, tunnel_claim, claiming.TUNNEL, tunnel.id)
    if status.get("tunnelId") != tunnel.id:
        events.normal(c.TUNNEL_READY, f"tunnel {desired.cloudflare_name} ({tunnel.id})")
    status.set(tunnelId=tunnel.id)
    await status.flush()

    # 3. Access application and policy (before anything routes traffic to the hostname).
    if desired.public:
        status.condition(c.ACCESS_READY, "True", c.PUBLIC, "access.public is true: no Access application")
    else:
        if not account.otp_idp_id:
            raise Problem(c.CONFIG_NOT_READY, f"ChuteConfig {account.name!r} has no one-time PIN provider",
                          CONFIG_RETRY)
        claim = await _intend(claims, claim, claiming.ACCESS_APP, account=account_id, name=desired.cloudflare_name)
        allow = AppPolicySpec(name=d.POLICY_NAME, decision="allow", include=tuple(d.policy_include(desired)))
        app = await hinted("ensuring the Access application", core.ensure_access_app(account_id, AccessAppSpec(
            name=desired.cloudflare_name,
            domain=desired.fqdn,
            session_duration=desired.session_duration,
            allowed_idps=(account.otp_idp_id,),
            auto_redirect_to_identity=True,
            adopt=adopt,
        ), claim.recorded(claiming.ACCESS_APP), policy=allow), hint)  # a new app comes with its policy
        claim = await _complete(claims, claim, claiming.ACCESS_APP, app.id)
        if previous_app != app.id:
            events.normal(c.ACCESS_APPLICATION_READY,
                          f"Access application {desired.cloudflare_name} for {desired.fqdn}")
        status.set(accessAppId=app.id)
        await status.flush()
        policy = await step("ensuring the Access policy", core.ensure_app_policy(account_id, app.id, allow))
        claim = await _complete(claims, claim, claiming.ACCESS_POLICY, policy.id, app=app.id)
        if previous_policy != policy.id:
            events.normal(c.ACCESS_POLICY_READY, f"Access policy {d.POLICY_NAME} ({policy.id}) on {desired.fqdn}")
        status.set(accessPolicyId=policy.id)
        access_condition(status, events, desired, core.policy, app, policy)
        await status.flush()

    # 4. Tunnel rule (a rule there is ours only as the claim recorded it before this attempt), then 5. the CNAME.
    rule = IngressRule(hostname=desired.fqdn, service=desired.service_url)
    claim = await step("writing the tunnel ingress rule",
                       claiming.write_rule(core, claims, claim, before, account_id, tunnel.id, rule))
    route = f"{desired.fqdn} → {desired.service_url}"
    previous = c.find(status.get("conditions"), c.TUNNEL_READY)
    if previous is None or (previous.get("status"), previous.get("message")) != ("True", route):
        events.normal(c.TUNNEL_RULE_READY, f"tunnel ingress rule {route}")
    status.condition(c.TUNNEL_READY, "True", c.RECONCILED, route)
    claim = await _route_to(claims, claim, claiming.DNS, zone=account.zone_id, type="CNAME")
    target = cname_target(tunnel.id)
    cname = DesiredRecord(name=desired.fqdn, type="CNAME", content=target, proxied=True, source=source, adopt=adopt)
    record = await hinted(f"ensuring the CNAME for {desired.fqdn}", core.ensure_dns_record(account.zone_id, cname),
                          hint)
    if status.get("dnsRecordId") != record.id:
        events.normal(c.DNS_RECORD_READY, f"proxied CNAME {desired.fqdn} → {target}")
    status.set(dnsRecordId=record.id, hostname=desired.fqdn, url=desired.url)
    status.condition(c.DNS_READY, "True", c.RECONCILED, f"CNAME {desired.fqdn}")
    await status.flush()
    HOSTNAMES.publish(FRONT_DOOR, source, [desired.fqdn])

    # Access switched off (public): the application the claim records goes, after routing is in place.
    if desired.public:
        claim = await drop_access(core, claims, claim, account_id, events)
        status.set(accessAppId=None, accessPolicyId=None)

    # 6. The tunnel token Secret and the cloudflared Deployment, owned by the gateway. An object of either name
    # that is not labelled as this gateway's (of this installation) is never written: ObjectNotOurs.
    token = await step("reading the tunnel token", core.get_tunnel_token(account_id, tunnel.id))
    secret = d.secret_manifest(desired, token)
    deployment = d.deployment_manifest(desired)
    for manifest in (secret, deployment):
        adopt_manifest(manifest, body)
    try:
        await kube.apply_secret(api, secret, desired.owned_by)
        deployment_status = await kube.apply_deployment(api, deployment, desired.owned_by)
    except kube.NotOurs as exc:
        status.condition(c.CONNECTOR_READY, "False", c.OBJECT_NOT_OURS, str(exc))
        raise Problem(c.OBJECT_NOT_OURS, str(exc), CONFLICT_RETRY) from None
    connector_condition(status, desired.replicas, deployment_status)

    # 7. Hostnames this gateway published before (spec change): routing first, then their Access application.
    # A failure keeps that claim (and what it records) for the next attempt.
    for old in await claims.list(kind="hostname", source=source):
        if old.key != desired.fqdn:
            await tear_down(core, claims, old, account, events, change=True)
    ready_condition(status)


def adopt_manifest(manifest: dict[str, Any], owner: Mapping[str, Any]) -> None:
    """Make the gateway the controller owner of `manifest` (garbage-collected with it)."""
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


def access_condition(status: StatusWriter, events: EventSink, desired: d.DesiredGateway, write_policy: str,
                     app: AccessApp, policy: Policy) -> None:
    """AccessReady as Cloudflare has it. Under create-only, what exists is not updated (but access is still
    revoked: see the core's gate): when the live application or policy differs from the spec, AccessReady is
    False (``PolicyForbidsUpdate``, with a Warning Event once) and says what is live, not what the spec asks."""
    differences = d.access_differences(desired, app.session_duration, policy.include)
    if not differences or write_policy != "create-only":
        status.condition(c.ACCESS_READY, "True", c.RECONCILED, d.allowed_counts(policy.include))
        return
    message = f"the write policy create-only forbids updating the Access application and policy: live: {differences}"
    before = c.find(status.get("conditions"), c.ACCESS_READY)
    if before is None or (before.get("reason"), before.get("message")) != (c.POLICY_FORBIDS_UPDATE, message):
        events.warning(c.POLICY_FORBIDS_UPDATE, message)
    status.condition(c.ACCESS_READY, "False", c.POLICY_FORBIDS_UPDATE, message)


def ready_condition(status: StatusWriter) -> None:
    steps = (c.TUNNEL_READY, c.ACCESS_READY, c.DNS_READY, c.CONNECTOR_READY)
    waiting = [t for t in steps if not status.is_true(t)]
    ready = not waiting
    status.set(ready=ready, observedGeneration=status.generation)
    forbidden = c.find(status.get("conditions"), c.ACCESS_READY) if c.ACCESS_READY in waiting else None
    if ready:
        status.condition(c.READY, "True", c.RECONCILED, f"published at {status.get('url')}")
    elif forbidden is not None and forbidden.get("reason") == c.POLICY_FORBIDS_UPDATE:
        status.condition(c.READY, "False", c.POLICY_FORBIDS_UPDATE, str(forbidden.get("message") or ""))
    else:
        status.condition(c.READY, "False", c.PENDING, "waiting for " + ", ".join(waiting))


# --- the ledger: bootstrap, Access switched off, teardown ---------------------------------------------


async def _legacy_app(core: CloudflareCore, account_id: str, hostname: str, name: str,
                      hint: str | None) -> AccessApp | None:
    """The Access application an earlier version made for `hostname`: the one the status names (a hint), or else
    the one found under the domain, only when it is exactly the app this gateway would create."""
    found = await core.get_access_app(account_id, hint) if hint else None
    if found is None or found.domain != hostname or found.name != name:
        found = await core.find_access_app(account_id, hostname, name)
    return found if found is not None and found.domain == hostname and found.name == name else None


async def bootstrap(core: CloudflareCore, claims: ClaimStore, account: Account, names: d.DesiredGateway,
                    hostname: str, status: StatusWriter) -> Claim | None:
    """Record in the ledger what an earlier version (or the seed) published for the gateway at `hostname`, proven
    by the DNS record there marked for the gateway: its CNAME target names the tunnel, recorded when it is named
    exactly as this gateway's; the Access application exactly this gateway's for that domain; the rule (an intent
    naming the service the gateway routes to: only a rule routing there is taken for ours; none when that service
    is not known) and the record. Nothing is recorded (None) without that record, or when another source holds
    the hostname."""
    source, owner = names.source, core.owner_id
    records = await step(f"checking DNS for {hostname}", core.dns_records_named(account.zone_id, hostname))
    cname = next((r for r in records if r.type == "CNAME" and marks(r.comment, owner, source)), None)
    if cname is None:
        return None
    try:
        claim = await claims.acquire("hostname", hostname, source)
    except HeldElsewhere:
        return None
    if claim.entries:
        return claim
    account_id, tunnel_name = account.account_id, names.cloudflare_name
    tunnel_id = tunnel_of(cname.content)
    tunnel = await step("reading the tunnel", core.get_tunnel(account_id, tunnel_id)) if tunnel_id else None
    since = utc_now()
    if tunnel is not None and not tunnel.deleted and tunnel.name == tunnel_name:
        try:
            tunnel_claim = await claims.acquire("tunnel", tunnel_key(account_id, tunnel_name), source)
        except HeldElsewhere:
            tunnel_claim = None
        if tunnel_claim is not None and not tunnel_claim.entries:
            await claims.complete(tunnel_claim, claiming.TUNNEL, tunnel.id, since=since, account=account_id,
                                  name=tunnel_name)
        if tunnel_claim is not None and names.service_url:  # a rule there is ours when it routes where we would
            claim = await claims.intend(claim, claiming.TUNNEL_RULE, tunnel=tunnel.id, account=account_id,
                                        service=names.service_url)
    hint = status.get("accessAppId") if status.get("hostname") in (None, hostname) else None
    app = await step("reading the Access application", _legacy_app(core, account_id, hostname, tunnel_name,
                                                                    str(hint) if hint else None))
    if app is not None:
        claim = await claims.complete(claim, claiming.ACCESS_APP, app.id, since=since, account=account_id,
                                      name=tunnel_name)
        policy = await step("reading the Access policy", core.find_app_policy(account_id, app.id, d.POLICY_NAME))
        if policy is not None:
            claim = await claims.complete(claim, claiming.ACCESS_POLICY, policy.id, app=app.id)
    claim = await claims.intend(claim, claiming.DNS, zone=account.zone_id, type="CNAME")
    logger.info("Recorded what an earlier version published for %s at %s: %s", source, hostname,
                ", ".join(sorted(claim.entries)))
    return claim


async def drop_access(core: CloudflareCore, claims: ClaimStore, claim: Claim, account_id: str,
                      events: EventSink) -> Claim:
    """Access switched off: delete the application the hostname claim records (its policy goes with it; an app
    that turns out not to be ours stays, with a Warning), then forget both entries."""
    if claim.entry(claiming.ACCESS_APP) is None:
        return claim
    doing = "removing the old Access application"
    removal = await step(doing, claiming.delete_recorded(core, claim, claiming.ACCESS_APP, account_id=account_id))
    if removal.refused is not None:
        events.warning(c.HOSTNAME_CONFLICT, f"{doing}: left in place, not ours ({removal.refused.message})")
    elif removal.removed:
        _policy_removed(events, claim, removal.id)
        events.normal(c.ACCESS_APPLICATION_REMOVED, f"Access application {removal.id} removed")
    return await claiming.forget_access(core, claims, claim)  # kept with the app by the policy or dry-run


def _policy_removed(events: EventSink, claim: Claim, app_id: str) -> None:
    """The app-scoped policy the claim records went with its application."""
    policy = claim.entry(claiming.ACCESS_POLICY) or {}
    if policy.get("id") and str(policy.get("app") or app_id) == app_id:
        events.normal(c.ACCESS_POLICY_REMOVED, f"Access policy {policy['id']} removed")


async def tear_down(core: CloudflareCore, claims: ClaimStore, claim: Claim, account: Account, events: EventSink,
                    *, change: bool = False) -> claiming.Teardown:
    """Tear down one claim of the gateway (:mod:`chutes.frontdoors.claiming`) and say so in Events: what was
    removed (Normal), what stays because it is not ours (Warning). `change`: a hostname the gateway moved away
    from. A Cloudflare failure raises :class:`Problem` (the claim keeps what is left)."""
    app_id = str((claim.entry(claiming.ACCESS_APP) or {}).get("id") or "")
    if claim.kind == "tunnel":
        done = await claiming.tear_down_tunnel(core, claims, claim, account_id=account.account_id, connected_ok=True)
    else:
        done = await claiming.tear_down_hostname(core, claims, claim, account_id=account.account_id,
                                                 zone_id=account.zone_id)
    routing = False
    for obj, message in zip(done.removed_objects, done.removed, strict=True):
        if obj in (claiming.TUNNEL_RULE, claiming.DNS) and change:
            routing = True
        elif obj == claiming.TUNNEL_RULE:
            events.normal(c.TUNNEL_RULE_REMOVED, message)
        elif obj == claiming.DNS:
            events.normal(c.DNS_RECORD_REMOVED, message)
        elif obj == claiming.ACCESS_APP:
            if not change:
                _policy_removed(events, claim, app_id)
            events.normal(c.ACCESS_APPLICATION_REMOVED, message)
        elif obj == claiming.TUNNEL:
            events.normal(c.TUNNEL_REMOVED, message)
        elif obj == claiming.SERVICE_TOKEN:  # never recorded by a gateway; said all the same
            events.normal(c.SERVICE_TOKEN_REMOVED, message)
    if routing:
        events.normal(c.HOSTNAME_REMOVED, f"{claim.key} is no longer published")
    for item in done.left:
        events.warning(c.HOSTNAME_CONFLICT, f"left in place, not ours: {item}")
    return done


# --- deletion ----------------------------------------------------------------------------------------


async def unpublish_gateway(
    api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any], status: StatusWriter,
    events: EventSink,
) -> None:
    """Tear down in reverse order, from the gateway's claims only (never from the ids in its status): cloudflared,
    then each hostname claim (rule, CNAME, Access), then the tunnel claim. What turns out not to be ours stays,
    with a Warning. Without credentials nothing can be cleaned: the finalizer stays."""
    meta, spec = body["metadata"], body.get("spec") or {}
    namespace, name = meta["namespace"], meta["name"]
    names = d.DesiredGateway(namespace=namespace, name=name, fqdn=status.get("hostname") or "", service_url="",
                          public=True, emails=(), domains=(), session_duration="24h", replicas=0, image="",
                          owner_id=cores.owner_id)
    # cloudflared and its token: only when labelled as this gateway's (a foreign object of the name stays).
    for kind, object_name in (("Deployment", names.deployment_name), ("Secret", names.secret_name)):
        try:
            await kube.delete_namespaced(api, kind, namespace, object_name, names.owned_by, meta.get("uid"))
        except kube.NotOurs as exc:
            events.warning(c.OBJECT_NOT_OURS, f"left in place: {exc}")
    source = names.source
    held = await claims.list(source=source)
    if not held and not has_legacy_hints(status):
        HOSTNAMES.forget(FRONT_DOOR, source)
        return  # it never published anything
    try:
        account = await load_account(api, cores, spec.get("configRef", ""), need_ready=False)
    except Problem as problem:
        raise Problem(
            c.DELETING,
            f"cannot remove the Cloudflare objects: {problem.message}. Restore it, or remove the finalizer "
            f"{d.GROUP}/cleanup to abandon them.",
            problem.delay or MISSING_RETRY,
        ) from None
    names = dataclasses.replace(names, owner_id=account.core.owner_id)
    claims = claims_for(claims, dry_run=account.core.dry_run)  # dry-run: the ledger is read, never written
    try:
        if not held and status.get("hostname"):  # published by an earlier version: recorded first when proven
            await bootstrap(account.core, claims, account, names, str(status.get("hostname")), status)
            held = await claims.list(source=source)
        for claim in sorted(held, key=lambda found: found.kind != "hostname"):  # hostnames, then the tunnel
            await tear_down(account.core, claims, claim, account, events)
    except ClaimLost as lost:
        raise Problem(c.CLOUDFLARE_UNAVAILABLE, f"the ledger of claims changed meanwhile: {lost}",
                      LOST_RETRY) from None
    except Problem as problem:
        if problem.reason != c.CREDENTIALS_INVALID:
            raise  # passing (the retry resumes) or said per object (left in place, with a Warning)
        raise Problem(problem.reason, f"{problem.message}. Fix the API token of ChuteConfig "
                      f"{spec.get('configRef', '')!r} (the Secret its apiTokenSecretRef names), or remove the "
                      f"finalizer {d.GROUP}/cleanup to abandon the Cloudflare objects", problem.delay) from None
    HOSTNAMES.forget(FRONT_DOOR, source)
    fqdn = next((claim.key for claim in held if claim.kind == "hostname"), None) or status.get("hostname")
    events.normal(c.UNPUBLISHED, f"{fqdn or name}: Cloudflare objects removed")
