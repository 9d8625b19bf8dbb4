"""The ChuteGateway door's *read* step. A ChuteConfig gives its gateways an :class:`Account` (its token read from its
Secret, checked before any client holds it). :func:`gather` holds a gateway's hostname and tunnel claims (under
dry-run the ledger is read, never written), checks through the core that no record it may not take holds the
hostname (one coalesced listing of the zone), records what an earlier version published (:func:`bootstrap`) and
lists the claims of its earlier hostnames. The live state of its objects is the core's to compare when *apply*
ensures them. :func:`leaving` gathers what a deletion or withdrawal stands on: the claims the gateway holds and what
they record (what an earlier version published recorded first, when proven), and its config's account.

Bootstrap (upgrade from a version without a ledger, or from the seed): an object is recorded only if (a) it exists,
(b) its name and natural key are exactly what this gateway would create (tunnel and Access application
``chute-<ns>-<name>``, owner-qualified; the application's domain = the FQDN), and (c) the DNS record at the FQDN is
marked for this gateway: its CNAME target proves the tunnel id. Anything else is foreign.
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
from chutes.cloudflare_core import AccessApp, CloudflareCore, CloudflareError, Conflict, marks, token_defect, tunnel_of
from chutes.cores import CorePool
from chutes.frontdoors import adoption, claiming
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.problems import Problem, problem_from_cloudflare, step
from chutes.frontdoors.retries import CONFIG_RETRY, CREDENTIALS_RETRY, LOST_RETRY, MISSING_RETRY
from chutes.frontdoors.status_writer import StatusWriter

T = TypeVar("T")

logger = logging.getLogger(__name__)

LEGACY_HINTS = ("tunnelId", "accessAppId", "accessPolicyId", "dnsRecordId", "hostname")


@dataclass(frozen=True)
class Account:
    """What a ChuteConfig provides to its gateways."""

    name: str
    account_id: str
    zone_id: str
    domain: str
    otp_idp_id: str | None
    core: CloudflareCore


@dataclass(frozen=True)
class Inputs:
    """What a gateway's decision stands on: its desired state, its config's account, its hostname claim (`claim`:
    as held now, the proof of which rule there is ours), its tunnel claim, the claims of hostnames it published
    before (`old`), whether it takes over a record or app not ours (`adopt`: asked and permitted), and what to add
    to a conflict's message (`hint`: adoption asked for but not permitted)."""

    desired: d.DesiredGateway
    account: Account
    claim: Claim
    tunnel_claim: Claim
    old: tuple[Claim, ...] = ()
    adopt: bool = False
    hint: str | None = None


@dataclass(frozen=True)
class Leaving:
    """What a gateway's deletion stands on: its names, the claims it holds (`held`), whether it ever published
    anything (claims, or what an earlier version's status names), its config's account and the ledger as that
    account's core may use it (read-only under dry-run; None when it published nothing or the account is out of
    reach), and the problem that keeps its Cloudflare objects out of reach (the account, or recording what an earlier
    version published)."""

    names: d.DesiredGateway
    held: tuple[Claim, ...] = ()
    published: bool = False
    account: Account | None = None
    claims: ClaimStore | None = None
    problem: Problem | None = None


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
    return Account(config_name, spec.get("accountId", ""), spec.get("zoneId", ""), str(spec.get("domain", "")).lower(),
                   status.get("otpIdentityProviderId"), cores.core_for(token))


def has_legacy_hints(status: StatusWriter) -> bool:
    """Whether the status names something an earlier version (or the seed) may have published."""
    return any(status.get(key) for key in LEGACY_HINTS)


async def adoption_permitted(api: client.ApiClient, body: Mapping[str, Any], rules: HostnameRules | None,
                             allow_all: bool) -> bool:
    """Whether the gateway asks for adoption and the operator permits it for its hostname (setting
    ``allow_adoption``, or a hostname rule with ``adopt: true``)."""
    if not adoption.gateway_requests(body) or allow_all or rules is None:
        return adoption.gateway_requests(body) and allow_all
    meta, spec = body["metadata"], body.get("spec") or {}
    config = await kube.get_custom(api, d.GROUP, d.VERSION, d.CONFIG_PLURAL, str(spec.get("configRef") or ""))
    domain = str(((config or {}).get("spec") or {}).get("domain") or "").lower()
    try:
        fqdn = d.resolve_hostname(str(spec.get("hostname") or ""), domain)
    except d.SpecError:
        return False
    return adoption.permitted(True, str(meta.get("namespace") or ""), fqdn, rules, allow_all)


