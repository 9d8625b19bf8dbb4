"""The ChuteGateway door's *apply* step: :class:`Executor` makes one change through the core (the connector through
kube), each object recorded in the gateway's claims before it is created and its id right after, and said at once:
its id in status (written out before the next change), a Normal Event when new. A Cloudflare failure is a
:class:`Problem` (the next attempt resumes from the claims). A hostname the gateway moved away from is torn down at
once, what its claim records (:func:`claiming.tear_down_hostname`: routing before Access; the claim keeps what is
left after a failure), its rule and records said as one Event. :class:`LeavingExecutor` makes one change of a
deletion or withdrawal (:func:`decide.decide_leaving`). Both say it: Normal Events for what went, Warnings for what
stays, not ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kubernetes_asyncio import client

from chutes import conditions as c
from chutes import kube
from chutes.claims import Claim, ClaimStore
from chutes.cloudflare_core import AccessApp, CloudflareCore, cname_target
from chutes.cloudflare_core.models import AccessAppSpec, AppPolicySpec, DesiredRecord, IngressRule
from chutes.frontdoors import claiming
from chutes.frontdoors.changes import Change
from chutes.frontdoors.gateways import desired as d
from chutes.frontdoors.gateways.read import Inputs, Leaving, hinted
from chutes.frontdoors.gateways.status import StatusWriter, access_condition, connector_condition
from chutes.frontdoors.problems import EventSink, Problem, step
from chutes.frontdoors.retries import CONFLICT_RETRY
from chutes.frontdoors.teardown import Out
from chutes.observability.metrics import HOSTNAMES

__all__ = ["Executor", "LeavingExecutor", "drop_access"]


def adopt_manifest(manifest: dict[str, Any], owner: Mapping[str, Any]) -> dict[str, Any]:
    """Make the gateway the controller owner of `manifest` (garbage-collected with it)."""
    meta = owner["metadata"]
    manifest["metadata"]["ownerReferences"] = [{
        "apiVersion": f"{d.GROUP}/{d.VERSION}", "kind": d.GATEWAY_KIND, "name": meta["name"], "uid": meta["uid"],
        "controller": True, "blockOwnerDeletion": True,
    }]
    return manifest


class Executor:
    """Makes the changes of one gateway's decision, in order; what earlier changes gave (the tunnel's id, the
    Access application) serves the later ones."""

    def __init__(self, api: client.ApiClient, inputs: Inputs, body: Mapping[str, Any], status: StatusWriter,
                 events: EventSink, claims: ClaimStore) -> None:
        self.api, self.body, self.status, self.events, self.claims = api, body, status, events, claims
        self.want, self.account, self.core = inputs.desired, inputs.account, inputs.account.core
        self.claim = self.before = inputs.claim  # `before`: which rule is ours (the claim before this attempt)
        self.tunnel_claim, self.adopt, self.old = inputs.tunnel_claim, inputs.adopt, {o.key: o for o in inputs.old}
        self.hint = inputs.hint
        self.tunnel_id = ""
        self.app: AccessApp | None = None

    @property
    def allow(self) -> AppPolicySpec:
        return AppPolicySpec(name=d.POLICY_NAME, decision="allow", include=tuple(d.policy_include(self.want)))

    async def _said(self, field: str, object_id: str, reason: str, message: str) -> None:
        """`object_id` in status (written out now), and a Normal Event when it is new there."""
        if self.status.get(field) != object_id:
            self.events.normal(reason, message)
        self.status.set(**{field: object_id})
        await self.status.flush()

    async def __call__(self, change: Change[None]) -> None:
        runs: dict[str, Callable[[], Awaitable[None]]] = {
            "tunnel": self._tunnel, "access_app": self._app, "access_policy": self._policy, "tunnel_rule": self._rule,
            "dns_record": self._cname, "Secret": self._secret, "Deployment": self._deployment}
        if change.action == "delete" and change.kind == "access_app":
            self.claim = await drop_access(self.core, self.claims, self.claim, self.account.account_id, self.events)
        elif change.kind == "hostname":
            old = self.old[change.name]
            claiming.say_teardown(self.events, await claiming.tear_down_hostname(
                self.core, self.claims, old, account_id=self.account.account_id, zone_id=self.account.zone_id),
                old, change=True)
        else:
            await runs[change.kind]()

    async def _tunnel(self) -> None:
        account_id, name = self.account.account_id, self.want.cloudflare_name
        self.tunnel_claim = await claiming.record(self.claims, self.tunnel_claim, claiming.TUNNEL, keep=True,
                                          account=account_id, name=name)
        tunnel = await step("ensuring the tunnel", self.core.ensure_tunnel(
            account_id, name, self.tunnel_claim.recorded(claiming.TUNNEL)))
        await claiming.record(self.claims, self.tunnel_claim, claiming.TUNNEL, tunnel.id)
        self.tunnel_id = tunnel.id
        await self._said("tunnelId", tunnel.id, c.TUNNEL_READY, f"tunnel {name} ({tunnel.id})")

    async def _app(self) -> None:  # before anything routes traffic to the hostname; a new app comes with its policy
        want, account_id = self.want, self.account.account_id
        self.claim = await claiming.record(self.claims, self.claim, claiming.ACCESS_APP, keep=True, account=account_id,
                                   name=want.cloudflare_name)
        spec = AccessAppSpec(name=want.cloudflare_name, domain=want.fqdn, session_duration=want.session_duration,
                             allowed_idps=(str(self.account.otp_idp_id),), auto_redirect_to_identity=True,
                             adopt=self.adopt)
        app = self.app = await hinted("ensuring the Access application", self.core.ensure_access_app(
            account_id, spec, self.claim.recorded(claiming.ACCESS_APP), policy=self.allow), self.hint)
        self.claim = await claiming.record(self.claims, self.claim, claiming.ACCESS_APP, app.id)
        await self._said("accessAppId", app.id, c.ACCESS_APPLICATION_READY,
                         f"Access application {want.cloudflare_name} for {want.fqdn}")

    async def _policy(self) -> None:
        assert self.app is not None  # the application's change comes first
        app, fqdn = self.app, self.want.fqdn
        policy = await step("ensuring the Access policy", self.core.ensure_app_policy(
            self.account.account_id, app.id, self.allow))
        self.claim = await claiming.record(self.claims, self.claim, claiming.ACCESS_POLICY, policy.id, app=app.id)
        access_condition(self.status, self.events, self.want, self.core.policy, app, policy)
        await self._said("accessPolicyId", policy.id, c.ACCESS_POLICY_READY,
                         f"Access policy {d.POLICY_NAME} ({policy.id}) on {fqdn}")

    async def _rule(self) -> None:  # a rule there is ours only as the claim recorded it before this attempt
        want = self.want
        if want.public:
            self.status.condition(c.ACCESS_READY, "True", c.PUBLIC, "access.public is true: no Access application")
        rule = IngressRule(hostname=want.fqdn, service=want.service_url)
        self.claim = await step("writing the tunnel ingress rule", claiming.write_rule(
            self.core, self.claims, self.claim, self.before, self.account.account_id, self.tunnel_id, rule))
        route = f"{want.fqdn} → {want.service_url}"
        previous = c.find(self.status.get("conditions"), c.TUNNEL_READY)
        if previous is None or (previous.get("status"), previous.get("message")) != ("True", route):
            self.events.normal(c.TUNNEL_RULE_READY, f"tunnel ingress rule {route}")
        self.status.condition(c.TUNNEL_READY, "True", c.RECONCILED, route)

    async def _cname(self) -> None:
        want, zone_id = self.want, self.account.zone_id
        self.claim = await claiming.record(self.claims, self.claim, claiming.DNS, zone=zone_id, type="CNAME")
        target = cname_target(self.tunnel_id)
        cname = DesiredRecord(name=want.fqdn, type="CNAME", content=target, proxied=True, source=want.source,
                              adopt=self.adopt)
        record = await hinted(f"ensuring the CNAME for {want.fqdn}", self.core.ensure_dns_record(zone_id, cname),
                              self.hint)
        if self.status.get("dnsRecordId") != record.id:
            self.events.normal(c.DNS_RECORD_READY, f"proxied CNAME {want.fqdn} → {target}")
        self.status.set(dnsRecordId=record.id, hostname=want.fqdn, url=want.url)
        self.status.condition(c.DNS_READY, "True", c.RECONCILED, f"CNAME {want.fqdn}")
        await self.status.flush()
        HOSTNAMES.publish(d.FRONT_DOOR, want.source, [want.fqdn])

    async def _secret(self) -> None:  # an object of its name not labelled as this gateway's: ObjectNotOurs
        if self.want.public:  # routing is in place: the status names no Access application any more
            self.status.set(accessAppId=None, accessPolicyId=None)
        token = await step("reading the tunnel token", self.core.get_tunnel_token(self.account.account_id,
                                                                                 self.tunnel_id))
        await self._kube(kube.apply_secret(self.api, adopt_manifest(d.secret_manifest(self.want, token), self.body),
                                           self.want.owned_by))

    async def _deployment(self) -> None:
        manifest = adopt_manifest(d.deployment_manifest(self.want), self.body)
        connector_condition(self.status, self.want.replicas,
                            await self._kube(kube.apply_deployment(self.api, manifest, self.want.owned_by)))

    async def _kube(self, write: Awaitable[Any]) -> Any:
        try:
            return await write
        except kube.NotOurs as exc:
            self.status.condition(c.CONNECTOR_READY, "False", c.OBJECT_NOT_OURS, str(exc))
            raise Problem(c.OBJECT_NOT_OURS, str(exc), CONFLICT_RETRY) from None


async def drop_access(core: CloudflareCore, claims: ClaimStore, claim: Claim, account_id: str,
                      events: EventSink) -> Claim:
    """Access switched off: delete the application the hostname claim records (its policy goes with it; an app
    that turns out not to be ours stays, with a Warning), then forget both entries."""
    if claim.entry(claiming.ACCESS_APP) is None:
        return claim
    doing = "removing the old Access application"
    removal = await step(doing, claiming.delete_recorded(core, claim, claiming.ACCESS_APP, account_id=account_id))
    if removal.refused is not None:
        events.warning(c.HOSTNAME_CONFLICT, f"{doing}: left in place, not ours ({removal.refused.message})")
    elif removal.removed:
        claiming.say_policy_removed(events, claim, removal.id)
        events.normal(c.ACCESS_APPLICATION_REMOVED, f"Access application {removal.id} removed")
    return await claiming.forget_access(core, claims, claim)  # kept with the app by the policy or dry-run


class LeavingExecutor:
    """Makes the changes of a gateway's deletion (:func:`decide.decide_leaving`), in order: cloudflared and its
    Secret through kube (one of their names not labelled as this gateway's stays, with a Warning), each hostname
    claim's objects through :class:`claiming.Withdrawer` (said once its last one is made), the tunnel through
    :func:`claiming.tear_down_tunnel` (its active connections go with it: the connectors are gone)."""

    def __init__(self, api: client.ApiClient, leaving: Leaving, body: Mapping[str, Any], events: EventSink) -> None:
        self.api, self.leaving, self.uid, self.events = api, leaving, body["metadata"].get("uid"), events
        account, claims = leaving.account, leaving.claims
        self.withdrawer = None if account is None or claims is None else claiming.Withdrawer(
            account.core, claims, account_id=account.account_id, zone_id=account.zone_id)

    async def __call__(self, change: Change[Out]) -> None:
        names, claim = self.leaving.names, change.payload.claim
        if claim is None:
            try:
                await kube.delete_namespaced(self.api, change.kind, names.namespace, change.name, names.owned_by,
                                             self.uid)
            except kube.NotOurs as exc:
                self.events.warning(c.OBJECT_NOT_OURS, f"left in place: {exc}")
            return
        assert self.withdrawer is not None  # a claim's change: the account was read
        if change.payload.obj == claiming.TUNNEL:
            core, claims, account_id = self.withdrawer.core, self.withdrawer.claims, self.withdrawer.account_id
            claiming.say_teardown(self.events, await claiming.tear_down_tunnel(core, claims, claim,
                                                                               account_id=account_id), claim)
        else:
            done = await self.withdrawer.take(claim, change.payload.obj, last=change.payload.last)
            if done is not None:
                claiming.say_teardown(self.events, done, claim)
