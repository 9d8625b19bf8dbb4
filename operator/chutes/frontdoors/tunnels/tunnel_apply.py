"""The *apply* step of a Tunnel or ClusterTunnel: :class:`Executor` makes one change of :func:`tunnel_decide.decide`
(the tunnel through the core, recorded in its tunnel claim: held, an intent before the create, the id after; its
catch-all through the core's tunnel-config writer; the ConfigMap through :mod:`local`'s writer; cloudflared's
Secret and Deployment through kube) and says it at once: the tunnel in status (written out before the connector's
first change) and a Normal Event when new, the connector's condition. :class:`LeavingExecutor` makes one change of
:func:`tunnel_decide.decide_leaving` (each claim torn down by :mod:`chutes.frontdoors.claiming`: Normal Events for
what went, Warnings for what stays, not ours). Both run under :func:`apply.apply` (each change once its needs are
made; the hostnames of a deletion at once, so the core's writers coalesce them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.claims import Claim, ClaimStore
from chutes.cloudflare_core import Tunnel
from chutes.frontdoors import claiming, cloudflared
from chutes.frontdoors.changes import Change
from chutes.frontdoors.problems import EventSink, Problem, step
from chutes.frontdoors.retries import CONFIG_RETRY, CONFLICT_RETRY, MISSING_RETRY
from chutes.frontdoors.status_writer import StatusWriter
from chutes.frontdoors.tunnels import local
from chutes.frontdoors.tunnels import model as m
from chutes.frontdoors.tunnels import tunnel_decide as d
from chutes.frontdoors.tunnels import tunnel_read as r

__all__ = ["Executor", "LeavingExecutor"]


@dataclass
class Executor:
    """Makes the changes of one (Cluster)Tunnel's decision; what earlier changes gave (the tunnel, the ConfigMap's
    checksum, the Deployment's status) serves the later ones and the report."""

    api: client.ApiClient
    found: r.Found
    body: Mapping[str, Any]
    status: StatusWriter
    events: EventSink
    claims: ClaimStore
    tunnel: Tunnel | None = None
    checksum: str | None = None
    deployment: Mapping[str, Any] | None = None
    said: bool = False

    def __post_init__(self) -> None:
        self.tunnel = self.found.tunnel

    @property
    def connector(self) -> cloudflared.Connector:
        return d.connector(self.found.spec, self.checksum)

    async def __call__(self, change: Change[d.Step]) -> None:
        if change.kind == d.TUNNEL:
            await self._tunnel()
        elif change.kind == d.DEFAULTS:
            assert self.tunnel is not None
            account = self.found.account
            await step("writing the tunnel's catch-all" + (" and origin settings" if self.found.spec.is_new else ""),
                       account.core.set_tunnel_defaults(account.account_id, self.tunnel.id, self.found.spec.fallback,
                                                        change.payload.origin_request))
        else:
            await self.say_tunnel()
            try:
                await {d.CONFIG_MAP: self._config_map, d.SECRET: self._secret, d.DEPLOYMENT: self._deployment}[
                    change.kind]()
            except Problem as problem:
                self.status.condition(c.CONNECTOR_READY, "False", problem.reason, problem.message)
                raise

    async def _tunnel(self) -> None:
        spec, account = self.found.spec, self.found.account
        core, account_id = account.core, account.account_id
        claim = await claiming.hold(self.claims, "tunnel", claiming.tunnel_key(account_id, spec.cloudflare_name),
                                    spec.source)
        claim = await claiming.record(self.claims, claim, claiming.TUNNEL, keep=True, account=account_id,
                                      name=spec.cloudflare_name)
        tunnel = await step("ensuring the tunnel", core.ensure_tunnel(account_id, spec.cloudflare_name,
                                                                      claim.recorded(claiming.TUNNEL)))
        await claiming.record(self.claims, claim, claiming.TUNNEL, tunnel.id)
        self.tunnel = tunnel

    async def say_tunnel(self) -> None:
        """The tunnel in status (written out now), with a Normal Event when it is new there; once."""
        if self.said or self.tunnel is None:
            return
        tunnel, account = self.tunnel, self.found.account
        if self.status.get("tunnelId") != tunnel.id:
            self.events.normal(c.TUNNEL_READY, f"tunnel {tunnel.name} ({tunnel.id})")
        self.status.set(tunnelId=tunnel.id, tunnelName=tunnel.name, accountId=account.account_id,
                        zoneId=account.zone.id)
        self.status.condition(c.TUNNEL_READY, "True", c.RECONCILED, f"tunnel {tunnel.name} ({tunnel.id})")
        await self.status.flush()
        self.said = True

    async def _config_map(self) -> None:
        assert self.tunnel is not None
        spec, core = self.found.spec, self.found.account.core
        target = local.target_for(self.api, spec, self.tunnel.id, dry_run=core.dry_run,
                                  owner=r.owner_reference(self.body))
        self.checksum = await local.regenerate(target, self.claims)
        if self.checksum is None:  # written whole when absent: only a race with its deletion gets here
            raise Problem(r.TUNNEL_NOT_READY, f"ConfigMap {target.where} is not written yet", CONFIG_RETRY)

    async def _secret(self) -> None:
        spec, account = self.found.spec, self.found.account
        if self.found.local:
            secret = local.credentials_manifest(spec, self.found.credentials)
        else:
            assert self.tunnel is not None
            token = await step("reading the tunnel token", account.core.get_tunnel_token(account.account_id,
                                                                                         self.tunnel.id))
            secret = cloudflared.secret_manifest(self.connector, token)
        await self._kube(kube.apply_secret(self.api, self._owned(secret), spec.owned_by))

    async def _deployment(self) -> None:
        manifest = self._owned(cloudflared.deployment_manifest(self.connector))
        self.deployment = await self._kube(kube.apply_deployment(self.api, manifest, self.found.spec.owned_by))
        available = int((self.deployment or {}).get("availableReplicas") or 0)
        self.status.condition(c.CONNECTOR_READY, "True" if available else "False",
                              c.CONNECTORS_AVAILABLE if available else c.CONNECTORS_UNAVAILABLE,
                              f"{available}/{self.found.spec.replicas} cloudflared available")

    def _owned(self, manifest: dict[str, Any]) -> dict[str, Any]:
        manifest["metadata"]["ownerReferences"] = [r.owner_reference(self.body)]
        return manifest

    async def _kube(self, write: Any) -> Any:
        try:
            return await write
        except kube.NotOurs as exc:
            raise Problem(c.OBJECT_NOT_OURS, str(exc), CONFLICT_RETRY) from None


