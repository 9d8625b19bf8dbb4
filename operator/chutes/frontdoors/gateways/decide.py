"""The ChuteGateway door's *decide* step (pure): the checks a gateway must pass, and the changes that publish it.

:func:`check` is the chain of checks, in order: the annotations under our prefix (a typo changes nothing
published), the spec (:func:`~chutes.frontdoors.gateways.desired.desired_gateway`), the hostname rules (a refusal
withdraws what the gateway published), the ownership marker (a source whose marker cannot fit publishes nothing),
the config's one-time PIN provider (Access needs it).

:func:`decide` orders the changes as the safety rules need: the tunnel, the Access application and its policy
before the tunnel rule and the CNAME (the hostname is never routable unprotected; the seed made DNS first), then
the application of a gateway whose Access was switched off (after routing is in place), the tunnel token Secret
and cloudflared, and last the hostnames it published before (for each: rule and CNAME, then its application).
Each names the changes it needs. An object the ledger does not record is a *create* (made unless dry-run);
one it records is an *ensure* (``Change.ensure``): the core compares it with the live object, proves it ours and
writes only a difference, within the write policy and dry-run (an update that only revokes access goes through
under create-only). The Secret and Deployment are ensures too: the door always runs its connector. Removals are
deletes: held by upsert-only, create-only and dry-run, their claims then keep what they record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from chutes import conditions as c
from chutes.authorization import HostnameRules
from chutes.cloudflare_core.errors import MarkerTooLong
from chutes.cloudflare_core.models import cname_target
from chutes.cloudflare_core.ownership import marker
from chutes.frontdoors.changes import Change, Decision
from chutes.frontdoors.gateways import desired as d

__all__ = ["Recorded", "check", "check_annotations", "decide"]

Refusal = tuple[str, str]  # (reason, message)
# The entries of a hostname or tunnel claim (chutes.frontdoors.claiming's names).
TUNNEL, ACCESS_APP, ACCESS_POLICY, TUNNEL_RULE, DNS = "tunnel", "access_app", "access_policy", "tunnel_rule", "dns"


class Recorded(Protocol):
    """A claim of the ledger (:class:`chutes.claims.Claim`), as the decision reads it."""

    @property
    def key(self) -> str: ...

    def entry(self, obj: str) -> Mapping[str, Any] | None: ...


def check_annotations(annotations: Mapping[str, Any] | None) -> Refusal | None:
    """Every unknown key under our prefix (``InvalidSpec``): a misspelt ``adopt`` must not read as absent."""
    problems = d.annotation_problems(annotations)
    return (c.INVALID_SPEC, "; ".join(problems)) if problems else None


def check(body: Mapping[str, Any], domain: str, owner_id: str, rules: HostnameRules | None,
          allowed_images: tuple[str, ...], otp_idp_id: str | None) -> d.DesiredGateway | Refusal:
    """The gateway's desired state, or the first check it fails (see the module)."""
    meta, spec = body["metadata"], body.get("spec") or {}
    try:
        desired = d.desired_gateway(meta["namespace"], meta["name"], spec, domain, owner_id, allowed_images)
    except d.SpecError as exc:
        return exc.reason, str(exc)
    if rules is not None and not rules.allows(desired.namespace, desired.fqdn):
        return c.HOSTNAME_NOT_AUTHORIZED, rules.explain(desired.namespace, desired.fqdn)
    try:
        marker(owner_id, desired.source)
    except MarkerTooLong as exc:
        return c.INVALID_SPEC, exc.message
    if not desired.public and not otp_idp_id:
        return c.CONFIG_NOT_READY, f"ChuteConfig {spec.get('configRef', '')!r} has no one-time PIN provider"
    return desired


def _made(claim: Recorded, obj: str, within: str = "") -> bool:
    """Whether `claim` records `obj` as made (an id; for the rule, in tunnel `within`)."""
    entry = claim.entry(obj) or {}
    return bool(entry.get("id")) and (not within or entry.get("id") == within)


def _ensure(made: bool, kind: str, name: str, detail: str, needs: tuple[str, ...] = ()) -> Change[None]:
    return Change("update" if made else "create", kind, name, None, detail, needs=needs, ensure=made)


def decide(want: d.DesiredGateway, claim: Recorded, tunnel_claim: Recorded,
           old: Sequence[Recorded] = ()) -> Decision[None]:
    """The changes that publish `want`, whose hostname claim is `claim` and tunnel claim `tunnel_claim`, and
    remove what the claims `old` of its earlier hostnames record, in order (see the module)."""
    tunnel_id = str((tunnel_claim.entry(TUNNEL) or {}).get("id") or "")
    tunnel = f"tunnel/{want.cloudflare_name}"
    out = [_ensure(bool(tunnel_id), "tunnel", want.cloudflare_name, tunnel_id)]
    access: tuple[str, ...] = ()
    if not want.public:
        app = _ensure(_made(claim, ACCESS_APP), "access_app", want.fqdn,
                      f"{want.cloudflare_name}, sessions of {want.session_duration}", (tunnel,))
        out += [app, _ensure(_made(claim, ACCESS_POLICY), "access_policy", want.fqdn,
                             f"{d.POLICY_NAME}: {d.allowed_counts(d.policy_include(want))}", (app.ref,))]
        access = (out[-1].ref,)
    rule = _ensure(bool(tunnel_id) and _made(claim, TUNNEL_RULE, tunnel_id), "tunnel_rule", want.fqdn,
                   f"-> {want.service_url}", (tunnel, *access))
    target = cname_target(tunnel_id) if tunnel_id else "the tunnel"
    cname = _ensure(claim.entry(DNS) is not None, "dns_record", want.fqdn, f"CNAME -> {target} (proxied)",
                    (rule.ref,))
    out += [rule, cname]
    if want.public and claim.entry(ACCESS_APP) is not None:
        out.append(Change("delete", "access_app", want.fqdn, None, "(access.public is true)", needs=(cname.ref,)))
    secret = Change("update", "Secret", want.secret_name, None, "(the tunnel token)", needs=(tunnel,), ensure=True)
    out += [secret, Change("update", "Deployment", want.deployment_name, None, f"(cloudflared x{want.replicas})",
                           needs=(secret.ref,), ensure=True)]
    out += [Change("delete", "hostname", claim.key, None, "(tunnel rule and DNS records, then Access application)",
                   needs=(cname.ref,)) for claim in old]
    return Decision(tuple(out))
