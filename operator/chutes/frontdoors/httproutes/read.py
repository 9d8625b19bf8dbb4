"""The HTTPRoute door's *read* step: :func:`settings` (tenant, templates, merged settings); once the claim is held,
:func:`gather`: the zone, the DNS-only address, the name checked in the zone (a first publish: one name-filtered
listing), the reusable policies (a refusal so far releases a claim recording nothing); then what an earlier version
(or the seed) published here, recorded in the claim, and (after a change, never in the steady state) the claims to
tear down first: the route's other hostnames, or this one with its old tenant's token.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chutes import conditions as c
from chutes.claims import Claim, ClaimStore
from chutes.cloudflare_core import CloudflareCore, CloudflareError, Conflict, DesiredRecord, InvalidInput
from chutes.frontdoors import adoption
from chutes.frontdoors.claiming import DNS
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import ledger, references
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.httproutes.decide import Inputs, moved
from chutes.frontdoors.httproutes.merge import MergeError, NamedSpec, RouteSettings, annotation_hash, merge
from chutes.frontdoors.problems import EventSink, Problem, problem_from_cloudflare, step
from chutes.frontdoors.retries import FOREIGN_RETRY

__all__ = ["Gathered", "check_name", "gather", "settings", "tunnel_claims"]


@dataclass(frozen=True)
class Gathered:
    """The decision's inputs and the core and ledger *apply* makes them with (`old_store`: where the claims to tear
    down first live: core, ledger, account)."""

    inputs: Inputs
    core: CloudflareCore
    claims: ClaimStore
    old_store: tuple[CloudflareCore, ClaimStore, str] | None = None


async def settings(ctx: Context, route: Mapping[str, Any]) -> tuple[RouteSettings, d.Tenant, str]:
    """The route's settings, its tenant and the seed's annotation hash."""
    meta = route["metadata"]
    namespace, annotations = meta["namespace"], dict(meta.get("annotations") or {})
    tenant_name = annotations.get(a.TENANT, "").strip()
    if not tenant_name:
        raise Problem(c.INVALID_SPEC, f"{a.TENANT} is required", None)
    tenant = await references.find_tenant(ctx, tenant_name, namespace)
    template_name = annotations.get(a.TEMPLATE, "").strip()
    template = await references.find_template(ctx, template_name, namespace, required=True) if template_name else None
    base_name = a.base_template_name(tenant_name)
    base = await references.find_template(ctx, base_name, namespace, required=False)
    template_spec = (template or {}).get("spec") or None
    base_spec = (base or {}).get("spec") or None
    try:
        merged = merge(annotations, route, NamedSpec(template_name, template_spec) if template_spec else None,
                       NamedSpec(base_name, base_spec) if base_spec else None)
    except MergeError as exc:
        raise Problem(c.INVALID_SPEC, str(exc), None) from None
    return merged, tenant, annotation_hash(annotations, template_spec, base_spec)


async def tunnel_claims(claims: ClaimStore, settings: RouteSettings, tenant: d.Tenant) -> list[Claim]:
    """Every tunnel claim, listed only when the ``tunnelId`` annotation names a tunnel the tenant allows besides its
    own (:func:`decide.check`)."""
    tunnel = settings.tunnel_id
    if tunnel is None or tunnel == tenant.tunnel_id or not tenant.allows_tunnel(tunnel):
        return []
    return list(await claims.list(kind="tunnel"))


async def check_name(core: CloudflareCore, zone_id: str, record: DesiredRecord, adopt_ids: tuple[str, ...], *,
                     asked: bool) -> None:
    """Refuse when a record not the route's holds the name (one its state lists, seed-made, is adopted first; with
    `record.adopt`, an unmarked one is none); `asked`: adoption asked for (the refusal says it is not permitted)."""
    try:
        await core.check_dns_name_available(zone_id, record.name, record.source, record.type, adopt=record.adopt,
                                            proven_ids=adopt_ids)
    except Conflict as refusal:
        hint = f" ({adoption.NOT_PERMITTED})" if asked and not record.adopt and refusal.holder is None else ""
        raise Problem(c.HOSTNAME_CONFLICT, f"{refusal.message}{hint}", FOREIGN_RETRY) from refusal
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"checking {record.name}") from exc


async def gather(ctx: Context, route: Mapping[str, Any], settings: RouteSettings, tenant: d.Tenant,
                 slot: s.Slot, core: CloudflareCore, claims: ClaimStore, claim: Claim,
                 events: EventSink) -> Gathered:
    """The inputs of a route whose claim is held (see the module)."""
    meta = route["metadata"]
    namespace, name, hostname = str(meta["namespace"]), str(meta["name"]), settings.hostname
    previous = slot.state
    inputs = Inputs(namespace, name, settings, tenant, core.owner_id, claim, previous)
    if slot.taken is not None:  # nothing of that route is touched
        return Gathered(dataclasses.replace(inputs, taken=str(slot.taken)), core, claims)
    is_moved = moved(previous, hostname, tenant.name)
    asked = adoption.source_requests(route)
    adopt = adoption.permitted(asked, namespace, hostname, ctx.rules, ctx.allow_adoption)
    adopt_ids = () if is_moved else ledger.adoptable_ids(previous, hostname)  # seed-made records the state lists
    try:
        zone = await references.resolve_zone(core, tenant, hostname, None if is_moved or previous is None
                                             else previous.get("zone_id"))
        address, rule = "", None
        try:
            if settings.dns_only.enabled:
                address = await references.resolve_ip(ctx, settings)
                record = d.address_record(hostname, address, settings.dns_only, claim.source, adopt=adopt)
            else:
                record = d.tunnel_cname(hostname, settings.tunnel_id or tenant.tunnel_id, claim.source, adopt=adopt)
                rule = d.ingress_rule(settings)
        except InvalidInput as exc:
            raise Problem(c.INVALID_SPEC, exc.message, None) from None
        checked = claim.entry(DNS) is None  # a first publish: one name-filtered listing, none in the steady state
        if checked:
            await check_name(core, zone.id, record, adopt_ids, asked=asked)
        policy_ids: tuple[str, ...] = ()
        missing: tuple[str, ...] = ()
        if settings.access.enabled and settings.access.existing_policy_names:
            policy_ids, missing = await step("listing the reusable Access policies", core.reusable_policy_ids(
                tenant.account_id, settings.access.existing_policy_names))
    except Problem:
        if not claim.entries:  # nothing written for it: the hostname is free again
            await claims.release(claim)
        raise
    found = Gathered(dataclasses.replace(inputs, zone_id=zone.id, record=record, rule=rule, policy_ids=policy_ids,
                                         missing=missing, asked=asked, adopt=adopt, adopt_ids=adopt_ids,
                                         address=address, checked=checked), core, claims)
    return found if missing else await _earlier(ctx, found, events)


async def _earlier(ctx: Context, found: Gathered, events: EventSink) -> Gathered:
    """See the module. A claim recording objects is never released by a move: when the old tenant is gone, they are
    reused where the new tenant publishes (:func:`decide.reusable`)."""
    inputs, core, claims = found.inputs, found.core, found.claims
    previous, claim, tenant = inputs.previous, inputs.claim, inputs.tenant
    if previous is None:
        old = [other for other in await claims.list(kind="hostname", source=claim.source) if other.key != claim.key]
        return _with(found, claim, old, (core, claims, tenant.account_id))
    if not moved(previous, claim.key, tenant.name) and not claim.entries and ledger.hints(previous, claim.key):
        claim = await ledger.bootstrap(core, claims, claim, previous, account_id=tenant.account_id,
                                       service=inputs.rule.service if inputs.rule is not None else None)
    if previous.published and (previous.hostname, previous.tenant) == (claim.key, tenant.name):
        return _with(found, claim, [], None)  # the steady state
    old_core, old_claims, old_account = core, claims, tenant.account_id
    if previous.tenant and previous.tenant != tenant.name:
        gone = await references.reachable_tenant(ctx, previous.tenant, inputs.namespace, inputs.name, events)
        if gone is None:  # nothing reaches its objects without its token: what the claim records stays recorded
            kept = previous.tenant if previous.hostname == claim.key and claim.entries else ""
            return dataclasses.replace(found, inputs=dataclasses.replace(inputs, gone_tenant=kept))
        old_core, old_account = await references.core_for(ctx, gone), gone.account_id
        old_claims = ledger.store_for(ctx, old_core)
    old = [other for other in await claims.list(kind="hostname", source=claim.source) if other.key != claim.key]
    if previous.hostname and previous.hostname != claim.key and ledger.unrecorded(previous, old):
        old += await ledger.legacy_claim(old_core, old_claims, previous, claim.source, old_account)
    if same_key := previous.hostname == claim.key and previous.tenant != tenant.name:
        if not claim.entries and ledger.hints(previous, claim.key):
            claim = await ledger.bootstrap(old_core, old_claims, claim, previous, account_id=old_account)
        old.append(claim)
    return _with(found, claim, old, (old_core, old_claims, old_account), same_key)


def _with(found: Gathered, claim: Claim, old: list[Claim], store: tuple[CloudflareCore, ClaimStore, str] | None,
          same_key: bool = False) -> Gathered:
    inputs = dataclasses.replace(found.inputs, claim=claim, old=tuple(old), same_key=same_key)
    return dataclasses.replace(found, inputs=inputs, old_store=store)
