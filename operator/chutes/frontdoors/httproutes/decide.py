"""The HTTPRoute door's *decide* step (pure): the chain of checks, then the change set that publishes a route.

The checks, in order: the hostname rules (:func:`authorized`: a refusal withdraws what the route published); the
ownership marker and the ``tunnelId`` annotation (:func:`check`); once the claim is held, the state ConfigMap name
holding another route's state, a reusable policy that does not resolve (``PolicyNotFound``: the decision is then the
hostname's routing taken down, Access kept), an old tenant gone whose objects are out of reach (:func:`reusable`).

The changes, in the order the safety rules need: the claims of earlier hostnames (or of this one with the old
tenant) torn down, routing first; the state before the first write; the Access application and allow policy; the
service token and its Secret; the rule (one recorded in another tunnel removed first); the DNS record; then what the
settings no longer want (the record of the other address type, the rule, Access, the token and its Secret). Creates
and updates are *ensures* (``Change.ensure``): the core finds each object as the claim records it and applies the
write policy and dry-run itself (a create under dry-run stops with ``DryRun``). Deletes are admit's to hold; the
state and the token Secret are the door's own records (``governed=False``).

:func:`decide_leaving`: a route deleted, disabled or withdrawn (hostname rules), from the claims it holds: each
hostname's deletes, routing first (its rule, its own DNS records), then its Access application, then its token
(:func:`teardown.hostname`). Admit holds them under a write policy that never deletes and under dry-run (the objects
and their proof in the claims stay); the token Secret and the state go after them (the door's own records).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chutes import conditions as c
from chutes.authorization import HostnameRules
from chutes.claim import ACCESS_APP, ACCESS_POLICY, DNS, SERVICE_TOKEN, TUNNEL_RULE, Claim
from chutes.cloudflare_core.errors import MarkerTooLong
from chutes.cloudflare_core.models import DesiredRecord, IngressRule
from chutes.cloudflare_core.ownership import marker
from chutes.frontdoors import teardown
from chutes.frontdoors.changes import Change, Decision
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import route_state as s
from chutes.frontdoors.httproutes.merge import RouteSettings
from chutes.frontdoors.retries import MISSING_RETRY, POLICY_RETRY

__all__ = ["DELAYS", "Inputs", "authorized", "check", "decide", "decide_leaving", "moved", "reusable"]

Refusal = tuple[str, str]  # (reason, message)
DELAYS = {c.POLICY_NOT_FOUND: POLICY_RETRY, c.TENANT_NOT_FOUND: MISSING_RETRY}  # the retry of a refusal (else none)


@dataclass(frozen=True)
class Inputs:
    """What the read gathered once the claim is held; `missing`: reusable policies that do not resolve; `old`: the
    claims to tear down first (`same_key`: this one, published with the old tenant); `gone_tenant`: see reusable;
    for *apply*: adoption asked for and permitted, the records the state lists, the address, a first publish."""

    namespace: str
    name: str
    settings: RouteSettings
    tenant: d.Tenant
    owner_id: str
    claim: Claim
    previous: s.RouteState | None = None
    zone_id: str = ""
    record: DesiredRecord | None = None
    rule: IngressRule | None = None
    policy_ids: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    old: tuple[Claim, ...] = ()
    same_key: bool = False
    gone_tenant: str = ""
    taken: str = ""  # the state ConfigMap name holds another route's state: why
    asked: bool = False
    adopt: bool = False
    adopt_ids: tuple[str, ...] = ()
    address: str = ""
    checked: bool = False


def authorized(rules: HostnameRules, namespace: str, hostname: str) -> Refusal | None:
    return None if rules.allows(namespace, hostname) else (c.HOSTNAME_NOT_AUTHORIZED,
                                                           rules.explain(namespace, hostname))


def moved(previous: s.RouteState | None, hostname: str, tenant: str) -> bool:
    """Whether the route published under another hostname or tenant before."""
    return previous is not None and bool(previous.hostname) and (previous.hostname, previous.tenant) != (hostname,
                                                                                                          tenant)


def check(settings: RouteSettings, tenant: d.Tenant, owner_id: str, source: str,
          tunnel_claims: Sequence[Claim]) -> Refusal | None:
    """The ownership marker, then the ``tunnelId`` annotation (`tunnel_claims`: every tunnel claim, listed only
    when the annotation names a tunnel the tenant allows besides its own)."""
    try:
        marker(owner_id, source)
    except MarkerTooLong as exc:
        return c.INVALID_SPEC, exc.message
    tunnel = settings.tunnel_id
    if tunnel is None or tunnel == tenant.tunnel_id:
        return None
    if not tenant.allows_tunnel(tunnel):
        return c.INVALID_SPEC, (f"{a.TUNNEL_ID}: tunnel {tunnel} is neither the tunnel of {a.TENANT_KIND} "
                                f"{tenant.ref} nor one its spec.allowedTunnelIds lists: nothing is published; remove "
                                f"the annotation, or have whoever manages {a.TENANT_KIND} {tenant.ref} add {tunnel} "
                                "to spec.allowedTunnelIds")
    for found in tunnel_claims:
        if any(str(entry.get("id") or "").lower() == tunnel for entry in found.entries.values()):
            return c.INVALID_SPEC, (f"{a.TUNNEL_ID}: tunnel {tunnel} is the tunnel of {found.source} (its claim "
                                    f"{found.key}): nothing is published; name another tunnel, or remove the "
                                    f"annotation (and {tunnel} from spec.allowedTunnelIds of {a.TENANT_KIND} "
                                    f"{tenant.ref})")
    return None


def reusable(claim: Claim, old_tenant: str, tenant: d.Tenant, zone_id: str) -> Refusal | None:
    """The route moved from `old_tenant` (gone) to `tenant` keeping its hostname, and its claim records objects
    published with the old tenant: they are the route's still, reused when they live in the new tenant's account
    (and zone); anywhere else nothing can remove them, and the move waits (``TenantNotFound``, retried)."""
    accounts = sorted({str(entry["account"]) for entry in claim.entries.values() if entry.get("account")})
    zones = sorted({str(entry["zone"]) for entry in claim.entries.values() if entry.get("zone")})
    if set(accounts) <= {tenant.account_id} and set(zones) <= {zone_id}:
        return None
    where = ", ".join([*(f"account {account}" for account in accounts), *(f"zone {zone}" for zone in zones)])
    return c.TENANT_NOT_FOUND, (
        f"{claim.key}: what {claim.source} published with {a.TENANT_KIND} {old_tenant!r} (recorded in its claim: "
        f"{', '.join(sorted(claim.entries))} in {where}) is out of reach of {a.TENANT_KIND} {tenant.ref} (account "
        f"{tenant.account_id}), and {old_tenant!r} no longer exists: nothing is published with {tenant.ref} until "
        f"those objects are removed; create {a.TENANT_KIND} {old_tenant!r} again (its token removes them at the next "
        "attempt), or point the route back to it")


def _ensure(recorded: Mapping[str, Any], obj: str, kind: str, name: str, detail: str,
            needs: tuple[str, ...] = ()) -> Change[str]:
    made = obj in recorded
    return Change("update" if made else "create", kind, name, "", detail, needs=needs, ensure=True)


def _unwanted(inputs: Inputs, recorded: Collection[str], routing: tuple[str, ...]) -> list[Change[str]]:
    settings, hostname = inputs.settings, inputs.settings.hostname
    out: list[Change[str]] = []
    if inputs.rule is None and TUNNEL_RULE in recorded:
        out.append(Change("delete", "tunnel_rule", hostname, "", "(now DNS-only)", needs=routing))
    if not settings.access.enabled and ACCESS_APP in recorded:
        out.append(Change("delete", "access_app", hostname, "", "(access.enabled is false)", needs=routing))
    if not settings.service_token.enabled:
        if SERVICE_TOKEN in recorded:
            out.append(Change("delete", "service_token", hostname, "", "(serviceToken.enabled is false)"))
        base = None if moved(inputs.previous, hostname, inputs.tenant.name) else inputs.previous
        secrets = {base.get("service_token_secret_name")} if base is not None else set()
        out += [Change("delete", "Secret", secret, secret, governed=False) for secret in sorted(filter(None, secrets))]
    return out


def decide(inputs: Inputs) -> Decision[str]:
    """The problems and the changes that publish the route (see the module)."""
    settings, claim = inputs.settings, inputs.claim
    hostname = settings.hostname
    if inputs.taken:
        return Decision((), ((c.INVALID_SPEC, inputs.taken),))
    if inputs.missing:
        names = ", ".join(repr(m) for m in inputs.missing)
        message = (f"reusable Access policy {names} (existingPolicyNames) not found in account "
                   f"{inputs.tenant.account_id}: {hostname} is not published")
        return Decision(tuple(Change("delete", kind, hostname, "", "(a reusable Access policy does not resolve)")
                              for obj, kind in ((TUNNEL_RULE, "tunnel_rule"), (DNS, "dns_record"))
                              if claim.entry(obj) is not None), ((c.POLICY_NOT_FOUND, message),))
    if inputs.gone_tenant and (refusal := reusable(claim, inputs.gone_tenant, inputs.tenant, inputs.zone_id)):
        return Decision((), (refusal,))
    assert inputs.record is not None  # read once the checks before it passed
    out = [Change("delete", "hostname", old.key, old.key, "(tunnel rule and DNS records, then Access application, "
                  "service token)") for old in inputs.old]
    recorded = {} if inputs.same_key else claim.entries  # claimed again after the teardown: nothing recorded
    if inputs.previous is None or moved(inputs.previous, hostname, inputs.tenant.name):
        out.append(Change("create", "ConfigMap", a.state_name(inputs.namespace, inputs.name), "",
                          "(the route's state, before its first write)", governed=False))
    access: tuple[str, ...] = ()
    if settings.access.enabled:
        app = _ensure(recorded, ACCESS_APP, "access_app", a.app_name(hostname, inputs.owner_id), f"for {hostname}")
        policy = a.allow_policy_name(hostname)
        out += [app, _ensure(recorded, ACCESS_POLICY, "access_policy", policy, "(allow)", (app.ref,))
                if settings.access.has_allow_rules else
                Change("delete", "access_policy", policy, "", "(no allowEmails/allowGroups: when there)",
                       needs=(app.ref,), ensure=True)]
        access = (out[-1].ref,)
    if settings.service_token.enabled:
        token = _ensure(recorded, SERVICE_TOKEN, "service_token", a.token_name(hostname, inputs.owner_id), "")
        out += [token, Change("update", "Secret", a.secret_name(inputs.name), "", "(the token's credentials)",
                              needs=(token.ref,), ensure=True)]
    routing = access
    if inputs.rule is not None:
        old_tunnel = str((recorded.get(TUNNEL_RULE) or {}).get("tunnel") or "")
        tunnel = settings.tunnel_id or inputs.tenant.tunnel_id
        if old_tunnel and old_tunnel != tunnel:
            out.append(Change("delete", "tunnel_rule", hostname, old_tunnel, f"(tunnel {old_tunnel})",
                              key=f"tunnel_rule/{old_tunnel}"))
        out.append(_ensure(recorded, TUNNEL_RULE, "tunnel_rule", hostname, f"-> {inputs.rule.service}", access))
        routing = (out[-1].ref,)
    record = inputs.record
    out.append(_ensure(recorded, DNS, "dns_record", hostname, f"{record.type} -> {record.content}", routing))
    routing = (out[-1].ref,)
    old_type = str((recorded.get(DNS) or {}).get("type") or "")
    if {old_type, record.type} == {"A", "AAAA"}:  # the writer swapped them in one batch; gone: a no-op
        out.append(Change("delete", "dns_record", hostname, old_type, old_type, key=f"dns_record/{old_type}",
                          needs=routing))
    return Decision(tuple(out + _unwanted(inputs, recorded, routing)))


def decide_leaving(held: Sequence[Claim]) -> Decision[teardown.Out]:
    """The changes that take down what the route's hostname claims `held` record, in order (see the module)."""
    return Decision(tuple(change for claim in held for change in teardown.hostname(claim)))
