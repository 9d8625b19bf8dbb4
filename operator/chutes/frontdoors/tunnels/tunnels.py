"""Reconcile a Tunnel or ClusterTunnel: its Cloudflare tunnel (``newTunnel``: found or created under its
owner-qualified name, recorded in the ledger's tunnel claim before the create and by id after; ``existingTunnel``:
found by id, else by name, never deleted), cloudflared and its Secret, its status.

How routes reach cloudflared depends on the tunnel:
- remotely managed (a ``newTunnel``, or an ``existingTunnel`` whose configuration Cloudflare holds): cloudflared
  runs with the tunnel token and routes never restart it. A ``newTunnel``'s catch-all and top-level
  ``originRequest`` are ``fallbackTarget``, ``noTlsVerify``, ``originCaPool``. An existing one is co-owned: its
  foreign rules, catch-all and other keys are kept, except that a ``fallbackTarget`` other than the default
  (``http_status:404``) replaces its catch-all (absent, or the default: the catch-all there is kept);
- locally configured (an ``existingTunnel`` whose configuration is a file): adyanth's ConfigMap ``<tunnel>``
  (``config.yaml``) and checksum annotation, cloudflared with ``--config`` and its credentials file
  (:mod:`local`); never converted to remote management. Each route change restarts cloudflared.

Deletion (finalizer ``cfargotunnel.com/finalizer`` on a ``newTunnel``; kopf's own on the others): the routes and DNS
records its bindings published go first (from their hostname claims: a ``newTunnel``'s, and every rule in a local
tunnel's ConfigMap), then cloudflared, its Secrets and ConfigMap, then a ``newTunnel``'s tunnel (proven by its
claim). An ``existingTunnel`` stays in Cloudflare.

Not yet in the front-door shape: read, decide and apply are interleaved here (as in the gateway door). The
TunnelBinding / annotated-Service path is (:mod:`bindings`: :mod:`read` -> :mod:`decide` -> admit -> :mod:`apply`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.claims import ClaimStore, claims_for
from chutes.cloudflare_core import Tunnel
from chutes.cores import CorePool
from chutes.frontdoors import claiming, cloudflared
from chutes.frontdoors.problems import EventSink, Problem, step
from chutes.frontdoors.retries import CONFIG_RETRY, CONFLICT_RETRY, MISSING_RETRY
from chutes.frontdoors.status_writer import StatusWriter, reported
from chutes.frontdoors.tunnels import config_file as cf
from chutes.frontdoors.tunnels import local
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels.account import Account, load_account

TUNNEL_NOT_FOUND = "TunnelNotFound"
TUNNEL_NOT_READY = "TunnelNotReady"


def tunnel_key(account_id: str, name: str) -> str:
    return f"{account_id}/{name}"


def parse(body: Mapping[str, Any], resource_namespace: str, owner_id: str) -> m.TunnelSpec:
    meta = body["metadata"]
    kind = str(body.get("kind") or (m.TUNNEL_KIND if meta.get("namespace") else m.CLUSTER_KIND))
    try:
        return m.parse_tunnel(kind, meta.get("namespace") or None, meta["name"], body.get("spec") or {},
                              resource_namespace=resource_namespace, owner_id=owner_id)
    except m.SpecError as exc:
        raise Problem(exc.reason, str(exc), None) from None


async def find_tunnel(account: Account, spec: m.TunnelSpec, claims: ClaimStore, *, read: bool = True) -> Tunnel:
    """The live tunnel of `spec`: a ``newTunnel``'s as its claim records it (TunnelNotReady until it does; with
    `read`, also once it is gone from Cloudflare; without, the claim is the answer and a tunnel deleted behind our
    back shows at the next configuration write), an ``existingTunnel`` by id, else by name (TunnelNotFound when
    neither exists; its ``remote_config`` says whether it is locally configured)."""
    core, account_id = account.core, account.account_id
    if spec.is_new:
        claim = await claims.get("tunnel", tunnel_key(account_id, spec.cloudflare_name))
        recorded = str((claim.entry(claiming.TUNNEL) or {}).get("id") or "") if claim is not None else ""
        if claim is None or claim.source != spec.source or not recorded:
            raise Problem(TUNNEL_NOT_READY, f"{spec.kind} {spec.name}: its tunnel is not created yet", CONFIG_RETRY)
        if not read:
            return Tunnel(id=recorded, name=spec.cloudflare_name, account_id=account_id)
        tunnel = await step("reading the tunnel", core.get_tunnel(account_id, recorded))
        if tunnel is None or tunnel.deleted:
            raise Problem(TUNNEL_NOT_READY, f"{spec.kind} {spec.name}: tunnel {recorded} is gone", MISSING_RETRY)
        return tunnel
    found = None
    if spec.existing_id:
        found = await step("reading the tunnel", core.get_tunnel(account_id, spec.existing_id))
    if (found is None or found.deleted) and spec.existing_name:
        found = await step("finding the tunnel", core.find_tunnel(account_id, spec.existing_name))
    if found is None or found.deleted:
        wanted = " or ".join(f"{k} {v!r}" for k, v in (("id", spec.existing_id), ("name", spec.existing_name)) if v)
        raise Problem(TUNNEL_NOT_FOUND, f"spec.existingTunnel: no tunnel with {wanted} in account "
                      f"{account_id}", MISSING_RETRY)
    return found


def is_local(spec: m.TunnelSpec, tunnel: Tunnel) -> bool:
    """A locally configured ``existingTunnel`` (its configuration is a file; unknown counts as remote)."""
    return not spec.is_new and tunnel.remote_config is False


def connector(spec: m.TunnelSpec, checksum: str | None = None) -> cloudflared.Connector:
    """cloudflared for `spec`; with the `checksum` of a locally configured tunnel's ``config.yaml``, run from its
    ConfigMap and credentials file."""
    extra = ("--protocol", spec.protocol) if spec.protocol != "auto" else ()
    run = cloudflared.Connector(
        name=spec.deployment_name, namespace=spec.namespace,
        secret_name=spec.secret_name if checksum is None else spec.credentials_secret_name, labels=spec.object_labels,
        pod_labels=spec.pod_labels,
        selector={"app.kubernetes.io/name": "cloudflared", "app.kubernetes.io/instance": spec.deployment_name},
        image=spec.image, replicas=spec.replicas, resources=spec.resources or {}, extra_args=extra,
        node_selector=spec.node_selector, tolerations=spec.tolerations, affinity=spec.affinity,
        ca_secret=spec.origin_ca_pool, ca_dir=m.CA_DIR,
    )
    if checksum is None:
        return run
    return dataclasses.replace(run, config_map=spec.config_name, config_key=cf.CONFIG_KEY,
                               config_dir=cf.CONFIG_DIR, credentials_dir=cf.CREDENTIALS_DIR,
                               pod_annotations={cf.CHECKSUM: checksum})


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {"apiVersion": f"{m.GROUP}/{m.VERSION}", "kind": str(body.get("kind") or m.TUNNEL_KIND),
            "name": meta["name"], "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


def plural_of(spec_kind: str) -> str:
    return m.CLUSTER_PLURAL if spec_kind == m.CLUSTER_KIND else m.TUNNEL_PLURAL


async def reconcile_tunnel(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                           status: StatusWriter, events: EventSink, resource_namespace: str) -> None:
    """Serve one (Cluster)Tunnel; every refusal ends up in its Ready condition and is raised as a Problem."""
    async with reported(status):
        await _reconcile(api, cores, claims, body, status, events, resource_namespace)


async def _reconcile(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                     status: StatusWriter, events: EventSink, resource_namespace: str) -> None:
    spec = parse(body, resource_namespace, cores.owner_id)
    account = await load_account(api, cores, spec)
    status.condition(c.CREDENTIALS_READY, "True", c.RECONCILED, f"the token reaches zone {account.zone.name}")
    core, account_id = account.core, account.account_id
    claims = claims_for(claims, dry_run=core.dry_run)
    meta = body["metadata"]
    if spec.is_new:
        # The finalizer first: from here on the object cannot go without its tunnel going too.
        await kube.add_finalizer(api, m.GROUP, m.VERSION, plural_of(spec.kind), meta["name"], spec.cr_namespace,
                                 m.FINALIZER)
        claim = await claiming.hold(claims, "tunnel", tunnel_key(account_id, spec.cloudflare_name), spec.source)
        if not (claim.entry(claiming.TUNNEL) or {}).get("since"):
            claim = await claims.intend(claim, claiming.TUNNEL, account=account_id, name=spec.cloudflare_name)
        tunnel = await step("ensuring the tunnel", core.ensure_tunnel(account_id, spec.cloudflare_name,
                                                                      claim.recorded(claiming.TUNNEL)))
        if (claim.entry(claiming.TUNNEL) or {}).get("id") != tunnel.id:
            await claims.complete(claim, claiming.TUNNEL, tunnel.id, account=account_id, name=spec.cloudflare_name)
        # The tunnel is ours (its claim proves it): so are its catch-all and tunnel-wide origin settings.
        await step("writing the tunnel's catch-all and origin settings", core.set_tunnel_defaults(
            account_id, tunnel.id, spec.fallback, m.tunnel_origin_request(spec)))
    else:
        tunnel = await find_tunnel(account, spec, claims)
        if not is_local(spec, tunnel) and spec.fallback_asked:  # asked for explicitly: the one key we set there
            await step("writing the tunnel's catch-all", core.set_tunnel_defaults(
                account_id, tunnel.id, spec.fallback, None))
    if status.get("tunnelId") != tunnel.id:
        events.normal(c.TUNNEL_READY, f"tunnel {tunnel.name} ({tunnel.id})")
    status.set(tunnelId=tunnel.id, tunnelName=tunnel.name, accountId=account_id, zoneId=account.zone.id)
    status.condition(c.TUNNEL_READY, "True", c.RECONCILED, f"tunnel {tunnel.name} ({tunnel.id})")
    await status.flush()

    try:
        if is_local(spec, tunnel):
            credentials = await local.read_credentials(api, spec, account_id, tunnel)  # nothing written before
            target = local.target_for(api, spec, tunnel.id, dry_run=core.dry_run, owner=owner_reference(body))
            digest = await local.regenerate(target, claims)
            if digest is None:  # written whole when absent: only a race with its deletion gets here
                raise Problem(TUNNEL_NOT_READY, f"ConfigMap {target.where} is not written yet", CONFIG_RETRY)
            run = connector(spec, digest)
            secret = local.credentials_manifest(spec, credentials)
        else:
            token = await step("reading the tunnel token", core.get_tunnel_token(account_id, tunnel.id))
            run = connector(spec)
            secret = cloudflared.secret_manifest(run, token)
    except Problem as problem:
        status.condition(c.CONNECTOR_READY, "False", problem.reason, problem.message)
        raise
    deployment = cloudflared.deployment_manifest(run)
    for manifest in (secret, deployment):
        manifest["metadata"]["ownerReferences"] = [owner_reference(body)]
    try:
        await kube.apply_secret(api, secret, spec.owned_by)
        deployment_status = await kube.apply_deployment(api, deployment, spec.owned_by)
    except kube.NotOurs as exc:
        status.condition(c.CONNECTOR_READY, "False", c.OBJECT_NOT_OURS, str(exc))
        raise Problem(c.OBJECT_NOT_OURS, str(exc), CONFLICT_RETRY) from None
    available = int((deployment_status or {}).get("availableReplicas") or 0)
    status.condition(c.CONNECTOR_READY, "True" if available else "False",
                     c.CONNECTORS_AVAILABLE if available else c.CONNECTORS_UNAVAILABLE,
                     f"{available}/{spec.replicas} cloudflared available")
    status.set(observedGeneration=status.generation)
    how = f" from ConfigMap {spec.namespace}/{spec.config_name} (locally configured)" if run.config_map else ""
    status.condition(c.READY, "True", c.RECONCILED, f"tunnel {tunnel.name} served by {run.name}{how}")


async def delete_tunnel(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                        events: EventSink, resource_namespace: str) -> None:
    """Tear a (Cluster)Tunnel down: its bindings' routes and DNS records, cloudflared, then (``newTunnel`` only) the
    tunnel its claim proves; then drop the finalizer. Raises Problem while something is left to retry."""
    meta = body["metadata"]
    kind = str(body.get("kind") or m.TUNNEL_KIND)
    source = m.tunnel_source(kind, meta.get("namespace") or None, meta["name"])
    held = await claims.list(kind="tunnel", source=source)
    hostnames = [claim for source_kind in (m.BINDING_KIND, "Service")
                 for claim in await claims.list(kind="hostname", source_kind=source_kind)]
    in_config = [claim for claim in hostnames  # rules in its ConfigMap (a locally configured tunnel)
                 if (claim.entry(claiming.TUNNEL_RULE) or {}).get(local.ENTRY_TUNNEL) == source]
    try:
        spec: m.TunnelSpec | None = parse(body, resource_namespace, cores.owner_id)
    except Problem:
        spec = None
    namespace = spec.namespace if spec is not None else (meta.get("namespace") or resource_namespace)
    base = m.base_name(kind, meta["name"])
    if held or in_config:
        if spec is None:
            raise Problem(c.DELETING, "cannot remove the tunnel: the spec no longer names its credentials", None)
        try:
            account = await load_account(api, cores, spec)
        except Problem as problem:
            raise Problem(c.DELETING, f"cannot remove the Cloudflare objects: {problem.message}. Restore it, or "
                          f"remove the finalizer {m.FINALIZER} to abandon them.", problem.delay or MISSING_RETRY
                          ) from None
        core = account.core
        claims = claims_for(claims, dry_run=core.dry_run)
        tunnel_ids = {str((claim.entry(claiming.TUNNEL) or {}).get("id") or "") for claim in held} - {""}
        # 1. Routes and records of every binding and annotated Service through this tunnel (hostname claims whose
        # rule is in it, or in its ConfigMap: those rules leave it first).
        routed = in_config + [claim for claim in hostnames if claim not in in_config and str(
            (claim.entry(claiming.TUNNEL_RULE) or {}).get("tunnel") or "") in tunnel_ids]
        routed = await local.drop_rules(claims, routed)
        for claim in in_config:
            events.normal(c.TUNNEL_RULE_REMOVED, f"tunnel rule for {claim.key} removed from ConfigMap "
                          f"{namespace}/{meta['name']}")
        for done in await asyncio.gather(*(claiming.tear_down_hostname(  # at once: coalesced
                core, claims, claim, account_id=account.account_id, zone_id=account.zone.id) for claim in routed)):
            say_teardown(events, done)
    # 2. cloudflared, its token or credentials, its ConfigMap (only ours: labelled for this tunnel by this
    # installation; a ConfigMap adyanth made for this very object too).
    owned = m.owned_by(kind, meta["name"], cores.owner_id)
    for object_kind, name in (("Deployment", f"{base}-cloudflared"), ("Secret", f"{base}-tunnel-token"),
                              ("Secret", f"{base}-tunnel-credentials")):
        try:
            await kube.delete_namespaced(api, object_kind, namespace, name, owned, meta.get("uid"))
        except kube.NotOurs as exc:
            events.warning(c.OBJECT_NOT_OURS, f"left in place: {exc}")
    await local.delete_config(api, namespace, meta["name"], owned, meta.get("uid"))
    # 3. The tunnel the claim proves ours (never an existingTunnel: it has no claim).
    for claim in held:
        done = await claiming.tear_down_tunnel(account.core, claims, claim, account_id=account.account_id,
                                               connected_ok=True)
        say_teardown(events, done)
        if not done.released and claim.entry(claiming.TUNNEL) is not None and not done.left:
            raise Problem(c.DELETING, f"the tunnel of {source} is not removed yet", MISSING_RETRY)
    await kube.remove_finalizer(api, m.GROUP, m.VERSION, plural_of(kind), meta["name"],
                                meta.get("namespace") or None, m.FINALIZER)


def say_teardown(events: EventSink, done: claiming.Teardown) -> None:
    for obj, message in zip(done.removed_objects, done.removed, strict=True):
        reason = {claiming.TUNNEL_RULE: c.TUNNEL_RULE_REMOVED, claiming.DNS: c.DNS_RECORD_REMOVED,
                  claiming.ACCESS_APP: c.ACCESS_APPLICATION_REMOVED, claiming.TUNNEL: c.TUNNEL_REMOVED}.get(obj)
        if reason is not None:
            events.normal(reason, message)
    for item in done.left:
        events.warning(c.HOSTNAME_CONFLICT, f"left in place, not ours: {item}")
