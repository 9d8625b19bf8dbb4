"""The TunnelBinding / annotated-Service publish path, in the front-door shape (``frontdoors/README.md``):

- *read* (:mod:`read`): the binding or Service, its (Cluster)Tunnel, its Services, the account and tunnel; then,
  once the first checks passed, its hostname claims held and its names checked in the zone through the core;
- *decide* (:mod:`decide`, pure): the problems (shared target, hostname rules, conflicts) and the ordered change
  set: Access application and policy before the rule and the CNAME on the way in; rule, records, then Access on
  the way out, each only as its claim proves ours;
- *admit* (:func:`chutes.frontdoors.changes.admit`): the write policy and dry-run filter the set as a whole;
- *apply* (:mod:`apply`): each change through the core (the rule through the co-owned tunnel-config writer: no
  cloudflared restart) or, for a locally configured tunnel, into its ConfigMap (:mod:`local`: the ingress
  regenerated, cloudflared restarted; never a configuration PUT). Hostnames are made at once, so the writers
  coalesce them (one configuration PUT or ConfigMap write, one DNS batch);
- *report*: the binding's status conditions, one Event per change made.

Bad input (a missing tunnel or Service, a Service without ports, an invalid protocol, an FQDN outside the zone or
held by a foreign record) is found before anything is written: nothing else is touched. A hostname outside the
operator's hostname rules withdraws everything the source published.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.authorization import HostnameRules
from chutes.claims import Claim, ClaimStore, claims_for
from chutes.cores import CorePool
from chutes.frontdoors import changes
from chutes.frontdoors.problems import EventSink, Problem
from chutes.frontdoors.retries import MISSING_RETRY
from chutes.frontdoors.status_writer import StatusWriter, reported
from chutes.frontdoors.tunnels import apply as a
from chutes.frontdoors.tunnels import decide as d
from chutes.frontdoors.tunnels import local
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels import read as r
from chutes.frontdoors.tunnels.account import Account, load_account
from chutes.observability import metrics


async def reconcile_binding(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                            status: StatusWriter, events: EventSink, resource_namespace: str,
                            rules: HostnameRules | None = None,
                            shared_targets: Collection[str] = ()) -> None:
    async with reported(status):
        await _reconcile(api, cores, claims, body, status, events, resource_namespace, rules, shared_targets)


async def _reconcile(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                     status: StatusWriter, events: EventSink, resource_namespace: str,
                     rules: HostnameRules | None, shared_targets: Collection[str]) -> None:
    meta = body["metadata"]
    source = m.binding_source(meta["namespace"], meta["name"])
    found = await r.gather(api, cores, claims, body, resource_namespace)

    async def finalizer() -> None:
        await kube.add_finalizer(api, m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, meta["name"], meta["namespace"],
                                 m.FINALIZER)

    await publish(found, source, claims, events, finalizer, rules, shared_targets)
    fqdns = [route.subject.fqdn for route in found.routes]
    status.set(hostnames=",".join(fqdns), observedGeneration=status.generation,
               services=[{"hostname": r.subject.fqdn, "target": r.service} for r in found.routes])
    status.condition(c.TUNNEL_READY, "True", c.RECONCILED, f"{len(fqdns)} rule(s) in tunnel {found.tunnel.name}")
    status.condition(c.DNS_READY, "True", c.RECONCILED,
                     "CNAMEs " + ", ".join(fqdns) if found.dns else "tunnelRef.disableDNSUpdates: no DNS records")
    status.condition(c.ACCESS_READY, "True", c.RECONCILED if found.allow is not None else c.PUBLIC,
                     "behind Access" if found.allow is not None else "no Access annotations: public")
    status.condition(c.READY, "True", c.RECONCILED, f"published {', '.join(fqdns)}")


async def publish(found: r.Gathered, source: str, claims: ClaimStore, events: EventSink,
                  before_writing: Callable[[], Awaitable[None]] | None = None,
                  rules: HostnameRules | None = None, shared_targets: Collection[str] = ()) -> None:
    """Publish `found.routes` for `source` (a TunnelBinding or an annotated Service) and withdraw the hostnames it
    no longer routes: read the rest, decide, admit, apply (see the module docstring). `before_writing` runs once
    the decision stands (the binding's finalizer); `shared_targets`: the hosts a subject may target through a
    ClusterTunnel besides its namespace's Services."""
    core = found.account.core
    claims = claims_for(claims, dry_run=core.dry_run)
    inputs = d.Inputs(source=source, namespace=source.split("/")[1], tunnel_namespace=found.spec.cr_namespace,
                      tunnel_id=found.tunnel.id, owner_id=core.owner_id, routes=found.routes, dns=found.dns,
                      allow=found.allow, local=found.local is not None, shared_targets=shared_targets, rules=rules)
    decision = d.decide(inputs)  # the first checks, before any claim is held
    held: dict[str, Claim] = {}
    names: dict[str, str] | None = None
    conflicts: tuple[Problem, ...] = ()
    if not decision.problems or decision.problems[0][0] == c.HOSTNAME_NOT_AUTHORIZED:
        listing = claims.list(kind="hostname", source=source)  # what it published: the proof
        if not decision.problems:  # the names checked meanwhile
            (held, names, conflicts), listed = await asyncio.gather(r.hold_names(found, source, claims), listing)
        else:
            listed = await listing
        inputs = dataclasses.replace(inputs, claims={**_by_key(listed), **held})
    decision = d.decide(dataclasses.replace(inputs, names=names,
                                            conflicts=tuple((p.reason, p.message) for p in conflicts)))
    if decision.problems and not decision.changes:
        raise conflicts[0] if conflicts else Problem(*decision.problems[0], None)
    if before_writing is not None and not decision.problems:
        await before_writing()
    await _apply(found.account, found.tunnel.id, claims, events, decision, held, found.local,
                 keep=bool(found.routes) and not decision.problems)
    if decision.problems:  # not authorized: everything it published is withdrawn
        metrics.HOSTNAMES.forget(m.FRONT_DOOR, source)
        raise Problem(*decision.problems[0], None)
    metrics.HOSTNAMES.publish(m.FRONT_DOOR, source, {route.subject.fqdn for route in found.routes})


def _by_key(claims: list[Claim]) -> dict[str, Claim]:
    return {claim.key: claim for claim in claims}


async def _apply(account: Account, tunnel_id: str, claims: ClaimStore, events: EventSink,
                 decision: changes.Decision[d.Step], held: dict[str, Claim], target: local.Target | None = None,
                 keep: bool = True) -> None:
    """Admit the decision's changes (the write policy, dry-run) and make them; a hostname withdrawn is said
    (``HostnameRemoved``) when a source still publishing others (`keep`) lost something there."""
    admitted = changes.admit(decision.changes, account.core.policy, dry_run=account.core.dry_run)
    gone = _by_key([change.payload.claim for change in decision.changes if change.payload.withdrawn
                    and change.payload.claim is not None])
    executor = a.Executor(account, tunnel_id, claims, events, {**gone, **held}, target)
    await a.apply(admitted, executor)
    for fqdn, removed in executor.removed.items():
        if removed and keep:
            events.normal(c.HOSTNAME_REMOVED, f"{fqdn} is no longer published")


async def withdraw(account: Account, claims: ClaimStore, source: str, events: EventSink,
                   keep: Collection[str] = (), listed: list[Claim] | None = None) -> None:
    """Tear down every hostname claim of `source` (`listed`: as the caller just listed them) but those in `keep`:
    rule, records, then Access (decided, admitted and applied as a change set)."""
    claims = claims_for(claims, dry_run=account.core.dry_run)
    if listed is None:
        listed = await claims.list(kind="hostname", source=source)
    gone = [claim for claim in listed if claim.key not in keep]
    await _apply(account, "", claims, events, changes.Decision(tuple(d.withdrawals(gone))), {}, keep=bool(keep))
    if not keep:
        metrics.HOSTNAMES.forget(m.FRONT_DOOR, source)


async def delete_binding(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                         events: EventSink, resource_namespace: str) -> None:
    """Remove what the binding published (its claims: rule, records, Access, in that order), then the finalizer."""
    meta = body["metadata"]
    source = m.binding_source(meta["namespace"], meta["name"])
    if listed := await claims.list(kind="hostname", source=source):
        try:
            spec = await r.tunnel_of(api, body, resource_namespace, cores.owner_id)
            account = await load_account(api, cores, spec, verify=False)
        except Problem as problem:
            raise Problem(c.DELETING, f"cannot remove the Cloudflare objects: {problem.message}. Restore it, or "
                          f"remove the finalizer {m.FINALIZER} to abandon them.", problem.delay or MISSING_RETRY
                          ) from None
        await withdraw(account, claims, source, events, listed=listed)
    await kube.remove_finalizer(api, m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, meta["name"], meta["namespace"],
                                m.FINALIZER)