@dataclass
class LeavingExecutor:
    """Makes the changes of one (Cluster)Tunnel's deletion; the hostname claims as the ConfigMap change left them
    (`claims_now`: a claim released meanwhile is gone from it)."""

    api: client.ApiClient
    leaving: r.Leaving
    claims: ClaimStore
    events: EventSink
    claims_now: dict[str, Claim] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.claims_now = {claim.key: claim for claim in self.leaving.routed}

    async def __call__(self, change: Change[d.Step]) -> None:
        leaving = self.leaving
        if change.key == d.CONFIG_RULES:
            await self._config_rules(change.payload.claims)
        elif change.kind == "hostname":
            claim = self.claims_now.get(change.name)
            if claim is None:
                return  # released meanwhile: nothing left to tear down
            assert leaving.account is not None
            claiming.say_teardown(self.events, await claiming.tear_down_hostname(
                leaving.account.core, self.claims, claim, account_id=leaving.account.account_id,
                zone_id=leaving.account.zone.id))
        elif change.kind == d.TUNNEL:
            await self._tunnel(change)
        elif change.kind == d.CONFIG_MAP:
            await local.delete_config(self.api, leaving.namespace, leaving.name, self._owned_by, leaving.uid)
        else:
            try:
                await kube.delete_namespaced(self.api, change.kind, leaving.namespace, change.name, self._owned_by,
                                             leaving.uid)
            except kube.NotOurs as exc:
                self.events.warning(c.OBJECT_NOT_OURS, f"left in place: {exc}")

    @property
    def _owned_by(self) -> dict[str, str]:
        return m.owned_by(self.leaving.kind, self.leaving.name, self.leaving.owner_id)

    async def _config_rules(self, gone: tuple[Claim, ...]) -> None:
        """The rules of its ConfigMap out first (one regeneration), those entries forgotten."""
        kept = {claim.key: claim for claim in await local.drop_rules(self.claims, list(gone))}
        for claim in gone:
            if claim.key in kept:
                self.claims_now[claim.key] = kept[claim.key]
            else:
                self.claims_now.pop(claim.key, None)
            self.events.normal(c.TUNNEL_RULE_REMOVED, f"tunnel rule for {claim.key} removed from ConfigMap "
                               f"{self.leaving.namespace}/{self.leaving.name}")

    async def _tunnel(self, change: Change[d.Step]) -> None:
        claim, account = change.payload.claim, self.leaving.account
        assert claim is not None and account is not None
        done = await claiming.tear_down_tunnel(account.core, self.claims, claim, account_id=account.account_id)
        claiming.say_teardown(self.events, done)
        if not done.released and claim.entry(claiming.TUNNEL) is not None and not done.left:
            raise Problem(c.DELETING, f"the tunnel of {self.leaving.source} is not removed yet", MISSING_RETRY)
