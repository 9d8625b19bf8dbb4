"""One orphan sweep pass over one scope: list what exists in Cloudflare, then load the door's claims (fresh
Kubernetes listings, in that order: an object created after the Cloudflare listing is not in it, so a source
created meanwhile can never make its own new objects look orphaned), plan (:mod:`plan`), delete.

A pass never runs on a partial view: when a Cloudflare listing or the claims cannot be loaded, it is skipped
and nothing is deleted. Deletions go through the core's ordinary delete functions (DNS deletions of a phase
are made at once, so the DNS writer coalesces them into batches), one phase at a time in the plan's order;
a failure stops the pass before the next phase (whatever depended on it waits for the next pass). Under
dry-run or a policy that never deletes, the core skips the deletions itself; the sweep only logs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chutes.cloudflare_core import CloudflareCore, CloudflareError, NotFound
from chutes.cloudflare_core.models import AccessApp, DnsRecord, ServiceToken, Tunnel
from chutes.observability import metrics
from chutes.sweep import plan as p

__all__ = ["Scope", "SweepReport", "sweep"]

logger = logging.getLogger(__name__)

LoadClaims = Callable[[], Awaitable[p.Claims]]


@dataclass(frozen=True)
class Scope:
    """Where one pass looks: an account, its zones (None: every zone of the account the token reads), the
    shared tunnels whose rules may include ours, and what the door owns."""

    names: p.DoorNames
    account_id: str
    zone_ids: tuple[str, ...] | None
    tunnel_ids: tuple[str, ...] = ()
    label: str = ""  # for logs: the scope object (e.g. "ChuteConfig default")

    def describe(self) -> str:
        return self.label or f"account {self.account_id}"


@dataclass
class SweepReport:
    """What one pass did. `skipped`: why it did not run (nothing deleted); `deleted`: done; `failed`: tried
    and failed (the rest of the pass was abandoned); `deferred`: over the cap; `kept`: orphans left on purpose;
    `abandoned`: planned after a failed deletion, left for the next pass; `enforced`: False when the core does
    not delete (dry-run or a policy that never deletes)."""

    skipped: str | None = None
    deleted: list[p.Deletion] = field(default_factory=list)
    failed: list[tuple[p.Deletion, str]] = field(default_factory=list)
    deferred: tuple[p.Deletion, ...] = ()
    abandoned: tuple[p.Deletion, ...] = ()
    kept: tuple[str, ...] = ()
    cap: int = 0
    enforced: bool = True

    @property
    def capped(self) -> bool:
        return bool(self.deferred)

    @property
    def orphans(self) -> int:
        return len(self.deleted) + len(self.failed) + len(self.deferred) + len(self.abandoned)

    def cap_message(self) -> str:
        """The Warning Event's message when the cap was hit."""
        if self.cap == 0:
            return (f"{len(self.deferred)} orphaned Cloudflare object(s) found, none deleted: the sweep deletion cap "
                    f"(sweep_max_deletions) is 0, report only. First: {_first(self.deferred)}")
        return (f"deleted {len(self.deleted)} orphaned Cloudflare object(s), the cap per pass "
                f"(sweep_max_deletions={self.cap}); {len(self.deferred)} more wait for the next pass. "
                f"Next: {_first(self.deferred)}")


def _first(deletions: Sequence[p.Deletion], count: int = 3) -> str:
    shown = ", ".join(d.describe() for d in deletions[:count])
    return shown + (", ..." if len(deletions) > count else "")


def _enforced(core: CloudflareCore) -> bool:
    """Whether the core really deletes (not under dry-run, nor a policy that never deletes)."""
    return core.policy == "sync" and not core.dry_run


