"""Reconcile a Tunnel or ClusterTunnel: its Cloudflare tunnel (``newTunnel``: found or created under its
owner-qualified name, recorded in the ledger's tunnel claim before the create and by id after; ``existingTunnel``:
found by id, else by name, never deleted), cloudflared and its Secret, its status. In the front-door shape
(``frontdoors/README.md``): :mod:`tunnel_read` -> :mod:`tunnel_decide` (pure) -> :func:`chutes.frontdoors.changes.admit`
-> :mod:`tunnel_apply` -> report (status conditions, Events), for the reconcile and for the deletion alike.

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

The TunnelBinding / annotated-Service path is :mod:`bindings` (:mod:`read` -> :mod:`decide` -> admit ->
:mod:`apply`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.claims import ClaimStore, claims_for
from chutes.cores import CorePool
from chutes.frontdoors import changes
from chutes.frontdoors.problems import EventSink, Problem
from chutes.frontdoors.status_writer import StatusWriter, reported
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels import tunnel_decide as d
from chutes.frontdoors.tunnels import tunnel_read as r
from chutes.frontdoors.tunnels.apply import apply
from chutes.frontdoors.tunnels.tunnel_apply import Executor, LeavingExecutor

__all__ = ["delete_tunnel", "reconcile_tunnel"]


async def reconcile_tunnel(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                           status: StatusWriter, events: EventSink, resource_namespace: str) -> None:
    """Serve one (Cluster)Tunnel; every refusal ends up in its Ready condition and is raised as a Problem."""
    async with reported(status):
        await _reconcile(api, cores, claims, body, status, events, resource_namespace)


async def _reconcile(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                     status: StatusWriter, events: EventSink, resource_namespace: str) -> None:
    spec = r.parse(body, resource_namespace, cores.owner_id)
    found = await r.gather(api, cores, claims, spec)
    status.condition(c.CREDENTIALS_READY, "True", c.RECONCILED, f"the token reaches zone {found.account.zone.name}")
    core = found.account.core
    claims = claims_for(claims, dry_run=core.dry_run)
    problem = found.credentials_problem
    decision = d.decide(d.Inputs(spec, found.recorded, found.local,
                                 (problem.reason, problem.message) if problem is not None else None))
    admitted = changes.admit(decision.changes, core.policy, dry_run=core.dry_run)
    if spec.is_new:
        # The finalizer first: from here on the object cannot go without its tunnel going too.
        await kube.add_finalizer(api, m.GROUP, m.VERSION, r.plural_of(spec.kind), body["metadata"]["name"],
                                 spec.cr_namespace, m.FINALIZER)
    run = Executor(api, found, body, status, events, claims)
    await apply(admitted, run)
    await run.say_tunnel()
    if problem is not None:
        status.condition(c.CONNECTOR_READY, "False", problem.reason, problem.message)
        raise problem
    status.set(observedGeneration=status.generation)
    how = (f" from ConfigMap {spec.namespace}/{spec.config_name} (locally configured)" if run.connector.config_map
           else "")
    assert run.tunnel is not None
    status.condition(c.READY, "True", c.RECONCILED, f"tunnel {run.tunnel.name} served by {run.connector.name}{how}")


async def delete_tunnel(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                        events: EventSink, resource_namespace: str) -> None:
    """Tear a (Cluster)Tunnel down: its bindings' routes and DNS records, cloudflared, then (``newTunnel`` only) the
    tunnel its claim proves; then drop the finalizer. Raises Problem while something is left to retry."""
    leaving = await r.gather_leaving(api, cores, claims, body, resource_namespace)
    decision = d.decide_leaving(d.Leaving(leaving.name, leaving.namespace, m.base_name(leaving.kind, leaving.name),
                                          leaving.held, leaving.routed, leaving.in_config, leaving.spec is not None))
    if decision.problems:
        raise Problem(*decision.problems[0], None)
    core = leaving.account.core if leaving.account is not None else None
    if core is not None:
        claims = claims_for(claims, dry_run=core.dry_run)
    admitted = changes.admit(decision.changes, core.policy if core is not None else "sync",
                             dry_run=core is not None and core.dry_run)
    await apply(admitted, LeavingExecutor(api, leaving, claims, events))
    await kube.remove_finalizer(api, m.GROUP, m.VERSION, r.plural_of(leaving.kind), leaving.name,
                                body["metadata"].get("namespace") or None, m.FINALIZER)
