"""One orphan sweep pass over one scope: list this installation's claims (the ledger), then what exists in
Cloudflare, then what the door's live sources want (fresh Kubernetes listings, in that order: a claim or object
created after its listing is not judged, and a source created before its claim is always in the wants), judge
(:mod:`verdict`), delete, release the claims whose objects are gone.

A pass never runs on a partial view: when a listing cannot be loaded, it is skipped and nothing is deleted.
Deletions go through the core's ordinary, proof-checking delete functions (DNS deletions of a phase are made
at once, by id, one batch per zone), one phase at a time in the verdict's order; a failure stops the pass before
the next phase (whatever depended on it waits for the next pass). Under dry-run or a policy that never deletes,
the core skips the deletions itself; the sweep only logs them and releases no claim.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from chutes.claim import ClaimChanged
from chutes.cloudflare_core import CloudflareCore, CloudflareError, NotFound
from chutes.cloudflare_core.models import AccessApp, DnsRecord, ServiceToken, Tunnel, normalize_name
from chutes.observability import metrics
from chutes.sweep import verdict as v
from chutes.sweep.cap import per_pass_message

__all__ = ["ClaimLedger", "Guard", "Scope", "SweepReport", "sweep"]

logger = logging.getLogger(__name__)

LoadWants = Callable[[], Awaitable[v.Wants]]
# A door's guard of the deletions of a pass: entered right before them and held through them, it yields those still
# orphans (judged again, fresh, under the locks its sources' own passes hold), so a source that asks again for a
# hostname while the pass ran never has it torn down under its publish.
Guard = Callable[[Sequence[v.Deletion], Mapping[str, Any]], AbstractAsyncContextManager[Sequence[v.Deletion]]]


class ClaimLedger(Protocol):
    """The part of :class:`chutes.claims.ClaimStore` a pass uses."""

    async def list(self, *, kind: Any = None, source: str | None = None,
                   source_kind: str | None = None) -> Sequence[Any]: ...

    async def release(self, claim: Any, *, unchanged: bool = False) -> None: ...


@dataclass(frozen=True)
class Scope:
    """Where one pass looks: an account and its zones (None: every zone of the account the token reads), and
    what the door judges."""

    names: v.DoorNames
    account_id: str
    zone_ids: tuple[str, ...] | None
    label: str = ""  # for logs: the scope object (e.g. "ChuteConfig default")

    def describe(self) -> str:
        return self.label or f"account {self.account_id}"


@dataclass
class SweepReport:
    """What one pass did. `skipped`: why it did not run (nothing deleted); `deleted`: done; `failed`: tried
    and failed (the rest of the pass was abandoned); `deferred`: over the cap; `kept`: orphans left on purpose;
    `abandoned`: judged orphans after a failed deletion, left for the next pass; `enforced`: False when the core does
    not delete (dry-run or a policy that never deletes)."""

    skipped: str | None = None
    deleted: list[v.Deletion] = field(default_factory=list)
    failed: list[tuple[v.Deletion, str]] = field(default_factory=list)
    deferred: tuple[v.Deletion, ...] = ()
    abandoned: tuple[v.Deletion, ...] = ()
    kept: tuple[str, ...] = ()
    cap: int = 0
    enforced: bool = True

    @property
    def capped(self) -> bool:
        return bool(self.deferred)

    @property
    def orphans(self) -> int:
        counted = [*self.deleted, *(d for d, _ in self.failed), *self.deferred, *self.abandoned]
        return sum(d.object != v.CLAIM for d in counted)

    def cap_message(self) -> str:
        """The Warning Event's message when the cap was hit."""
        return per_pass_message(self.cap, sum(d.object != v.CLAIM for d in self.deleted),
                                [d.describe() for d in self.deferred])


def _enforced(core: CloudflareCore) -> bool:
    """Whether the core really deletes (not under dry-run, nor a policy that never deletes)."""
    return core.policy == "sync" and not core.dry_run


async def _nothing() -> list[Any]:
    return []