async def _listing(core: CloudflareCore, scope: Scope) -> tuple[
        dict[str, str], dict[str, list[DnsRecord]], list[Tunnel], list[AccessApp], list[ServiceToken]]:
    names = scope.names
    if scope.zone_ids is None:
        zones = {zone.id: zone.name for zone in await core.list_zones(scope.account_id)}
    else:
        zones = {zone_id: (await core.get_zone(zone_id)).name for zone_id in scope.zone_ids}
    zone_ids = sorted(zones)

    async def no_tunnels() -> list[Tunnel]:
        return []

    async def no_apps() -> list[AccessApp]:
        return []

    async def no_tokens() -> list[ServiceToken]:
        return []

    listed = await asyncio.gather(*(core.list_dns_records(zone_id) for zone_id in zone_ids))
    tunnels, apps, tokens = await asyncio.gather(
        core.list_tunnels(scope.account_id, names.tunnel_prefix) if names.tunnel_prefix else no_tunnels(),
        core.list_access_apps(scope.account_id) if names.app_prefix else no_apps(),
        core.list_service_tokens(scope.account_id) if names.token_prefix else no_tokens(),
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


async def sweep(core: CloudflareCore, scope: Scope, load_claims: LoadClaims, cap: int) -> SweepReport:
    """One pass over `scope` (see the module docstring); never raises for Cloudflare or claim failures."""
    door, where = scope.names.door, scope.describe()
    try:
        zones, records, tunnels, apps, tokens = await _listing(core, scope)
    except CloudflareError as error:
        logger.warning("Orphan sweep of %s (%s) skipped: listing Cloudflare failed: %s", where, door, error)
        return SweepReport(skipped=f"listing Cloudflare failed: {error}", cap=cap)
    try:
        claims = await load_claims()
    except Exception as error:  # a partial desired state must never drive deletions
        logger.warning("Orphan sweep of %s (%s) skipped: the desired state could not be loaded: %s", where, door,
                       error)
        return SweepReport(skipped=f"the desired state could not be loaded: {error}", cap=cap)
    inventory = p.Inventory(owner_id=core.owner_id, zones=zones, records=records, tunnels=tunnels, apps=apps,
                            tokens=tokens)
    known = set(scope.tunnel_ids) | p.orphan_record_tunnels(inventory, scope.names, claims)
    try:
        rules = await _rules(core, scope.account_id, known)
    except CloudflareError as error:
        logger.warning("Orphan sweep of %s (%s) skipped: reading tunnel configurations failed: %s", where, door,
                       error)
        return SweepReport(skipped=f"reading tunnel configurations failed: {error}", cap=cap)
    inventory = p.Inventory(owner_id=core.owner_id, zones=zones, records=records, rules=rules, tunnels=tunnels,
                            apps=apps, tokens=tokens)
    planned = p.plan(inventory, scope.names, claims, cap)
    report = SweepReport(deferred=planned.deferred, kept=planned.kept, cap=cap, enforced=_enforced(core))
    for reason in planned.kept:
        logger.info("Orphan sweep of %s (%s): left in place: %s", where, door, reason)
    for deletion in planned.deferred:
        logger.info("Orphan sweep of %s (%s): orphan %s waits for the next pass (cap %d)", where, door,
                    deletion.describe(), cap)
    await _delete(core, scope, planned.deletions, report)
    if report.orphans:
        logger.info("Orphan sweep of %s (%s): %d deleted, %d failed, %d left for the next pass, %d kept", where,
                    door, len(report.deleted), len(report.failed), len(report.deferred) + len(report.abandoned),
                    len(report.kept))
    return report


async def _delete(core: CloudflareCore, scope: Scope, deletions: Sequence[p.Deletion], report: SweepReport) -> None:
    door, where = scope.names.door, scope.describe()
    verb = "deleting" if report.enforced else "orphan (the core's policy or dry-run keeps it)"
    for phase in p.ORDER:
        batch = [deletion for deletion in deletions if deletion.object == phase]
        if not batch:
            continue
        for deletion in batch:
            logger.info("Orphan sweep of %s (%s): %s %s", where, door, verb, deletion.describe())
        outcomes = await asyncio.gather(*(_one(core, scope.account_id, d) for d in batch), return_exceptions=True)
        for deletion, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                report.failed.append((deletion, str(outcome)))
                logger.warning("Orphan sweep of %s (%s): deleting %s failed: %s", where, door, deletion.describe(),
                               outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                report.deleted.append(deletion)
                if report.enforced:
                    metrics.orphan_removed(door, deletion.object)
        if report.failed:
            rest = [d for d in deletions if p.ORDER.index(d.object) > p.ORDER.index(phase)]
            report.abandoned = tuple(rest)
            logger.warning("Orphan sweep of %s (%s): stopped after a failed deletion; %d left for the next pass",
                           where, door, len(rest))
            return


async def _one(core: CloudflareCore, account_id: str, deletion: p.Deletion) -> None:
    if deletion.object == p.TUNNEL_RULE:
        await core.remove_ingress_rule(account_id, deletion.tunnel_id, deletion.name, deletion.path)
    elif deletion.object == p.DNS_RECORD:
        await core.delete_dns_record(deletion.zone_id, deletion.name, deletion.type)
    elif deletion.object == p.ACCESS_APP:
        await core.delete_access_app(account_id, deletion.id)
    elif deletion.object == p.SERVICE_TOKEN:
        await core.delete_service_token(account_id, deletion.id)
    elif deletion.object == p.TUNNEL:
        await core.delete_tunnel(account_id, deletion.id)
    else:  # pragma: no cover - the plan makes no other kind
        raise ValueError(f"unknown object {deletion.object!r}")
