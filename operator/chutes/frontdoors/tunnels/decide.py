"""The *decide* step of a TunnelBinding or annotated Service (pure): from what :mod:`read` gathered, the problems
found by a chain of checks and the ordered change set.

The checks, in order (the first problem found is the one raised; nothing is written on a problem):

1. **shared target**: a subject of a tunnel of another namespace (a ClusterTunnel) names a ``target`` outside its
   namespace's Services and the hosts the installation shares (``InvalidSpec``);
2. **hostname rules**: a hostname outside the operator's rules for the source's namespace
   (``HostnameNotAuthorized``): the decision then withdraws everything the source published;
3. **conflicts**: a hostname held by another source or by a foreign DNS record (``HostnameConflict``), found
   by the read (which holds the claims and checks the names only once 1 and 2 passed).

The changes, each naming (``needs``) the earlier ones it cannot be made without:

- on the way in, per hostname: the one-time PIN provider (once), the Access application, its policy, then the
  rule, then the CNAME (``disableDNSUpdates``: our CNAME goes instead); Access no longer asked goes last;
  adyanth's ownership TXT of a CNAME taken over goes once the CNAME is ours. A rule the claim records in another
  tunnel (the source now names another (Cluster)Tunnel, or its Tunnel was made again) leaves it before the rule is
  written in the new one: the claim records one rule, and its entry is the only proof of it;
- on the way out (a hostname the source no longer routes): the rule, then the source's records at the name,
  then the Access application; the claim is released after its last change.

An object the claim records (a completed entry) is an ``update`` (an ensure: brought in line, made again when
gone; held under create-only, so there one deleted behind our back is not made again), else a ``create``. A
rule in a locally configured tunnel's ConfigMap is not governed by the write policy (``governed=False``): the
ConfigMap follows the ledger under every policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from chutes import claim as claiming
from chutes import conditions as c
from chutes.authorization import HostnameRules
from chutes.claim import Claim
from chutes.cloudflare_core.models import AppPolicySpec, IngressRule, cname_target
from chutes.cloudflare_core.ownership import owned_name
from chutes.frontdoors.changes import Change, Decision
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels.config_file import ENTRY_TUNNEL

__all__ = ["IDP", "Inputs", "Route", "Step", "app_name", "decide", "withdrawal"]

IDP = "identity_provider/one-time-pin"


@dataclass(frozen=True)
class Route:
    subject: m.Subject
    service: str  # the rule's service (origin)
    rule: IngressRule


@dataclass(frozen=True)
class Step:
    """What the executor needs for one change: the hostname (its claim), the rule, the Access policy, the TXT
    to delete; `withdrawn`: the hostname is no longer routed; `release`: its claim goes after this change."""

    fqdn: str = ""
    rule: IngressRule | None = None
    allow: AppPolicySpec | None = None
    txt: str = ""
    withdrawn: bool = False
    release: bool = False
    claim: Claim | None = None  # a withdrawn hostname's claim, as listed


@dataclass(frozen=True)
class Inputs:
    """What the read gathered. `claims`: the source's hostname claims by hostname (those of `routes` as held by
    the read, once `names` is read); `names`: per routed hostname, adyanth's TXT to remove ("" for none), None
    while the names are not checked yet; `conflicts`: what the name checks refused."""

    source: str
    namespace: str
    tunnel_namespace: str | None
    tunnel_id: str
    owner_id: str
    routes: tuple[Route, ...]
    dns: bool = True
    allow: AppPolicySpec | None = None
    local: bool = False
    claims: Mapping[str, Claim] = field(default_factory=dict)
    names: Mapping[str, str] | None = None
    conflicts: tuple[tuple[str, str], ...] = ()
    shared_targets: Collection[str] = ()
    rules: HostnameRules | None = None


def app_name(fqdn: str, owner_id: str) -> str:
    return owned_name(f"tunnelbinding-{fqdn}", owner_id)


def _recorded(claim: Claim | None, obj: str) -> bool:
    return bool(((claim.entry(obj) if claim is not None else None) or {}).get("id"))


def _shared_target_problems(inputs: Inputs) -> list[tuple[str, str]]:
    problems = []
    for route in inputs.routes:
        target = route.subject.target
        if inputs.tunnel_namespace != inputs.namespace and target:
            problem = m.shared_target_problem(target, inputs.namespace, inputs.shared_targets)
            if problem is not None:
                problems.append((c.INVALID_SPEC, f"subject {route.subject.name}: {problem}"))
    return problems


def _refused(inputs: Inputs) -> list[tuple[str, str]]:
    rules = inputs.rules
    if rules is None:
        return []
    return [(c.HOSTNAME_NOT_AUTHORIZED, rules.explain(inputs.namespace, route.subject.fqdn))
            for route in inputs.routes if not rules.allows(inputs.namespace, route.subject.fqdn)]


def _publish(inputs: Inputs, route: Route) -> list[Change[Step]]:
    fqdn = route.subject.fqdn
    claim = inputs.claims.get(fqdn)
    out: list[Change[Step]] = []
    rule_needs: tuple[str, ...] = ()
    if inputs.allow is not None:
        name = app_name(fqdn, inputs.owner_id)
        out.append(Change("update" if _recorded(claim, claiming.ACCESS_APP) else "create", "access_app", name,
                          Step(fqdn, allow=inputs.allow), f"({fqdn})", key=f"access_app/{fqdn}", needs=(IDP,)))
        out.append(Change("update" if _recorded(claim, claiming.ACCESS_POLICY) else "create", "access_policy",
                          inputs.allow.name, Step(fqdn, allow=inputs.allow), f"(app {name})",
                          key=f"access_policy/{fqdn}", needs=(f"access_app/{fqdn}",)))
        rule_needs = (f"access_policy/{fqdn}",)
    rule_key = f"tunnel_rule/{fqdn}"
    if (moved := _moved_out(inputs, claim)) is not None:
        out.append(moved)
        rule_needs = (*rule_needs, moved.key)
    out.append(Change("update" if _recorded(claim, claiming.TUNNEL_RULE) and moved is None else "create",
                      "tunnel_rule", fqdn, Step(fqdn, rule=route.rule),
                      f"-> {route.service}" + (" (ConfigMap)" if inputs.local else ""), key=rule_key,
                      needs=rule_needs, governed=not inputs.local))
    dns_key = f"dns_record/{fqdn}"
    if inputs.dns:
        out.append(Change("update" if _recorded(claim, claiming.DNS) else "create", "dns_record", fqdn, Step(fqdn),
                          f"CNAME -> {cname_target(inputs.tunnel_id)}", key=dns_key, needs=(rule_key,)))
    elif claim is not None and claim.entry(claiming.DNS) is not None:
        out.append(Change("delete", "dns_record", fqdn, Step(fqdn), "(disableDNSUpdates)", key=dns_key,
                          needs=(rule_key,)))
    if inputs.allow is None and claim is not None and claim.entry(claiming.ACCESS_APP) is not None:
        out.append(Change("delete", "access_app", str((claim.entry(claiming.ACCESS_APP) or {}).get("name") or fqdn),
                          Step(fqdn), "(Access no longer asked)", key=f"access_app/{fqdn}",
                          needs=(rule_key,) + ((dns_key,) if out[-1].key == dns_key else ())))
    return out


def _moved_out(inputs: Inputs, claim: Claim | None) -> Change[Step] | None:
    """The rule the claim records in another tunnel than the one the source names now (its (Cluster)Tunnel changed,
    or was made again): removed, as the claim proves it, before the rule is written where it goes, so that the
    claim's one rule entry never stops proving a rule that is still there. (Between two ConfigMaps of one local
    tunnel, :func:`local.write_rule` moves it.)"""
    if claim is None or (entry := claim.entry(claiming.TUNNEL_RULE)) is None:
        return None
    tunnel, local = str(entry.get("tunnel") or entry.get("id") or ""), bool(entry.get(ENTRY_TUNNEL))
    if tunnel == inputs.tunnel_id:
        return None
    fqdn = claim.key
    return Change("delete", "tunnel_rule", fqdn, Step(fqdn),
                  f"(moved out of tunnel {tunnel or '?'}{', ConfigMap' if local else ''})",
                  key=f"tunnel_rule/{fqdn}/moved", governed=not local)


def withdrawal(claim: Claim) -> list[Change[Step]]:
    """A hostname no longer routed: its rule (when recorded), the source's records at the name, then its Access
    application (when recorded); the last one releases the claim."""
    fqdn = claim.key
    rule = claim.entry(claiming.TUNNEL_RULE)
    app = claim.entry(claiming.ACCESS_APP)
    local = bool((rule or {}).get(ENTRY_TUNNEL))
    out: list[Change[Step]] = []
    if rule is not None:
        out.append(Change("delete", "tunnel_rule", fqdn, Step(fqdn, withdrawn=True, claim=claim),
                          f"(tunnel {rule.get('tunnel') or '?'}{', ConfigMap' if local else ''})",
                          key=f"tunnel_rule/{fqdn}", governed=not local))
    out.append(Change("delete", "dns_record", fqdn, Step(fqdn, withdrawn=True, claim=claim),
                      "(the source's records at the name)", key=f"dns_record/{fqdn}",
                      needs=tuple(change.key for change in out)))
    if app is not None:
        out.append(Change("delete", "access_app", str(app.get("name") or fqdn),
                          Step(fqdn, withdrawn=True, claim=claim), f"({fqdn})", key=f"access_app/{fqdn}",
                          needs=(f"dns_record/{fqdn}",)))
    last = out[-1]
    out[-1] = dataclasses.replace(last, payload=dataclasses.replace(last.payload, release=True))
    return out


def withdrawals(claims: Sequence[Claim]) -> list[Change[Step]]:
    return [change for claim in claims for change in withdrawal(claim)]


def decide(inputs: Inputs) -> Decision[Step]:
    """The problems and the changes that publish `inputs.routes` for the source and withdraw the rest (see the
    module docstring). While the names are not read (`inputs.names` None), only the first two checks run."""
    if problems := _shared_target_problems(inputs):
        return Decision((), tuple(problems))
    if refused := _refused(inputs):
        return Decision(tuple(withdrawals(list(inputs.claims.values()))), tuple(refused[:1]))
    if inputs.names is None or inputs.conflicts:
        return Decision((), inputs.conflicts)
    wanted = {route.subject.fqdn for route in inputs.routes}
    changes: list[Change[Step]] = []
    if inputs.allow is not None:
        changes.append(Change("create", "identity_provider", "one-time PIN", Step(), "(found, or created once)",
                              key=IDP))
    for route in inputs.routes:
        changes.extend(_publish(inputs, route))
    for fqdn, txt in inputs.names.items():
        if txt:
            changes.append(Change("delete", "dns_record", txt, Step(fqdn, txt=txt),
                                  f"TXT (adyanth's ownership record for {fqdn})", key=f"dns_record/{txt}",
                                  needs=(f"dns_record/{fqdn}",)))
    changes.extend(withdrawals([claim for key, claim in inputs.claims.items() if key not in wanted]))
    return Decision(tuple(changes), ())
