"""The *read* step of a Tunnel or ClusterTunnel (and the lookups the binding path shares): everything
:mod:`tunnel_decide` needs, read once, nothing written.

- :func:`parse`: the spec, or the Problem of a bad one (before anything is read);
- :func:`gather`: the account (credentials, zone), then a ``newTunnel``'s tunnel claim as the ledger holds it (its
  recorded id, if any), or an ``existingTunnel`` found by id, else by name (TunnelNotFound when neither exists; its
  ``remote_config`` says whether it is locally configured), and a locally configured one's ``credentials.json``
  (read from the API Secret: kept out of every change, which are logged; a Problem reading it is carried, for the
  connector's condition, the tunnel being reported first);
- :func:`gather_leaving`: for a deletion, the tunnel claims the (Cluster)Tunnel holds, the hostname claims whose
  rule is in its tunnel or its ConfigMap, its spec (None when it no longer parses) and, when something is left to
  remove in Cloudflare, its account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes.claims import Claim, ClaimStore
from chutes.cloudflare_core import Tunnel
from chutes.cores import CorePool
from chutes.frontdoors import claiming
from chutes.frontdoors.problems import Problem, refused, step
from chutes.frontdoors.retries import CONFIG_RETRY, MISSING_RETRY
from chutes.frontdoors.tunnels import local
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels.account import Account, load_account

__all__ = ["TUNNEL_NOT_FOUND", "TUNNEL_NOT_READY", "Found", "Leaving", "find_tunnel", "gather", "gather_leaving",
           "is_local", "owner_reference", "parse", "plural_of"]

TUNNEL_NOT_FOUND = "TunnelNotFound"
TUNNEL_NOT_READY = "TunnelNotReady"


def parse(body: Mapping[str, Any], resource_namespace: str, owner_id: str) -> m.TunnelSpec:
    meta = body["metadata"]
    kind = str(body.get("kind") or (m.TUNNEL_KIND if meta.get("namespace") else m.CLUSTER_KIND))
    with refused():
        return m.parse_tunnel(kind, meta.get("namespace") or None, meta["name"], body.get("spec") or {},
                              resource_namespace=resource_namespace, owner_id=owner_id)


def plural_of(spec_kind: str) -> str:
    return m.CLUSTER_PLURAL if spec_kind == m.CLUSTER_KIND else m.TUNNEL_PLURAL


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {"apiVersion": f"{m.GROUP}/{m.VERSION}", "kind": str(body.get("kind") or m.TUNNEL_KIND),
            "name": meta["name"], "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}


def is_local(spec: m.TunnelSpec, tunnel: Tunnel) -> bool:
    """A locally configured ``existingTunnel`` (its configuration is a file; unknown counts as remote)."""
    return not spec.is_new and tunnel.remote_config is False


async def find_tunnel(account: Account, spec: m.TunnelSpec, claims: ClaimStore, *, read: bool = True) -> Tunnel:
    """The live tunnel of `spec`: a ``newTunnel``'s as its claim records it (TunnelNotReady until it does; with
    `read`, also once it is gone from Cloudflare; without, the claim is the answer and a tunnel deleted behind our
    back shows at the next configuration write), an ``existingTunnel`` by id, else by name (TunnelNotFound when
    neither exists; its ``remote_config`` says whether it is locally configured)."""
    core, account_id = account.core, account.account_id
    if spec.is_new:
        claim = await claims.get("tunnel", claiming.tunnel_key(account_id, spec.cloudflare_name))
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


@dataclass(frozen=True)
class Found:
    """What a (Cluster)Tunnel's reconcile reads. `claim`: a ``newTunnel``'s tunnel claim as the ledger holds it
    (None: not claimed yet); `tunnel`: an ``existingTunnel`` as found; `credentials`: a locally configured one's
    ``credentials.json`` (a secret: never in a change), or `credentials_problem`, why it could not be read."""

    spec: m.TunnelSpec
    account: Account
    claim: Claim | None = None
    tunnel: Tunnel | None = None
    credentials: str = ""
    credentials_problem: Problem | None = None

    @property
    def recorded(self) -> str:
        """A ``newTunnel``'s id as its own tunnel claim records it ("" for none)."""
        if self.claim is None or self.claim.source != self.spec.source:
            return ""
        return str((self.claim.entry(claiming.TUNNEL) or {}).get("id") or "")

    @property
    def local(self) -> bool:
        return self.tunnel is not None and is_local(self.spec, self.tunnel)


