"""Annotated Services, the blog-era form of adyanth's operator (v0.2.0): a Service annotated
``tunnels.networking.cfargotunnel.com/{cr,id,name}`` (which Tunnel; ``ns``: where), ``fqdn`` and ``proto`` is
published as one hostname through the same path as a TunnelBinding subject (its first port; source
``Service/<ns>/<name>``): read here, then :func:`bindings.publish` (decide, admit, apply); withdrawn by
:func:`bindings.withdraw` (a change set too). Unlike adyanth we never replace the Service's labels, and add no
finalizer: a Service deleted, or whose annotations are gone, is withdrawn level-based (its delete event, the
resync).

Unlike adyanth, a Service's annotation never lends it another namespace's Tunnel (its API token, its zone): a
Tunnel serves the Services of its own namespace, and those of the namespaces its annotation
``chutes.troubleshat.com/services-from-namespaces`` lists (comma-separated, ``*``: every one). A Service that
names only Tunnels it may not use is refused (``TunnelNotShared``) and what it published is withdrawn. Sharing one
tunnel across namespaces is what ClusterTunnels and TunnelBindings are for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.authorization import HostnameRules
from chutes.claims import Claim, ClaimStore
from chutes.cores import CorePool
from chutes.frontdoors import claiming
from chutes.frontdoors.problems import EventSink, Problem, refused
from chutes.frontdoors.retries import MISSING_RETRY
from chutes.frontdoors.tunnels import bindings as b
from chutes.frontdoors.tunnels import local
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels import read as r
from chutes.frontdoors.tunnels import tunnel_read as t
from chutes.frontdoors.tunnels.account import load_account
from chutes.frontdoors.tunnels.turns import SourceTurns
from chutes.observability import metrics
from chutes.sweep.cap import Allowance, RemovalBudget, per_window_message

TUNNEL_NOT_SHARED = "TunnelNotShared"
SHARED_WITH = "chutes.troubleshat.com/services-from-namespaces"


def serves_namespace(tunnel: Mapping[str, Any], namespace: str) -> bool:
    """Whether the Tunnel may serve an annotated Service of `namespace` (see the module docstring)."""
    meta = tunnel.get("metadata") or {}
    if meta.get("namespace") == namespace:
        return True
    listed = {item.strip() for item in str((meta.get("annotations") or {}).get(SHARED_WITH) or "").split(",")}
    return "*" in listed or namespace in listed


async def _tunnel_for(api: client.ApiClient, ask: m.ServiceAsk, namespace: str) -> dict[str, Any]:
    """The first Tunnel (by namespace, then name) the ask matches among those that serve `namespace`;
    TunnelNotFound when none matches, TunnelNotShared when those that match serve other namespaces only."""
    matching = [tunnel for tunnel in await kube.list_custom(api, m.GROUP, m.VERSION, m.TUNNEL_PLURAL, ask.namespace)
                if ask.matches(tunnel)]
    found = sorted((tunnel for tunnel in matching if serves_namespace(tunnel, namespace)),
                   key=lambda tunnel: (tunnel["metadata"].get("namespace", ""), tunnel["metadata"]["name"]))
    if matching and not found:
        names = ", ".join(sorted(f"{t['metadata'].get('namespace')}/{t['metadata']['name']}" for t in matching))
        raise Problem(TUNNEL_NOT_SHARED, f"Tunnel {names} does not serve Services of namespace {namespace}: its "
                      f"annotation {SHARED_WITH} must list {namespace} (or use a ClusterTunnel and a TunnelBinding)",
                      MISSING_RETRY)  # tried again: the Tunnel's owner may share it
    if found and found[0]["metadata"].get("deletionTimestamp"):  # its deletion tears down what routes into it
        where = f"{found[0]['metadata'].get('namespace')}/{found[0]['metadata']['name']}"
        raise Problem(t.TUNNEL_NOT_READY, f"Tunnel {where} is being deleted", MISSING_RETRY)
    if not found:
        wanted = ", ".join(f"{key} {value}" for key, value in (("cr", ask.cr), ("id", ask.tunnel_id),
                                                                ("name", ask.tunnel_name)) if value)
        where = f"namespace {ask.namespace}" if ask.namespace else "any namespace"
        raise Problem(t.TUNNEL_NOT_FOUND, f"no Tunnel in {where} with {wanted}", MISSING_RETRY)
    return {**found[0], "kind": m.TUNNEL_KIND}


async def reconcile_service(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                            events: EventSink, resource_namespace: str, rules: HostnameRules | None = None) -> None:
    """Publish the annotated Service (or withdraw it when it no longer asks)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    source = m.service_source(namespace, name)
    annotations = meta.get("annotations")
    if not m.service_annotated(annotations):
        await withdraw_service(api, cores, claims, namespace, name, events, resource_namespace)
        return
    with refused():
        ask = m.service_ask(annotations, namespace)
    allow = r.allow_policy(annotations)
    try:
        tunnel_body = await _tunnel_for(api, ask, namespace)
    except Problem as problem:
        if problem.reason == TUNNEL_NOT_SHARED:  # what it published through a Tunnel that no longer serves it goes
            await withdraw_service(api, cores, claims, namespace, name, events, resource_namespace)
        raise
    spec = t.parse(tunnel_body, resource_namespace, cores.owner_id)
    with refused():
        fqdn = m.resolve_fqdn(ask.fqdn or f"{name}.{spec.domain}", spec.domain)
        ports = (body.get("spec") or {}).get("ports") or []
        first = ports[0] if ports else {}
        protocol = ask.protocol or (m.service_protocol(int(first["port"]), str(first.get("protocol") or "TCP"))
                                    if isinstance(first.get("port"), int) else None)
        origin = m.origin(protocol, None, body, namespace, name)
    account = await load_account(api, cores, spec, verify=False)
    tunnel = await t.find_tunnel(account, spec, claims, read=False)
    subject = m.Subject(name=name, fqdn=fqdn, protocol=protocol, path=None, target=None, origin_request={})
    target = r.local_target(api, spec, account, tunnel)
    found = r.Gathered(spec, account, tunnel, (r.route(spec, subject, origin, target is not None),), True, allow,
                       target)
    await b.publish(found, source, claims, events, rules=rules)