async def gather(api: client.ApiClient, account: Account, desired: d.DesiredGateway, body: Mapping[str, Any],
                 status: StatusWriter, claims: ClaimStore, rules: HostnameRules | None,
                 allow_adoption: bool) -> Inputs:
    """The inputs of a gateway that may publish its hostname (see the module docstring). A refusal on the way
    (the hostname or tunnel held by another source, its Service missing, a record not ours at the hostname)
    is raised as a :class:`Problem`; a hostname claim acquired for it and recording nothing is released."""
    core, source = account.core, desired.source
    claim = await claiming.hold(claims, "hostname", desired.fqdn, source)  # one holder across every door
    service = str(((body.get("spec") or {}).get("service") or {}).get("name", ""))
    if not await kube.service_exists(api, desired.namespace, service):
        raise Problem(c.SERVICE_NOT_FOUND, f"Service {desired.namespace}/{service} does not exist", MISSING_RETRY)
    asked = adoption.gateway_requests(body)
    adopt = adoption.permitted(asked, desired.namespace, desired.fqdn, rules, allow_adoption)
    hint = adoption.NOT_PERMITTED if asked and not adopt else None  # said when something not ours is in the way
    # A hostname held by a record that is not ours (without adoption asked and permitted): nothing written.
    await _releasing(claims, claim, hinted(f"checking DNS for {desired.fqdn}", core.check_dns_name_available(
        account.zone_id, desired.fqdn, source, adopt=adopt), hint))
    if not claim.entries and has_legacy_hints(status):  # an earlier version's objects, when proven
        claim = await bootstrap(core, claims, account, desired, desired.fqdn, status) or claim
        old = status.get("hostname")
        if old and old != desired.fqdn:  # the spec changed too: its old hostname is torn down by apply
            await bootstrap(core, claims, account, desired, str(old), status)
    tunnel_claim = await _releasing(claims, claim, claiming.hold(
        claims, "tunnel", claiming.tunnel_key(account.account_id, desired.cloudflare_name), source))
    old_claims = tuple(old for old in await claims.list(kind="hostname", source=source) if old.key != desired.fqdn)
    return Inputs(desired, account, claim, tunnel_claim, old_claims, adopt, hint)


async def _releasing(claims: ClaimStore, claim: Claim, action: Awaitable[T]) -> T:
    """`action`; its refusal releases `claim` when acquired by this attempt and recording nothing (nothing was
    written for it)."""
    try:
        return await action
    except Problem:
        if claim.fresh and not claim.entries:
            await claims.release(claim)
        raise


async def hinted(doing: str, action: Awaitable[T], hint: str | None) -> T:
    """:func:`step`, with `hint` added to the message of a Conflict (something not ours is in the way)."""
    try:
        return await action
    except CloudflareError as exc:
        problem = problem_from_cloudflare(exc, doing)
        if hint and isinstance(exc, Conflict):
            problem = Problem(problem.reason, f"{problem.message} ({hint})", problem.delay)
        raise problem from exc


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
            tunnel_claim = await claims.acquire("tunnel", claiming.tunnel_key(account_id, tunnel_name), source)
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


async def leaving(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                  status: StatusWriter) -> Leaving:
    """The inputs of a gateway's deletion or withdrawal, from its claims only (never from the ids in its status,
    hints for :func:`bootstrap` at most); a problem on the way is in :attr:`Leaving.problem`, not raised."""
    meta, spec = body["metadata"], body.get("spec") or {}
    names = d.DesiredGateway(meta["namespace"], meta["name"], status.get("hostname") or "", "", True, (), (), "24h", 0,
                             "", owner_id=cores.owner_id)
    held = tuple(await claims.list(source=names.source))
    if not held and not has_legacy_hints(status):
        return Leaving(names)  # it never published anything
    config = str(spec.get("configRef", ""))
    try:
        account = await load_account(api, cores, config, need_ready=False)
    except Problem as problem:
        return Leaving(names, held, True, problem=Problem(
            c.DELETING, f"cannot remove the Cloudflare objects: {problem.message}. Restore it, or remove the "
            f"finalizer {d.GROUP}/cleanup to abandon them.", problem.delay or MISSING_RETRY))
    names = dataclasses.replace(names, owner_id=account.core.owner_id)
    claims = claims_for(claims, dry_run=account.core.dry_run)  # dry-run: the ledger is read, never written
    if held or not status.get("hostname"):
        return Leaving(names, held, True, account, claims)
    try:  # published by an earlier version: recorded first when proven
        await bootstrap(account.core, claims, account, names, str(status.get("hostname")), status)
        held = tuple(await claims.list(source=names.source))
    except ClaimLost as lost:
        return Leaving(names, held, True, account, claims, Problem(
            c.CLOUDFLARE_UNAVAILABLE, f"the ledger of claims changed meanwhile: {lost}", LOST_RETRY))
    except Problem as problem:
        return Leaving(names, held, True, account, claims, problem)
    return Leaving(names, held, True, account, claims)
