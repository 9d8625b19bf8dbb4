"""The *apply* step of a TunnelBinding or annotated Service: :func:`apply` makes the admitted changes, each as soon
as the changes it needs are made (the hostnames at once, so the core's writers coalesce them: one configuration PUT
or ConfigMap write, one DNS batch); :class:`Executor` makes one change through the core (or, for a locally
configured tunnel, :mod:`local`'s ConfigMap writer), recording it in the hostname's claim (an intent before a
create, completed after) and saying it in an Event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from chutes import conditions as c
from chutes.claims import Claim, ClaimLost, ClaimStore
from chutes.cloudflare_core import AccessAppSpec, DesiredRecord, NotFound, cname_target
from chutes.frontdoors import claiming
from chutes.frontdoors.changes import Admitted, Change, describe
from chutes.frontdoors.problems import EventSink, Problem, step
from chutes.frontdoors.retries import CONFIG_RETRY
from chutes.frontdoors.tunnels import local
from chutes.frontdoors.tunnels import tunnel_read as t
from chutes.frontdoors.tunnels.account import Account
from chutes.frontdoors.tunnels.decide import Step, app_name

__all__ = ["Executor", "apply"]

logger = logging.getLogger(__name__)
P = TypeVar("P")


async def apply(admitted: Admitted[P], run: Callable[[Change[P]], Awaitable[None]]) -> None:
    """Make `admitted.now`, each once the changes it needs are made (a failed need fails it too); held changes
    are logged. The first failure is raised once every started change has ended."""
    for change, why in admitted.held:
        logger.info("not made: %s (%s)", describe(change), why)
    tasks: dict[str, asyncio.Task[None]] = {}

    async def make(change: Change[P], needs: list[asyncio.Task[None]]) -> None:
        for need in needs:
            await need
        await run(change)

    for change in admitted.now:
        tasks[change.ref] = asyncio.ensure_future(make(change, [tasks[n] for n in change.needs if n in tasks]))
    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    if failed := next((r for r in results if isinstance(r, BaseException)), None):
        raise failed


@dataclass
class Executor:
    """Makes one change for `source`, threading each hostname's claim through its changes (`claims_now`, from the
    claims the read held: `before`, the proof a rule write is judged on)."""

    account: Account
    tunnel_id: str
    claims: ClaimStore
    events: EventSink
    before: dict[str, Claim]
    target: local.Target | None = None
    claims_now: dict[str, Claim] = field(default_factory=dict)
    idp: str = ""
    app_ids: dict[str, str] = field(default_factory=dict)
    theirs: dict[str, list[str]] = field(default_factory=dict)  # a withdrawn hostname's records not ours
    removed: dict[str, bool] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)  # withdrawn hostnames whose claim was released meanwhile

    def __post_init__(self) -> None:
        self.claims_now = dict(self.before)

    async def __call__(self, change: Change[Step]) -> None:
        if change.payload.withdrawn:
            await self._withdraw(change)
        elif change.kind == "identity_provider":
            self.idp = (await step("ensuring the one-time PIN identity provider",
                                   self.account.core.ensure_otp_idp(self.account.account_id))).id
        elif change.payload.txt:
            await step(f"removing adyanth's {change.name}", self.account.core.delete_dns_record(
                self.account.zone.id, change.name, "TXT", self.claims_now[change.payload.fqdn].source))
            self.events.normal(c.DNS_RECORD_REMOVED, f"TXT {change.name} (adyanth's ownership record for "
                               f"{change.payload.fqdn}) removed")
        elif change.action == "delete":  # no longer asked of a hostname still routed: DNS updates, Access, the
            await self._remove(change)  # rule in the tunnel it moved out of
        elif change.kind == "access_app":
            await self._access_app(change)
        elif change.kind == "access_policy":
            await self._access_policy(change)
        elif change.kind == "tunnel_rule":
            await self._rule(change)
        else:
            await self._cname(change)

    async def _remove(self, change: Change[Step]) -> None:
        claim, done = await self._take_out(change.kind, self.claims_now[change.payload.fqdn])
        self.claims_now[change.payload.fqdn] = claim
        claiming.say_teardown(self.events, done)

    async def _take_out(self, kind: str, claim: Claim) -> tuple[Claim, claiming.Teardown]:
        """Remove the claim's object of `kind` (a rule, the source's records at the name, the Access application)
        as the claim proves it ours, and forget its entry: a local rule leaves its ConfigMap."""
        if kind == "tunnel_rule" and local.is_local(claim):
            done = claiming.Teardown()
            where = (claim.entry(claiming.TUNNEL_RULE) or {}).get(local.ENTRY_CONFIG)
            [claim] = await local.drop_rules(self.claims, [claim]) or [claim]
            done.note(claiming.TUNNEL_RULE, f"tunnel rule for {claim.key} removed from ConfigMap {where}")
            return claim, done
        obj = {"tunnel_rule": claiming.TUNNEL_RULE, "dns_record": claiming.DNS}.get(kind, claiming.ACCESS_APP)
        return await claiming.remove_object(self.account.core, self.claims, claim, obj,
                                            account_id=self.account.account_id, zone_id=self.account.zone.id)

    async def _access_app(self, change: Change[Step]) -> None:
        core, account_id, fqdn = self.account.core, self.account.account_id, change.payload.fqdn
        claim, name = self.claims_now[fqdn], app_name(fqdn, core.owner_id)
        claim = await claiming.record(self.claims, claim, claiming.ACCESS_APP, keep=True, account=account_id, name=name)
        app = await step("ensuring the Access application", core.ensure_access_app(account_id, AccessAppSpec(
            name=name, domain=fqdn, allowed_idps=(self.idp,), auto_redirect_to_identity=True,
        ), claim.recorded(claiming.ACCESS_APP), policy=change.payload.allow))
        if (claim.entry(claiming.ACCESS_APP) or {}).get("id") != app.id:
            claim = await self.claims.complete(claim, claiming.ACCESS_APP, app.id, account=account_id, name=name)
            self.events.normal(c.ACCESS_APPLICATION_READY, f"Access application {name} for {fqdn}")
        self.claims_now[fqdn], self.app_ids[fqdn] = claim, app.id

    async def _access_policy(self, change: Change[Step]) -> None:
        fqdn, app_id = change.payload.fqdn, self.app_ids[change.payload.fqdn]
        assert change.payload.allow is not None
        policy = await step("ensuring the Access policy", self.account.core.ensure_app_policy(
            self.account.account_id, app_id, change.payload.allow))
        self.claims_now[fqdn] = await claiming.record(self.claims, self.claims_now[fqdn], claiming.ACCESS_POLICY,
                                                      policy.id, app=app_id)

    async def _rule(self, change: Change[Step]) -> None:
        fqdn, rule = change.payload.fqdn, change.payload.rule
        assert rule is not None
        claim = self.claims_now[fqdn]
        recorded = claim.entry(claiming.TUNNEL_RULE) or {}
        try:
            if self.target is not None:
                claim = await local.write_rule(self.target, self.claims, claim, self.account.account_id, rule)
            else:
                claim = await step("writing the tunnel ingress rule", claiming.write_rule(
                    self.account.core, self.claims, claim, self.before[fqdn], self.account.account_id,
                    self.tunnel_id, rule))
        except Problem as problem:
            if not isinstance(problem.__cause__, NotFound):
                raise
            # The tunnel read at the start of this pass is gone (its Tunnel deleted and made again meanwhile, or
            # deleted behind our back): not a rejection of the rule; the next pass reads the tunnel again.
            raise Problem(t.TUNNEL_NOT_READY, f"tunnel {self.tunnel_id} is gone", CONFIG_RETRY) from None
        if recorded.get("service") != rule.service or recorded.get("tunnel") != self.tunnel_id:
            self.events.normal(c.TUNNEL_RULE_READY, f"tunnel ingress rule {fqdn} → {rule.service}")
        self.claims_now[fqdn] = claim

    async def _cname(self, change: Change[Step]) -> None:
        core, zone_id, fqdn = self.account.core, self.account.zone.id, change.payload.fqdn
        claim = self.claims_now[fqdn]
        entry = claim.entry(claiming.DNS) or {}
        claim = await claiming.record(self.claims, claim, claiming.DNS, zone=zone_id, type="CNAME")
        target = cname_target(self.tunnel_id)
        record = await step(f"ensuring the CNAME for {fqdn}", core.ensure_dns_record(
            zone_id, DesiredRecord(name=fqdn, type="CNAME", content=target, proxied=True, source=claim.source)))
        if entry.get("id") != record.id:
            claim = await self.claims.complete(claim, claiming.DNS, record.id, zone=zone_id, type="CNAME")
            self.events.normal(c.DNS_RECORD_READY, f"proxied CNAME {fqdn} → {target}")
        self.claims_now[fqdn] = claim

    async def _withdraw(self, change: Change[Step]) -> None:
        """One object of a hostname no longer routed (rule, records, Access: as the claim proves them ours); its
        claim released after the last one, unless records not ours keep its Access application in place."""
        core, fqdn = self.account.core, change.payload.fqdn
        claim = self.claims_now[fqdn]
        done = claiming.Teardown()
        if fqdn in self.lost:
            return
        if change.kind == "access_app" and self.theirs.get(fqdn):
            done.left.append(f"{fqdn}: DNS record(s) {', '.join(self.theirs[fqdn])} not made for {claim.source} "
                             "remain: its Access application stays until they are gone")
        else:
            try:
                claim, done = await self._take_out(change.kind, claim)
            except Problem as problem:
                if not isinstance(problem.__context__, ClaimLost):
                    raise
                self.lost.add(fqdn)  # released meanwhile (e.g. by the sweep): nothing left to do
                return
            if change.kind == "dns_record":
                self.theirs[fqdn] = done.others
        self.claims_now[fqdn] = claim
        self.removed[fqdn] = self.removed.get(fqdn, False) or bool(done.removed)
        claiming.say_teardown(self.events, done)
        if change.payload.release and not self.theirs.get(fqdn) and claiming.enforced(core) and not any(
                obj in claim.entries for obj in (claiming.TUNNEL_RULE, claiming.ACCESS_APP, claiming.SERVICE_TOKEN)):
            await self.claims.release(claim)