async def gather(api: client.ApiClient, cores: CorePool, claims: ClaimStore, spec: m.TunnelSpec) -> Found:
    """Everything the (Cluster)Tunnel's reconcile decides on; a bad credential, account, zone or a missing
    ``existingTunnel`` raises its Problem here (nothing written)."""
    account = await load_account(api, cores, spec)
    if spec.is_new:
        key = claiming.tunnel_key(account.account_id, spec.cloudflare_name)
        return Found(spec, account, await claims.get("tunnel", key))
    tunnel = await find_tunnel(account, spec, claims)
    if not is_local(spec, tunnel):
        return Found(spec, account, tunnel=tunnel)
    try:
        credentials = await local.read_credentials(api, spec, account.account_id, tunnel)
    except Problem as problem:
        return Found(spec, account, tunnel=tunnel, credentials_problem=problem)
    return Found(spec, account, tunnel=tunnel, credentials=credentials)


@dataclass(frozen=True)
class Leaving:
    """What a (Cluster)Tunnel's deletion reads: its `held` tunnel claims, the hostname claims `routed` into its
    tunnel (those of `in_config`: rules in its ConfigMap, a locally configured tunnel), its `spec` (None: it no
    longer parses) and `account` (None when nothing is left in Cloudflare, or without a spec)."""

    kind: str
    name: str
    namespace: str  # where its Secrets, ConfigMap and cloudflared live
    uid: str | None
    source: str
    held: tuple[Claim, ...]
    routed: tuple[Claim, ...]
    in_config: tuple[Claim, ...]
    spec: m.TunnelSpec | None
    account: Account | None
    owner_id: str


async def gather_leaving(api: client.ApiClient, cores: CorePool, claims: ClaimStore, body: Mapping[str, Any],
                         resource_namespace: str) -> Leaving:
    """The claims a deletion tears down, proven by the ledger (never by the ids in status); the account's
    Problem (Deleting) when it cannot be read while something is left to remove."""
    meta = body["metadata"]
    kind = str(body.get("kind") or m.TUNNEL_KIND)
    source = m.tunnel_source(kind, meta.get("namespace") or None, meta["name"])
    held = await claims.list(kind="tunnel", source=source)
    hostnames = [claim for source_kind in (m.BINDING_KIND, "Service")
                 for claim in await claims.list(kind="hostname", source_kind=source_kind)]
    in_config = [claim for claim in hostnames  # rules in its ConfigMap (a locally configured tunnel)
                 if (claim.entry(claiming.TUNNEL_RULE) or {}).get(local.ENTRY_TUNNEL) == source]
    tunnel_ids = {str((claim.entry(claiming.TUNNEL) or {}).get("id") or "") for claim in held} - {""}
    routed = in_config + [claim for claim in hostnames if claim not in in_config and str(
        (claim.entry(claiming.TUNNEL_RULE) or {}).get("tunnel") or "") in tunnel_ids]
    try:
        spec: m.TunnelSpec | None = parse(body, resource_namespace, cores.owner_id)
    except Problem:
        spec = None
    account = None
    if (held or in_config) and spec is not None:
        try:
            account = await load_account(api, cores, spec)
        except Problem as problem:
            raise Problem(c.DELETING, f"cannot remove the Cloudflare objects: {problem.message}. Restore it, or "
                          f"remove the finalizer {m.FINALIZER} to abandon them.", problem.delay or MISSING_RETRY
                          ) from None
    namespace = spec.namespace if spec is not None else (meta.get("namespace") or resource_namespace)
    return Leaving(kind, meta["name"], namespace, meta.get("uid"), source, tuple(held), tuple(routed),
                   tuple(in_config), spec, account, cores.owner_id)
