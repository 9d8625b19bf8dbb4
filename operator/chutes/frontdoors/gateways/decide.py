"""The ChuteGateway door's *decide* step (pure). :func:`check`: the chain of checks, in order: the spec, the hostname
rules (a refusal withdraws what the gateway published), the ownership marker; the annotations come first, before
the config is read (which must have its one-time PIN provider). :func:`decide`: the changes, in the order the
safety rules need: the tunnel, then the Access application and its policy before the tunnel rule and the CNAME
(the hostname is never routable unprotected), the application of a gateway whose Access was switched off only
after them, then the tunnel token Secret and cloudflared, and last each hostname it published before (rule and
CNAME, then its Access application). Each names the changes it needs. An object the ledger does not record is a
*create*; one it records is an *ensure* (``Change.ensure``: the core compares it with the live object, proves it
ours and writes only a difference, within the write policy and dry-run, so an update that only revokes access goes
through under create-only); so are the Secret and Deployment (the door always runs its connector).

:func:`decide_leaving`: a gateway deleted or withdrawn (hostname rules), from its claims: cloudflared and its token
Secret first (only ours, labelled for this gateway: Kubernetes objects, gone under every policy, so *ensures*), then
each hostname claim's deletes (rule and CNAME before the Access application: :func:`teardown.hostname`), then the
tunnel its tunnel claim records, last. Admit holds the Cloudflare deletes under a policy that never deletes and under
dry-run (the objects and their proof in the claims stay). A gateway whose config or credentials are out of reach
(or whose earlier version's objects could not be recorded) gets that problem: only cloudflared goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chutes import conditions as c
from chutes.authorization import HostnameRules
from chutes.claim import Claim
from chutes.cloudflare_core.errors import MarkerTooLong
from chutes.cloudflare_core.models import cname_target
from chutes.cloudflare_core.ownership import marker
from chutes.frontdoors import teardown
from chutes.frontdoors.changes import Change, Decision
from chutes.frontdoors.gateways import desired as d

__all__ = ["check", "decide", "decide_leaving"]

Refusal = tuple[str, str]  # (reason, message)
Entries = Mapping[str, Mapping[str, Any]]  # what a claim records (chutes.claims.Claim.entries), by object:
TUNNEL, ACCESS_APP, ACCESS_POLICY, TUNNEL_RULE, DNS = "tunnel", "access_app", "access_policy", "tunnel_rule", "dns"


def check(body: Mapping[str, Any], domain: str, owner_id: str, rules: HostnameRules | None,
          allowed_images: tuple[str, ...]) -> d.DesiredGateway | Refusal:
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
    return desired


def _made(claim: Entries, obj: str, within: str = "") -> bool:
    """Whether `claim` records `obj` as made (an id; for the rule, in tunnel `within`)."""
    entry = claim.get(obj) or {}
    return bool(entry.get("id")) and (not within or entry.get("id") == within)


def _ensure(made: bool, kind: str, name: str, detail: str, needs: tuple[str, ...] = ()) -> Change[None]:
    return Change("update" if made else "create", kind, name, None, detail, needs=needs, ensure=made)


def decide(want: d.DesiredGateway, claim: Entries, tunnel_claim: Entries, old: Sequence[str] = ()) -> Decision[None]:
    """The changes that publish `want`, whose hostname claim records `claim` and tunnel claim `tunnel_claim`, and
    remove what the claims of its earlier hostnames `old` record, in order (see the module)."""
    tunnel_id = str((tunnel_claim.get(TUNNEL) or {}).get("id") or "")
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
    cname = _ensure(DNS in claim, "dns_record", want.fqdn, f"CNAME -> {target} (proxied)",
                    (rule.ref,))
    out += [rule, cname]
    if want.public and ACCESS_APP in claim:
        out.append(Change("delete", "access_app", want.fqdn, None, "(access.public is true)", needs=(cname.ref,)))
    secret = Change("update", "Secret", want.secret_name, None, "(the tunnel token)", needs=(tunnel,), ensure=True)
    out += [secret, Change("update", "Deployment", want.deployment_name, None, f"(cloudflared x{want.replicas})",
                           needs=(secret.ref,), ensure=True)]
    out += [Change("delete", "hostname", hostname, None, "(tunnel rule and DNS records, then Access application)",
                   needs=(cname.ref,)) for hostname in old]
    return Decision(tuple(out))


def decide_leaving(names: d.DesiredGateway, held: Sequence[Claim],
                   problem: Refusal | None = None) -> Decision[teardown.Out]:
    """The changes that take the gateway `names` down, from the claims it `held` (see the module)."""
    connector = tuple(Change("delete", kind, name, teardown.Out(), "(only ours)", ensure=True)
                      for kind, name in (("Deployment", names.deployment_name), ("Secret", names.secret_name)))
    if problem is not None:
        return Decision(connector, (problem,))
    out = list(connector)
    for claim in held:
        if claim.kind == "hostname":
            out += teardown.hostname(claim)
    before = tuple(change.ref for change in out)
    out += [teardown.tunnel(claim, before) for claim in held if claim.kind == "tunnel"]
    return Decision(tuple(out))