async def withdraw_if_gone(api: client.ApiClient, cores: CorePool, claims: ClaimStore, namespace: str, name: str,
                           events: EventSink, resource_namespace: str) -> bool:
    """Withdraw what the Service published unless a Service of that name asks for it now (made again since the event
    or the listing that said it was gone: its own pass serves it). Call it in the source's turn. True if withdrawn."""
    current = await kube.read_service(api, namespace, name)
    if current is not None and m.service_annotated(current["metadata"].get("annotations")):
        return False
    await withdraw_service(api, cores, claims, namespace, name, events, resource_namespace)
    return True


async def withdraw_service(api: client.ApiClient, cores: CorePool, claims: ClaimStore, namespace: str, name: str,
                           events: EventSink, resource_namespace: str) -> None:
    """Withdraw what the Service published, proven by its claims. The credentials come from the Tunnel whose
    status names the tunnel the claim's rule is in (a hint to find the token: the claim is the proof)."""
    source = m.service_source(namespace, name)
    held = await claims.list(kind="hostname", source=source)
    if not held:
        return
    tunnel_ids = {str((claim.entry(claiming.TUNNEL_RULE) or {}).get("tunnel") or "") for claim in held} - {""}
    for tunnel in await kube.list_custom(api, m.GROUP, m.VERSION, m.TUNNEL_PLURAL):
        if (tunnel.get("status") or {}).get("tunnelId") in tunnel_ids:
            spec = t.parse({**tunnel, "kind": m.TUNNEL_KIND}, resource_namespace, cores.owner_id)
            await b.withdraw(await load_account(api, cores, spec, verify=False), claims, source, events)
            return
    raise Problem(c.DELETING, f"cannot remove what Service {namespace}/{name} published: no Tunnel names tunnel "
                  f"{', '.join(sorted(tunnel_ids))} any more", MISSING_RETRY)