async def _cloudflare(core: CloudflareCore, scope: Scope, claims: Sequence[v.ClaimView],
                      ) -> tuple[dict[str, str], dict[str, list[DnsRecord]], list[Tunnel], list[AccessApp],
                                 list[ServiceToken]]:
    """Zones and their records; the account's tunnels, Access applications and service tokens only when a claim
    of the door needs them (a tunnel claim; an entry recorded as an intent)."""
    if scope.zone_ids is None:
        zones = {zone.id: zone.name for zone in await core.list_zones(scope.account_id)}
    else:
        zones = {zone_id: (await core.get_zone(zone_id)).name for zone_id in scope.zone_ids}
    zone_ids = sorted(zones)
    need_tunnels = any(claim.kind == "tunnel" for claim in claims)
    need_apps = any(not (claim.entries.get(v.ACCESS_APP) or {"id": "x"}).get("id") for claim in claims)
    need_tokens = any(not (claim.entries.get(v.SERVICE_TOKEN) or {"id": "x"}).get("id") for claim in claims)
    listed = await asyncio.gather(*(core.list_dns_records(zone_id) for zone_id in zone_ids))
    tunnels, apps, tokens = await asyncio.gather(
        core.list_tunnels(scope.account_id) if need_tunnels else _nothing(),
        core.list_access_apps(scope.account_id) if need_apps else _nothing(),
        core.list_service_tokens(scope.account_id) if need_tokens else _nothing(),
    )
    return zones, dict(zip(zone_ids, listed, strict=True)), tunnels, apps, tokens


