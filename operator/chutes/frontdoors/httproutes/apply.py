"""The HTTPRoute door's *apply* step: :class:`Executor` makes one change of a route's decision through the core, each
object recorded in the claim before it is created (an intent) and its id right after, said in a Normal Event when
new, and gathered in the route's state (`current`). A Cloudflare failure is a :class:`Problem` (the next attempt
resumes from the claim)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from chutes import conditions as c
from chutes import kube
from chutes.claims import Claim, ClaimStore
from chutes.cloudflare_core import AccessApp, CloudflareError, Conflict, DnsRecord, Policy, ServiceToken
from chutes.frontdoors import adoption, claiming
from chutes.frontdoors.changes import Change
from chutes.frontdoors.claiming import ACCESS_APP, ACCESS_POLICY, DNS, SERVICE_TOKEN, TUNNEL_RULE
from chutes.frontdoors.httproutes import annotations as a
from chutes.frontdoors.httproutes import desired as d
from chutes.frontdoors.httproutes import ledger, unpublish
from chutes.frontdoors.httproutes import state as s
from chutes.frontdoors.httproutes.context import Context
from chutes.frontdoors.httproutes.decide import moved
from chutes.frontdoors.httproutes.read import Gathered, check_name
from chutes.frontdoors.problems import EventSink, Problem, problem_from_cloudflare, step
from chutes.frontdoors.retries import FOREIGN_RETRY

__all__ = ["Executor"]

_OBJECTS = {"tunnel_rule": TUNNEL_RULE, "dns_record": DNS, "access_app": ACCESS_APP, "service_token": SERVICE_TOKEN}


async def _intend(claims: ClaimStore, claim: Claim, obj: str, **fields: str) -> Claim:
    """Record the intent to create `obj` (``fields``: where, which name) unless one for these fields is recorded; an
    id recorded for them is kept (an object deleted behind our back is made again, then recorded under its new id)."""
    entry = claim.entry(obj) or {}
    same = all(entry.get(key) == value for key, value in fields.items())
    if same and entry.get("since"):
        return claim
    kept = {"id": str(entry["id"])} if same and entry.get("id") else {}
    return await claims.intend(claim, obj, **kept, **fields)


class Executor:
    """Makes one route's changes in order, threading its claim (`before`: as recorded before this attempt's writes,
    the proof of which rule in the tunnel is ours). `removed`: what a decision that fails closed took down."""

    def __init__(self, ctx: Context, found: Gathered, route: Mapping[str, Any], events: EventSink) -> None:
        self.ctx, self.found, self.route, self.events = ctx, found, route, events
        inputs = self.inputs = found.inputs
        self.core, self.claims, self.settings = found.core, found.claims, inputs.settings
        self.hostname, self.account = inputs.settings.hostname, inputs.tenant.account_id
        self.claim = self.before = inputs.claim
        self.tunnel_id = inputs.settings.tunnel_id or inputs.tenant.tunnel_id
        self.previous = None if moved(inputs.previous, self.hostname, inputs.tenant.name) else inputs.previous
        self.current = self.previous.copy() if self.previous is not None else s.RouteState(inputs.namespace,
                                                                                             inputs.name)
        self.current.set(hostname=self.hostname, tenant_name=inputs.tenant.name, zone_id=inputs.zone_id,
                         tunnel_id=self.tunnel_id)
        if self.previous is None:  # recorded before the first write: a deletion finds the route's claims through it
            self.current.set(hostname_route_id=self.tunnel_id if inputs.rule else None,
                             dns_record_ip=inputs.address or None)
        self.app: AccessApp | None = None
        self.token: ServiceToken | None = None
        self.dns: DnsRecord | None = None
        self.unapplied: list[str] = []
        self.removed: list[str] = []
        self.state_written = False

    async def __call__(self, change: Change[str]) -> None:
        runs: dict[str, Callable[[], Awaitable[None]]] = {
            "access_app": self._access_app, "access_policy": self._allow_policy, "service_token": self._token,
            "Secret": self._secret, "tunnel_rule": self._rule, "dns_record": self._dns, "ConfigMap": self._state}
        if change.kind == "hostname":
            await self._supersede(change.name)
        elif change.action == "delete" and change.kind == "Secret":
            await unpublish.delete_token_secret(self.ctx, self.inputs.namespace, change.name)
        elif change.action == "delete" and not change.ensure:
            await self._remove(change)
        else:
            await runs[change.kind]()

    async def _supersede(self, key: str) -> None:
        """Tear down an earlier claim of the route, routing first, with the token that reaches it (what is left, not
        ours any more, is said in a Warning); this hostname's, published with the old tenant, is claimed again."""
        assert self.found.old_store is not None
        core, claims, account = self.found.old_store
        previous = self.inputs.previous
        zone = previous.get("zone_id") if previous is not None and previous.hostname == key else ""
        old = next(claim for claim in self.inputs.old if claim.key == key)
        done = await claiming.tear_down_hostname(core, claims, old, account_id=account, zone_id=zone or None)
        unpublish.announce(key, done, self.events)
        if done.released and key != self.claim.key:
            self.events.normal(c.HOSTNAME_REMOVED, f"{key} is no longer published")
        if key != self.claim.key or not claiming.enforced(core):  # (else the policy keeps them: the claim goes on)
            return
        self.claim = self.before = await ledger.hold(self.ctx, self.claims, self.route, key, None)
        if self.claim.entries:  # not released: what is left there blocks the move
            raise Problem(c.HOSTNAME_CONFLICT, f"{key}: what the route published with its previous tenant could not "
                          "all be removed (see its Events)", FOREIGN_RETRY)
        if not self.inputs.checked:  # now a first publish
            assert self.inputs.record is not None
            try:
                await check_name(self.core, self.inputs.zone_id, self.inputs.record, (), asked=self.inputs.asked)
            except Problem:
                await self.claims.release(self.claim)
                raise

    async def _state(self) -> None:
        await s.write(self.ctx.api, self.ctx.operator_namespace, self.current)
        self.state_written = True  # the ConfigMap read at the start of the pass is no longer what is there

    async def _access_app(self) -> None:
        """``cfzt-{hostname}`` (proven by the claim; adopted when permitted); a new app comes with its allow policy."""
        settings, core, account = self.settings, self.core, self.account
        name = a.app_name(self.hostname, core.owner_id)
        self.claim = await _intend(self.claims, self.claim, ACCESS_APP, account=account, name=name)
        doing = "ensuring the Access application"
        spec = d.access_app_spec(settings, self.inputs.policy_ids, core.owner_id, adopt=self.inputs.adopt)
        try:
            app = await core.ensure_access_app(account, spec, self.claim.recorded(ACCESS_APP),
                                               policy=d.allow_policy_spec(settings))
        except Conflict as conflict:
            hint = f" ({adoption.NOT_PERMITTED})" if self.inputs.asked and not self.inputs.adopt else ""
            raise Problem(c.HOSTNAME_CONFLICT, f"{doing}: {conflict.message}{hint}", FOREIGN_RETRY) from conflict
        except CloudflareError as exc:
            raise problem_from_cloudflare(exc, doing) from exc
        if self.claim.recorded(ACCESS_APP).id != app.id:
            self.claim = await self.claims.complete(self.claim, ACCESS_APP, app.id, account=account, name=name)
        if self.current.get("access_app_id") != app.id:
            self.events.normal(c.ACCESS_APPLICATION_READY, f"Access application {name} protects {self.hostname}")
        self.current.set(access_app_id=app.id)
        self.app = app

    async def _allow_policy(self) -> None:
        """``cfzt-{hostname}-allow``; without allow rules, one left from earlier settings goes unless the write policy
        keeps it; then what the write policy left differing from the settings (:func:`desired.unapplied_access`)."""
        app, core, account, claims = self.app, self.core, self.account, self.claims
        assert app is not None  # the application's change comes first
        spec = d.allow_policy_spec(self.settings)
        live: Policy | None = None
        if spec is not None:
            self.claim = await _intend(claims, self.claim, ACCESS_POLICY, app=app.id)
            live = await step("ensuring the Access allow policy", core.ensure_app_policy(account, app.id, spec))
            if (self.claim.entry(ACCESS_POLICY) or {}).get("id") != live.id:
                self.claim = await claims.complete(self.claim, ACCESS_POLICY, live.id, app=app.id)
        elif self.current.get("access_policy_ids") or self.claim.entry(ACCESS_POLICY) or set(app.policies) - set(
                self.inputs.policy_ids):
            name = a.allow_policy_name(self.hostname)
            found = await step("looking up the allow policy", core.find_app_policy(account, app.id, name))
            if found is not None and core.gate.forbids("delete"):
                live = found  # the write policy keeps it (its recorded id and claim entry too): said, not hidden
            elif found is not None:
                await step("removing the allow policy", core.delete_app_policy(account, app.id, found.id))
                self.events.normal(c.ACCESS_POLICY_REMOVED, f"{name} removed: no allowEmails/allowGroups")
        if spec is None and live is None and self.claim.entry(ACCESS_POLICY) is not None:
            self.claim = await claims.forget(self.claim, ACCESS_POLICY)
        self.current.set(access_policy_ids=live.id if live is not None else None)
        if core.policy != "sync":  # what the write policy left differing from the settings
            self.unapplied = d.unapplied_access(self.settings, self.inputs.policy_ids, app, live)

    async def _token(self) -> None:
        """``cfzt-{hostname}`` (proven by the claim); a Secret lost or stale gets a new secret (rotation)."""
        core, account, namespace = self.core, self.account, self.inputs.namespace
        name, secret_name = a.token_name(self.hostname, core.owner_id), a.secret_name(self.inputs.name)
        self.claim = await _intend(self.claims, self.claim, SERVICE_TOKEN, account=account, name=name)
        token = await step("ensuring the service token", core.ensure_service_token(
            account, name, self.settings.service_token.duration, self.claim.recorded(SERVICE_TOKEN)))
        if self.claim.recorded(SERVICE_TOKEN).id != token.id:
            self.claim = await self.claims.complete(self.claim, SERVICE_TOKEN, token.id, account=account, name=name)
        if token.client_secret is None:
            try:
                stored = await kube.read_secret_value(self.ctx.api, namespace, secret_name, a.CLIENT_ID_KEY)
            except KeyError:
                stored = None
            if stored != token.client_id:
                token = await step("issuing a new service token secret", core.rotate_service_token(account, token.id))
                if token.client_secret is not None:  # None: the policy or dry-run skipped the rotation
                    self.events.normal(c.SERVICE_TOKEN_ROTATED, f"service token {name}: Secret {secret_name} was "
                                       "missing or stale, a new secret was issued into it")
        self.token = token

    async def _secret(self) -> None:
        """The token's id and secret, only in ``cfzt-svctoken-{route}`` (one without our label: ObjectNotOurs)."""
        token, meta = self.token, self.route["metadata"]
        assert token is not None  # the token's change comes first
        name, secret_name = a.token_name(self.hostname, self.core.owner_id), a.secret_name(self.inputs.name)
        if token.client_secret is not None:
            owner = {"apiVersion": f"{a.ROUTE_GROUP}/{a.ROUTE_VERSION}", "kind": a.ROUTE_KIND,
                     "name": self.inputs.name, "uid": meta.get("uid", "")}
            manifest = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {
                "name": secret_name, "namespace": self.inputs.namespace, "labels": {a.MANAGED_BY_LABEL: a.MANAGED_BY},
                "ownerReferences": [owner]},
                "stringData": {a.CLIENT_ID_KEY: token.client_id, a.CLIENT_SECRET_KEY: token.client_secret}}
            try:
                await kube.apply_secret(self.ctx.api, manifest, {a.MANAGED_BY_LABEL: a.MANAGED_BY})
            except kube.NotOurs as exc:
                raise Problem(c.OBJECT_NOT_OURS, str(exc), FOREIGN_RETRY) from None
            if self.current.get("service_token_id") != token.id:
                self.events.normal(c.SERVICE_TOKEN_READY, f"service token {name}; credentials in Secret {secret_name}")
        self.current.set(service_token_id=token.id, service_token_secret_name=secret_name)

    async def _rule(self) -> None:
        """:func:`claiming.write_rule`: a rule at the hostname is replaced only when recorded before this attempt."""
        rule = self.inputs.rule
        assert rule is not None
        self.claim = await step(f"writing the tunnel rule of {self.hostname}", claiming.write_rule(
            self.core, self.claims, self.claim, self.before, self.account, self.tunnel_id, rule,
            current=not self.core.dry_run))  # read this pass under the route's lock: the ledger's claim
        self.current.set(hostname_route_id=self.tunnel_id)

    async def _dns(self) -> None:
        """The record; one the state lists for the route without our marker (seed-made) is adopted."""
        record, zone_id = self.inputs.record, self.inputs.zone_id
        assert record is not None
        self.claim = await _intend(self.claims, self.claim, DNS, zone=zone_id, type=record.type)
        dns = self.dns = await step(f"ensuring the {record.type} record {record.name}", self.core.ensure_dns_record(
            zone_id, record, proven_ids=self.inputs.adopt_ids))
        tunnel = self.inputs.rule is not None
        if self.previous is None or self.previous.get("cname_record_id" if tunnel else "dns_record_id") != dns.id:
            proxied = " (proxied)" if dns.proxied else ""
            self.events.normal(c.DNS_RECORD_READY, f"{dns.type} {self.hostname} → {dns.content}{proxied}")
        if tunnel:
            self.current.set(cname_record_id=dns.id, dns_record_id=None, dns_record_ip=None)
        else:
            self.current.set(dns_record_id=dns.id, dns_record_ip=self.inputs.address, cname_record_id=None,
                             hostname_route_id=None)

    async def _remove(self, change: Change[str]) -> None:
        """Through the claim's entries (verified, then forgotten): the routing of a decision failing closed (in
        `removed`), a rule in another tunnel, a record of the other address type, what the settings no longer want."""
        hostname, core = self.hostname, self.core
        if change.kind == "dns_record" and change.payload:  # A <-> AAAA: the route's own record of the other type
            doing = f"removing the {change.payload} record {hostname}"
            try:
                await core.delete_dns_record(self.inputs.zone_id, hostname, change.payload, self.claim.source)
            except Conflict as conflict:
                self.events.warning(c.HOSTNAME_CONFLICT, f"{doing}: left in place, not ours ({conflict.message})")
            except CloudflareError as exc:
                raise problem_from_cloudflare(exc, doing) from exc
            return
        obj = _OBJECTS[change.kind]
        previous = self.inputs.previous
        zone = previous.get("zone_id") if self.inputs.missing and previous is not None and \
            previous.hostname == hostname else ""
        tunnel = (self.claim.entry(TUNNEL_RULE) or {}).get("tunnel")
        if self.claim.entry(obj) is None:
            return
        self.claim, done = await claiming.remove_object(core, self.claims, self.claim, obj, account_id=self.account,
                                                        zone_id=zone or None)
        if self.inputs.missing:
            self.removed += done.removed
            return
        if not change.payload:
            unpublish.announce(hostname, claiming.Teardown(left=done.left), self.events)
        if done.removed:
            self.events.normal(*{
                TUNNEL_RULE: (c.TUNNEL_RULE_REMOVED, f"{hostname}: rule removed from tunnel {tunnel}"),
                ACCESS_APP: (c.ACCESS_APPLICATION_REMOVED, f"{hostname} is no longer behind Access"),
                SERVICE_TOKEN: (c.SERVICE_TOKEN_REMOVED, f"service token of {hostname} and its Secret removed"),
            }[obj])