async def unrouted(api: client.ApiClient, claims: ClaimStore, tunnel: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The annotated Services of the Tunnel's namespace asking for it whose publication the ledger does not show
    complete in its tunnel: no claim, or a claim whose rule is not recorded as written there (the Tunnel was made
    again: its deletion took their rules and claims; or their last pass did not get that far), whose CNAME is not
    recorded, or whose Access application is not as the annotations ask (a teardown that raced the Service's move
    to this tunnel took them). They have no timer of their own: the Tunnel's resync publishes them again (the
    handlers); a pass that finds everything in place writes nothing."""
    tunnel_id = str((tunnel.get("status") or {}).get("tunnelId") or "")
    namespace = tunnel["metadata"].get("namespace")
    if not tunnel_id or not namespace:
        return []
    held: dict[str, list[Claim]] = {}
    for claim in await claims.list(kind="hostname", source_kind="Service"):
        held.setdefault(claim.source, []).append(claim)
    found = []
    for service in await kube.list_services(api, namespace):
        meta = service.get("metadata") or {}
        annotations = meta.get("annotations")
        if not m.service_annotated(annotations):
            continue
        try:
            ask = m.service_ask(annotations, namespace)
            access = any(m.access_lists(annotations))
        except m.SpecError:
            continue  # said on the Service by its own handler
        if not ask.matches(tunnel) or ask.namespace not in (None, namespace):
            continue
        mine = held.get(m.service_source(namespace, meta["name"]), [])
        if not mine or not all(_complete(claim, tunnel_id, access) for claim in mine):
            found.append(service)
    return found


def _complete(claim: Claim, tunnel_id: str, access: bool) -> bool:
    """Whether the hostname claim records the rule written in `tunnel_id`, its CNAME, and an Access application
    exactly when `access` is asked."""
    rule = claim.entry(claiming.TUNNEL_RULE) or {}
    return (str(rule.get("tunnel") or "") == tunnel_id and bool(rule.get("id"))
            and bool((claim.entry(claiming.DNS) or {}).get("id"))
            and bool((claim.entry(claiming.ACCESS_APP) or {}).get("id")) == access)


async def routed_through(claims: ClaimStore, tunnel: Mapping[str, Any]) -> list[str]:
    """The annotated Services and TunnelBindings whose hostname claims record a rule in the Tunnel's tunnel (as its
    status names it) or in its ConfigMap: whose turns its deletion takes (:mod:`turns`)."""
    tunnel_id = str((tunnel.get("status") or {}).get("tunnelId") or "")
    meta = tunnel["metadata"]
    source = m.tunnel_source(str(tunnel.get("kind") or m.TUNNEL_KIND), meta.get("namespace") or None, meta["name"])
    found = []
    for kind in ("Service", m.BINDING_KIND):
        for claim in await claims.list(kind="hostname", source_kind=kind):
            rule = claim.entry(claiming.TUNNEL_RULE) or {}
            if (tunnel_id and str(rule.get("tunnel") or "") == tunnel_id) or rule.get(local.ENTRY_TUNNEL) == source:
                found.append(claim.source)
    return found


async def sweep(api: client.ApiClient, cores: CorePool, claims: ClaimStore, tunnel: Mapping[str, Any],
                events: EventSink, resource_namespace: str, turns: SourceTurns,
                removals: RemovalBudget | None = None) -> int:
    """The orphan sweep of one Tunnel (its resync): hostnames routed into its tunnel (as their claims record)
    whose source is gone while the operator was not looking (an annotated Service deleted or no longer annotated,
    or of a namespace the Tunnel no longer serves; a TunnelBinding whose finalizer was removed by hand) are
    withdrawn. The Tunnel's status names the tunnel only to find those claims: what is removed is proven by each
    claim. Claims that record no rule (see :func:`_reachable_unrouted`) are judged by the sweep of every Tunnel of
    their account, whose source is gone when deleted or no longer annotated (any namespace: it may belong to another
    Tunnel).

    Within the deletion cap (:mod:`chutes.sweep.cap`): `removals`, the door's budget (None: no cap), has room for
    so many hostnames per window; the first orphans (in the order of the claims) go, the rest are kept for a later
    pass and a Warning ``SweepCapReached`` on the Tunnel says so. Returns how many hostnames were withdrawn."""
    status = tunnel.get("status") or {}
    tunnel_id, account_id = str(status.get("tunnelId") or ""), str(status.get("accountId") or "")
    if not tunnel_id:
        return 0
    orphans: list[Claim] = []
    gone: dict[str, bool] = {}
    unrouted: set[str] = set()  # sources judged without the Tunnel's namespaces: their claims route nowhere
    for kind in ("Service", m.BINDING_KIND):
        for claim in await claims.list(kind="hostname", source_kind=kind):
            if claim.entry(claiming.TUNNEL_RULE):
                if str((claim.entry(claiming.TUNNEL_RULE) or {}).get("tunnel") or "") != tunnel_id:
                    continue
            elif not _reachable_unrouted(claim, account_id):
                continue
            else:
                unrouted.add(claim.source)
            if claim.source not in gone:
                gone[claim.source] = await _source_gone(api, kind, claim.source,
                                                        None if claim.source in unrouted else tunnel)
            if gone[claim.source]:
                orphans.append(claim)
    if not orphans:
        return 0
    cap = Allowance(None if removals is None else removals.available())
    allowed = [claim for claim in orphans if cap.allows((claim.source, claim.key))]
    withdrawn = 0
    if allowed:
        spec = t.parse(tunnel, resource_namespace, cores.owner_id)
        account = await load_account(api, cores, spec, verify=False)
        core = account.core
        held = {claim.key for claim in orphans if (claim.source, claim.key) in cap.held}
        for source in dict.fromkeys(claim.source for claim in allowed):
            async with turns.held(source):
                # made again since it was read? (a binding has a finalizer: never made again)
                if source.startswith("Service/") and not await _source_gone(
                        api, "Service", source, None if source in unrouted else tunnel):
                    continue
                await b.withdraw(account, claims, source, events, keep=held)
            mine = [claim.key for claim in allowed if claim.source == source]
            withdrawn += len(mine)
            metrics.HOSTNAMES.publish(m.FRONT_DOOR, source, [claim.key for claim in orphans
                                                             if claim.source == source and claim.key in held])
            events.normal(c.ORPHANS_REMOVED, f"withdrew {', '.join(mine)}: {source.replace('/', ' ', 1)}, which "
                          "published it, is gone")
        if removals is not None and not core.dry_run:
            removals.spend(withdrawn)
        metrics.orphan_removed(m.FRONT_DOOR, "hostname", withdrawn)
    if cap.held and removals is not None:
        events.warning(c.SWEEP_CAP_REACHED, per_window_message(
            removals, [claim.key for claim in orphans if (claim.source, claim.key) in cap.held], removals.opens_at(),
            what="orphaned hostname(s) routed into this tunnel"))
    return withdrawn


def _reachable_unrouted(claim: Claim, account_id: str) -> bool:
    """Whether the sweep of a Tunnel in `account_id` judges `claim`, which records no rule (a publication stopped
    before its rule, e.g. the operator died after its Access application; or a withdrawal stopped after it): when
    every account its entries record is that one (none recorded: nothing there to remove but the claim)."""
    accounts = {str(entry.get("account")) for entry in claim.entries.values() if entry.get("account")}
    return accounts <= {account_id}


async def _source_gone(api: client.ApiClient, kind: str, source: str, tunnel: Mapping[str, Any] | None) -> bool:
    """Whether the Service (no longer annotated, or of a namespace `tunnel` no longer serves; None: of any
    namespace) or TunnelBinding `source` is gone."""
    _, namespace, name = source.split("/", 2)
    if kind == "Service":
        service = await kube.read_service(api, namespace, name)
        return (service is None or not m.service_annotated(service["metadata"].get("annotations"))
                or (tunnel is not None and not serves_namespace(tunnel, namespace)))
    return await kube.get_custom(api, m.GROUP, m.BINDING_VERSION, m.BINDING_PLURAL, name, namespace) is None