async def _rules(core: CloudflareCore, account_id: str, tunnel_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The ingress rules of each tunnel (a tunnel that does not exist has none)."""

    async def one(tunnel_id: str) -> list[dict[str, Any]]:
        try:
            config = await core.get_tunnel_config(account_id, tunnel_id)
        except NotFound:
            return []
        return [dict(rule) for rule in (config or {}).get("ingress") or []]

    ordered = sorted(tunnel_ids)
    found = await asyncio.gather(*(one(tunnel_id) for tunnel_id in ordered))
    return dict(zip(ordered, found, strict=True))


async def sweep(core: CloudflareCore, scope: Scope, load_wants: LoadWants, cap: int,
                ledger: ClaimLedger, guard: Guard | None = None) -> SweepReport:
    """One pass over `scope` (see the module docstring); never raises for Cloudflare or Kubernetes failures.
    `guard`: the door's (see :data:`Guard`); without one, the verdict's deletions are made as judged."""
    door, where = scope.names.door, scope.describe()
    try:
        claims = [claim for kind in scope.names.kinds for claim in await ledger.list(source_kind=kind)]
    except Exception as error:  # a partial ledger must never drive deletions
        logger.warning("Orphan sweep of %s (%s) skipped: listing the claims failed: %s", where, door, error)
        return SweepReport(skipped=f"listing the claims failed: {error}", cap=cap)
    try:
        zones, records, tunnels, apps, tokens = await _cloudflare(core, scope, claims)
    except CloudflareError as error:
        logger.warning("Orphan sweep of %s (%s) skipped: listing Cloudflare failed: %s", where, door, error)
        return SweepReport(skipped=f"listing Cloudflare failed: {error}", cap=cap)
    try:
        wants = await load_wants()
    except Exception as error:  # a partial desired state must never drive deletions
        logger.warning("Orphan sweep of %s (%s) skipped: the desired state could not be loaded: %s", where, door,
                       error)
        return SweepReport(skipped=f"the desired state could not be loaded: {error}", cap=cap)
    inventory = v.Inventory(owner_id=core.owner_id, account_id=scope.account_id, zones=zones, records=records,
                            tunnels=tunnels, apps=apps, tokens=tokens, claims=claims)
    try:
        rules = await _rules(core, scope.account_id, v.tunnels_to_read(inventory, scope.names, wants))
    except CloudflareError as error:
        logger.warning("Orphan sweep of %s (%s) skipped: reading tunnel configurations failed: %s", where, door,
                       error)
        return SweepReport(skipped=f"reading tunnel configurations failed: {error}", cap=cap)
    inventory = v.Inventory(owner_id=core.owner_id, account_id=scope.account_id, zones=zones, records=records,
                            rules=rules, tunnels=tunnels, apps=apps, tokens=tokens, claims=claims)
    verdict = v.judge(inventory, scope.names, wants, cap)
    report = SweepReport(deferred=verdict.deferred, kept=verdict.kept, cap=cap, enforced=_enforced(core))
    for reason in verdict.kept:
        logger.info("Orphan sweep of %s (%s): left in place: %s", where, door, reason)
    for deletion in verdict.deferred:
        logger.info("Orphan sweep of %s (%s): orphan %s waits for the next pass (cap %d)", where, door,
                    deletion.describe(), cap)
    by_name = {claim.name: claim for claim in claims}
    if guard is None:
        await _delete(core, scope, await _unchanged(scope, verdict.deletions, ledger, by_name), report, ledger,
                      by_name, (zones, set(rules)))
    else:
        async with guard(verdict.deletions, by_name) as still:
            for deletion in verdict.deletions:
                if deletion not in still:
                    logger.info("Orphan sweep of %s (%s): asked for again meanwhile, kept: %s", where, door,
                                deletion.describe())
            await _delete(core, scope, await _unchanged(scope, still, ledger, by_name), report, ledger, by_name,
                          (zones, set(rules)))
    if report.orphans:
        logger.info("Orphan sweep of %s (%s): %d deleted, %d failed, %d left for the next pass, %d kept", where,
                    door, sum(d.object != v.CLAIM for d in report.deleted), len(report.failed),
                    len(report.deferred) + len(report.abandoned), len(report.kept))
    return report


async def _unchanged(scope: Scope, deletions: Sequence[v.Deletion], ledger: ClaimLedger,
                     claims: Mapping[str, Any]) -> Sequence[v.Deletion]:
    """The deletions whose claim (if any) is as the pass listed it, read again right before them (under the guard's
    locks): a claim written since (a pass of its source recorded an object meanwhile, e.g. one that had started
    before its source was deleted, or another replica's) is judged again by the next pass as it is then; judged
    from the old reading, its release would drop the proof of what was recorded since. Nothing when the ledger
    cannot be read."""
    if not any(d.claim for d in deletions):
        return deletions
    door, where = scope.names.door, scope.describe()
    try:
        now = {claim.name: claim.version for kind in scope.names.kinds
               for claim in await ledger.list(source_kind=kind)}
    except Exception as error:  # a partial ledger must never drive deletions
        logger.warning("Orphan sweep of %s (%s): the claims could not be listed again before the deletions: %s",
                       where, door, error)
        return []
    judged = {d.claim for d in deletions if d.claim}
    changed = {name for name in judged if now.get(name, claims[name].version) != claims[name].version}
    for name in sorted(changed):
        logger.info("Orphan sweep of %s (%s): the claim of %s on %s was written since the pass read it: judged "
                    "again by the next pass", where, door, claims[name].source, claims[name].key)
    return [d for d in deletions if d.claim not in changed]


async def _unrouted(core: CloudflareCore, scope: Scope, batch: list[v.Deletion],
                    where: tuple[Mapping[str, str], set[str]]) -> list[v.Deletion]:
    """The Access application deletions of `batch` whose hostname has, read again now (after the rules and records
    of this pass are gone), no DNS record in the zones swept nor a rule in the tunnels the pass read: the verdict
    judged on listings a pass of the source may have made stale (one started before its source went, publishing
    from what it had read: its claim's entries recorded already, the claim is not written again), and an
    application deleted while its hostname is routable leaves it unprotected. None when the reads fail."""
    zones, tunnel_ids = where
    try:
        records = await asyncio.gather(*(core.list_dns_records(zone_id) for zone_id in sorted(zones)))
        rules = await _rules(core, scope.account_id, tunnel_ids)
    except CloudflareError as error:
        logger.warning("Orphan sweep of %s (%s): the Access applications are kept for the next pass: reading the "
                       "records and rules again failed: %s", scope.describe(), scope.names.door, error)
        return []
    routed = {normalize_name(record.name) for listed in records for record in listed}
    routed |= {normalize_name(str(rule.get("hostname"))) for listed in rules.values() for rule in listed
               if rule.get("hostname")}
    for deletion in batch:
        if normalize_name(deletion.domain) in routed:
            logger.info("Orphan sweep of %s (%s): %s kept for the next pass: %s is routable again",
                        scope.describe(), scope.names.door, deletion.describe(), deletion.domain)
    return [deletion for deletion in batch if normalize_name(deletion.domain) not in routed]


async def _delete(core: CloudflareCore, scope: Scope, deletions: Sequence[v.Deletion], report: SweepReport,
                  ledger: ClaimLedger, claims: dict[str, Any], read: tuple[Mapping[str, str], set[str]]) -> None:
    """`read`: the zones and the tunnels the pass read (what :func:`_unrouted` reads again)."""
    door, where = scope.names.door, scope.describe()
    verb = "deleting" if report.enforced else "orphan (the core's policy or dry-run keeps it)"
    for phase in v.ORDER:
        batch = [deletion for deletion in deletions if deletion.object == phase]
        if phase == v.CLAIM and not report.enforced:
            return  # the objects are still there: their proof stays
        if phase == v.ACCESS_APP and batch and report.enforced:
            held = {d.claim for d in batch} - {d.claim for d in await _unrouted(core, scope, batch, read)}
            deletions = [d for d in deletions if not (d.claim in held and d.object in (v.ACCESS_APP, v.CLAIM))]
            batch = [deletion for deletion in deletions if deletion.object == phase]
        if not batch:
            continue
        for deletion in batch:
            if deletion.object != v.CLAIM:
                logger.info("Orphan sweep of %s (%s): %s %s", where, door, verb, deletion.describe())
        outcomes: list[BaseException | None]
        if phase == v.DNS_RECORD:
            outcomes = await _delete_records(core, batch)
        elif phase == v.CLAIM:
            released = await asyncio.gather(*(ledger.release(claims[d.claim], unchanged=True) for d in batch),
                                            return_exceptions=True)
            changed = [isinstance(outcome, ClaimChanged) for outcome in released]  # judged again, not a failure
            for outcome in (o for o, kept in zip(released, changed, strict=True) if kept):
                logger.info("Orphan sweep of %s (%s): kept for the next pass: %s", where, door, outcome)
            batch = [d for d, kept in zip(batch, changed, strict=True) if not kept]
            outcomes = [o for o, kept in zip(released, changed, strict=True) if not kept]
        else:
            outcomes = list(await asyncio.gather(*(_one(core, scope.account_id, d) for d in batch),
                                                 return_exceptions=True))
        for deletion, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                report.failed.append((deletion, str(outcome)))
                logger.warning("Orphan sweep of %s (%s): %s failed: %s", where, door, deletion.describe(), outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                report.deleted.append(deletion)
                if report.enforced and deletion.object != v.CLAIM:
                    metrics.orphan_removed(door, deletion.object)
        if report.failed:
            rest = [d for d in deletions if v.ORDER.index(d.object) > v.ORDER.index(phase)]
            report.abandoned = tuple(rest)
            logger.warning("Orphan sweep of %s (%s): stopped after a failed deletion; %d left for the next pass",
                           where, door, len(rest))
            return


async def _delete_records(core: CloudflareCore, batch: Sequence[v.Deletion]) -> list[BaseException | None]:
    """Every record of the phase by id, one call (or batch series) per zone; a zone's failure is each of its
    records' failure."""
    zones = sorted({d.zone_id for d in batch})

    async def zone(zone_id: str) -> None:
        records = [d.record for d in batch if d.zone_id == zone_id and d.record is not None]
        await core.delete_dns_records(zone_id, records)

    results = await asyncio.gather(*(zone(zone_id) for zone_id in zones), return_exceptions=True)
    by_zone = dict(zip(zones, results, strict=True))
    return [by_zone[d.zone_id] for d in batch]


def _proven(deletion: v.Deletion) -> Callable[[Any], bool]:
    """The rule the verdict proved, judged again on the configuration as read at the removal: the path-less rule,
    routing to the service its claim recorded (any, for a rule proven by its orphaned DNS record)."""

    def owns(rule: Any) -> bool:
        return not rule.get("path") and (deletion.service is None or str(rule.get("service") or "") ==
                                         deletion.service)

    return owns


async def _one(core: CloudflareCore, account_id: str, deletion: v.Deletion) -> None:
    if deletion.object == v.TUNNEL_RULE:
        await core.remove_ingress_rule(account_id, deletion.tunnel_id, deletion.name, None, _proven(deletion))
    elif deletion.object == v.ACCESS_APP:
        await core.delete_access_app(account_id, deletion.id, deletion.domain, deletion.name, since=deletion.since)
    elif deletion.object == v.SERVICE_TOKEN:
        await core.delete_service_token(account_id, deletion.id, deletion.name, since=deletion.since)
    elif deletion.object == v.TUNNEL:
        await core.delete_tunnel(account_id, deletion.id, deletion.name, connected_ok=False)
    else:  # pragma: no cover - the verdict makes no other kind here
        raise ValueError(f"unknown object {deletion.object!r}")
