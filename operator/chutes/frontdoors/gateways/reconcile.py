"""Reconcile ChuteConfigs and ChuteGateways. A gateway goes through the front-door shape (``frontdoors/README.md``):
:mod:`.read` -> :mod:`.decide` (pure) -> :func:`chutes.frontdoors.changes.admit` (the write policy and dry-run, on
the set as a whole) -> :mod:`.apply` (each change through the core, said at once in status and Events) -> report.

Ownership is recorded, never inferred (issue 11): a gateway's *hostname claim* (key: the FQDN; one holder across
every front door until its teardown is complete) records its Access application and policy, its tunnel rule and
the CNAME's zone; its *tunnel claim* (``<account>/chute-<ns>-<name>``) its tunnel (:mod:`chutes.frontdoors.claiming`).
Deletion, withdrawal (hostname rules) and a hostname change tear down from the claims, never from the ids in status
(which anyone with write access to ``chutegateways/status`` can change), in the reverse order: cloudflared, each
hostname's rule and CNAME before its Access application, the tunnel last; a claim is released only once what it
records is gone. Deletion and withdrawal go through the same shape (:func:`unpublish_gateway`): :func:`read.leaving`
-> :func:`decide_leaving` (pure) -> admit (a policy that never deletes, or dry-run, holds every Cloudflare delete)
-> :class:`LeavingExecutor`; an earlier hostname is one change of the reconcile, torn down object by object in it.
Under dry-run the ledger is read, never written (a dry-run gateway holds no hostname), the change set is logged
(``dry-run: <source>: + create tunnel chute-x``), and its first create held stops it (``DryRun``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.authorization import HostnameRules
from chutes.claims import ClaimLost, ClaimStore, claims_for
from chutes.cores import CorePool
from chutes.frontdoors import changes
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.gateways import read
from chutes.frontdoors.gateways.apply import Executor, LeavingExecutor
from chutes.frontdoors.gateways.decide import check, decide, decide_leaving
from chutes.frontdoors.gateways.read import gather, has_legacy_hints, load_account, read_token
from chutes.frontdoors.gateways.status import StatusWriter, ready_condition
from chutes.frontdoors.problems import EventSink, Problem, refused, step
from chutes.frontdoors.retries import LOST_RETRY
from chutes.frontdoors.specs import is_dns_name
from chutes.frontdoors.status_writer import reported
from chutes.observability.metrics import HOSTNAMES

logger = logging.getLogger(__name__)


# --- ChuteConfig -----------------------------------------------------------------------------------


async def reconcile_config(api: client.ApiClient, cores: CorePool, spec: Mapping[str, Any], status: StatusWriter,
                           events: EventSink | None = None) -> None:
    async with reported(status, ready=False):  # every refusal in Ready; the credentials' in CredentialsReady too
        try:
            domain = str(spec.get("domain", "")).lower()
            if not is_dns_name(domain):  # the CRD's pattern refuses it; an unvalidated object may still come
                raise Problem(c.INVALID_SPEC, f"domain {domain!r} is not a DNS name such as example.com", None)
            token = await read_token(api, spec)
            core = cores.core_for(token)
            account_id, zone_id = spec.get("accountId", ""), spec.get("zoneId", "")
            zone = await step("checking the account and zone", core.verify_access(account_id, zone_id))
            if not (domain == zone.name or domain.endswith("." + zone.name)):
                raise Problem(c.INVALID_SPEC, f"domain {domain!r} is not inside zone {zone.name!r}", None)
            status.condition(c.CREDENTIALS_READY, "True", c.RECONCILED, f"the token reaches account and zone "
                             f"{zone.name}")
            idp = await step("ensuring the one-time-PIN identity provider", core.ensure_otp_idp(account_id))
        except Problem as problem:
            if problem.reason in (c.SECRET_NOT_FOUND, c.SECRET_KEY_MISSING, c.CREDENTIALS_INVALID):
                status.condition(c.CREDENTIALS_READY, "False", problem.reason, problem.message)
            raise
        if events is not None and status.get("otpIdentityProviderId") != idp.id:
            events.normal(c.IDENTITY_PROVIDER_READY, f"one-time PIN identity provider {idp.id}")
        status.set(otpIdentityProviderId=idp.id, ready=True, observedGeneration=status.generation)
        status.condition(c.IDENTITY_PROVIDER_READY, "True", c.RECONCILED, f"one-time PIN provider {idp.id}")
        status.condition(c.READY, "True", c.RECONCILED, "credentials verified, one-time PIN ready")


async def gateways_using(api: client.ApiClient, config_name: str) -> list[str]:
    gateways = await kube.list_custom(api, d.GROUP, d.VERSION, d.GATEWAY_PLURAL)
    return sorted(f"{g['metadata']['namespace']}/{g['metadata']['name']}" for g in gateways
                  if (g.get("spec") or {}).get("configRef") == config_name)


# --- ChuteGateway ----------------------------------------------------------------------------------


async def reconcile_gateway(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                            status: StatusWriter, events: EventSink, rules: HostnameRules | None = None,
                            allow_adoption: bool = False,
                            allowed_images: tuple[str, ...] = d.DEFAULT_ALLOWED_IMAGES) -> None:
    """Publish one gateway (or withdraw it when the hostname rules refuse it); every refusal ends up in its
    Ready condition and is raised as a :class:`Problem`. `allowed_images`: the cloudflared image repositories
    a gateway may run (setting ``cloudflared_images``)."""
    async with reported(status, ready=False):
        with refused():  # a typo in an annotation changes nothing: what is published stays as it is
            d.check_annotations(body["metadata"].get("annotations"))
        account = await load_account(api, cores, (body.get("spec") or {}).get("configRef", ""), need_ready=True)
        core = account.core
        claims = claims_for(claims, dry_run=core.dry_run)  # dry-run: the ledger is read, never written
        desired = check(body, account.domain, core.owner_id, rules, allowed_images)
        if isinstance(desired, tuple):
            if desired[0] == c.HOSTNAME_NOT_AUTHORIZED:  # what it published goes
                await withdraw(api, cores, claims, body, status, events)
            raise Problem(*desired, None)
        inputs = await gather(api, account, desired, body, status, claims, rules, allow_adoption)
        if status.get("observedGeneration") != status.generation:
            status.set(ready=False)
            status.condition(c.READY, "False", c.PROGRESSING, f"applying generation {status.generation}")
        decision = decide(desired, inputs.claim.entries, inputs.tunnel_claim.entries, [o.key for o in inputs.old])
        admitted = changes.admit(decision.changes, core.policy, dry_run=core.dry_run)
        for line in admitted.lines() if core.dry_run else ():
            logger.info("dry-run: %s: %s", desired.source, line)
        await changes.apply(admitted, Executor(api, inputs, body, status, events, claims), logger)
        stopped = next((ch for ch, why in admitted.held if why == "dry-run" and ch.action == "create"), None)
        if stopped is not None:  # "dry-run: would create tunnel chute-x": nothing to retry until a real run
            message = "dry-run: would " + changes.describe(stopped).split(" ", 1)[1]
            logger.info("%s", message)
            raise Problem(c.DRY_RUN, message, None)
        ready_condition(status)


async def withdraw(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                   status: StatusWriter, events: EventSink) -> None:
    """A gateway that may no longer publish (hostname rules): what it published goes as if it were deleted
    (cloudflared, CNAME, rule, Access, tunnel: everything its claims record), and its status forgets it.
    Nothing to do when it holds no claim and its status names nothing published."""
    meta = body["metadata"]
    source = f"{d.GATEWAY_KIND}/{meta['namespace']}/{meta['name']}"
    if not await claims.list(source=source) and not has_legacy_hints(status):
        return
    await unpublish_gateway(api, cores, claims, body, status, events)
    status.set(tunnelId=None, accessAppId=None, accessPolicyId=None, dnsRecordId=None, hostname=None, url=None)
    for type_ in (c.TUNNEL_READY, c.ACCESS_READY, c.DNS_READY, c.CONNECTOR_READY):
        status.condition(type_, "False", c.HOSTNAME_NOT_AUTHORIZED, "not published: outside the hostname rules")
    await status.flush()


# --- deletion ----------------------------------------------------------------------------------------


async def unpublish_gateway(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                            status: StatusWriter, events: EventSink) -> None:
    """Take the gateway down, from its claims only (never from the ids in its status): read what they record,
    decide the deletes in order (:func:`decide_leaving`: cloudflared, each hostname's rule and CNAME before its
    Access application, the tunnel last), admit them (the write policy and dry-run), make them, report. What turns
    out not to be ours stays, with a Warning. Without credentials nothing can be cleaned: the finalizer stays."""
    leaving = await read.leaving(api, cores, claims, body, status)
    problem = leaving.problem
    decision = decide_leaving(leaving.names, leaving.held, (problem.reason, problem.message) if problem else None)
    core = leaving.account.core if leaving.account is not None else None
    admitted = changes.admit(decision.changes, core.policy if core else "sync", dry_run=bool(core and core.dry_run))
    for line in admitted.lines() if core is not None and core.dry_run else ():
        logger.info("dry-run: %s: %s", leaving.names.source, line)
    config = str((body.get("spec") or {}).get("configRef", ""))
    try:
        await changes.apply(admitted, LeavingExecutor(api, leaving, body, events), logger)
    except ClaimLost as lost:
        raise Problem(c.CLOUDFLARE_UNAVAILABLE, f"the ledger of claims changed meanwhile: {lost}",
                      LOST_RETRY) from None
    except Problem as failed:
        if failed.reason != c.CREDENTIALS_INVALID:
            raise  # passing (the retry resumes) or said per object (left in place, with a Warning)
        raise _credentials(failed, config) from None
    if problem is not None:
        raise _credentials(problem, config) if problem.reason == c.CREDENTIALS_INVALID else problem
    HOSTNAMES.forget(d.FRONT_DOOR, leaving.names.source)
    if not leaving.published:
        return
    fqdn = next((claim.key for claim in leaving.held if claim.kind == "hostname"), None) or status.get("hostname")
    events.normal(c.UNPUBLISHED, f"{fqdn or leaving.names.name}: Cloudflare objects removed")


def _credentials(problem: Problem, config: str) -> Problem:
    """A deletion's credentials problem, naming what to fix (or how to abandon the objects)."""
    return Problem(problem.reason, f"{problem.message}. Fix the API token of ChuteConfig {config!r} (the Secret its "
                   f"apiTokenSecretRef names), or remove the finalizer {d.GROUP}/cleanup to abandon the Cloudflare "
                   "objects", problem.delay)
