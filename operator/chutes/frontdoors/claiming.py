"""How a front door uses the ledger of claims (:mod:`chutes.claims`): hold a hostname (or a tunnel name) before
writing anything to Cloudflare, record every object before creating it, and tear a claim down in the safe order,
releasing it only once everything it records is gone. Shared by the ChuteGateway, HTTPRoute and tunnels doors.

One hostname, one holder, across every door: the first source whose claim is created holds it until its own
teardown is complete (a source being deleted keeps it until then); every other source gets ``HostnameConflict``
naming the holder. What a claim records is the only proof the door has that a tunnel, Access application, service
token or tunnel rule is its own; ids in a status or a state ConfigMap are hints, checked against the claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chutes import conditions as c
from chutes.claim import ACCESS_APP as ACCESS_APP
from chutes.claim import ACCESS_POLICY as ACCESS_POLICY
from chutes.claim import DNS as DNS
from chutes.claim import SERVICE_TOKEN as SERVICE_TOKEN
from chutes.claim import TUNNEL as TUNNEL
from chutes.claim import TUNNEL_RULE as TUNNEL_RULE
from chutes.claims import Claim, ClaimKind, ClaimLost, ClaimStore, HeldElsewhere, LedgerMissing
from chutes.cloudflare_core import (
    CloudflareCore,
    CloudflareError,
    Conflict,
    IngressRule,
    NotFound,
    OutcomeUnknown,
    Unroutable,
)
from chutes.frontdoors.problems import EventSink, Problem, problem_from_cloudflare
from chutes.frontdoors.retries import CONFLICT_RETRY, LOST_RETRY, MISSING_RETRY

__all__ = [
    "ACCESS_APP",
    "ACCESS_POLICY",
    "DNS",
    "SERVICE_TOKEN",
    "TUNNEL",
    "TUNNEL_RULE",
    "Removal",
    "Teardown",
    "Withdrawer",
    "delete_recorded",
    "forget_access",
    "hold",
    "record",
    "recorded_rule",
    "remove_object",
    "rule_is_ours",
    "say_policy_removed",
    "say_teardown",
    "tear_down_hostname",
    "tear_down_tunnel",
    "tunnel_key",
    "write_rule",
]

logger = logging.getLogger(__name__)

RulePredicate = Callable[[Mapping[str, Any]], bool]


def tunnel_key(account_id: str, tunnel_name: str) -> str:
    """A tunnel claim's key: ``<account>/<tunnel name>``."""
    return f"{account_id}/{tunnel_name}"


def holder_message(kind: ClaimKind, key: str, holder: str) -> str:
    what = "hostname" if kind == "hostname" else "tunnel"
    return f"{what} {key} is already claimed by {holder.replace('/', ' ', 1)}"


async def hold(claims: ClaimStore, kind: ClaimKind, key: str, source: str) -> Claim:
    """The source's claim on `key` (acquired now, or held already); another holder is a ``HostnameConflict``
    Problem naming it (any front door)."""
    try:
        return await claims.acquire(kind, key, source)
    except HeldElsewhere as held:
        raise Problem(c.HOSTNAME_CONFLICT, holder_message(kind, key, held.holder), CONFLICT_RETRY) from None
    except ClaimLost as lost:
        raise Problem(c.CLOUDFLARE_UNAVAILABLE, f"claiming {key}: {lost}", LOST_RETRY) from None
    except LedgerMissing as missing:
        raise Problem(c.LEDGER_UNAVAILABLE, f"claiming {key}: {missing}", MISSING_RETRY) from None


async def record(claims: ClaimStore, claim: Claim, obj: str, object_id: str = "", *, keep: bool = False,
                 **fields: Any) -> Claim:
    """Record `obj` in the claim: its id (written only when it or `fields` changed), or else the intent to create
    it, unless an intent with `fields` is there (with `keep`, any: an earlier attempt's intent keeps its time)."""
    entry = claim.entry(obj) or {}
    same = all(entry.get(key) == value for key, value in fields.items())
    if object_id:
        return claim if entry.get("id") == object_id and same else await claims.complete(claim, obj, object_id,
                                                                                          **fields)
    return claim if entry.get("since") and (keep or same) else await claims.intend(claim, obj, **fields)


def _rule_entry(claim: Claim | None, tunnel_id: str) -> Mapping[str, Any] | None:
    """The claim's ``tunnel_rule`` entry when it records the rule in `tunnel_id`, else None."""
    entry = claim.entry(TUNNEL_RULE) if claim is not None else None
    if entry is None or not tunnel_id or str(entry.get("tunnel") or "") != tunnel_id:
        return None
    return entry


def _rule_path(rule: Mapping[str, Any]) -> str | None:
    return str(rule.get("path") or "") or None


def rule_is_ours(claim_before: Claim | None, tunnel_id: str, path: str | None = None) -> RulePredicate:
    """Whether an existing rule at the claim's hostname in `tunnel_id` (with our path: None for every door today)
    is ours, judged by the claim as read *before* this attempt (`claim_before`): a rule found there is ours when
    that claim records the rule in that tunnel as written (a completed entry: any service, ours edited by hand or
    not, drift repair puts it back), or as intended by an earlier attempt that may have written it before a crash,
    and then only when the rule routes to the service that intent recorded. Never a rule that was there before our
    claim, nor one whose write an earlier attempt saw refused (its intent is forgotten then)."""
    entry = _rule_entry(claim_before, tunnel_id)
    completed = entry is not None and bool(entry.get("id"))
    service = str((entry or {}).get("service") or "")
    wanted_path = path or None

    def owns(rule: Mapping[str, Any]) -> bool:
        if entry is None or _rule_path(rule) != wanted_path:
            return False
        return completed or (bool(service) and str(rule.get("service") or "") == service)

    return owns


def recorded_rule(entry: Mapping[str, Any]) -> RulePredicate:
    """Whether a rule found at the claim's hostname (in the tunnel `entry` names) is the one the ``tunnel_rule``
    entry records, for removing it: its path is the recorded one (None for every door today) and it routes to the
    recorded service, completed entry or intent alike. A rule someone replaced by hand is theirs now; an entry
    recording no service proves nothing."""
    service = str(entry.get("service") or "")
    path = str(entry.get("path") or "") or None

    def owns(rule: Mapping[str, Any]) -> bool:
        return bool(service) and _rule_path(rule) == path and str(rule.get("service") or "") == service

    return owns


_RULE_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = \
    weakref.WeakKeyDictionary()


def _rule_lock(key: str) -> asyncio.Lock:
    """One rule write at a time per claimed hostname in this process (per event loop)."""
    return _RULE_LOCKS.setdefault(asyncio.get_running_loop(), {}).setdefault(key, asyncio.Lock())


async def write_rule(core: CloudflareCore, claims: ClaimStore, claim: Claim, before: Claim, account_id: str,
                     tunnel_id: str, rule: IngressRule, *, current: bool = False) -> Claim:
    """Write the claim's hostname rule into `tunnel_id`, recorded in the claim's ``tunnel_rule`` entry: an intent
    (``since``, ``tunnel``, ``account``, ``service``) before the write unless the claim records the rule in that
    tunnel already, completed (``id`` = the tunnel id) once the write succeeded. A rule already there is replaced
    only when :func:`rule_is_ours` says so from the claim as it was before this attempt's write. When the write
    fails (refused, or anything else that certainly wrote nothing) and the entry was intended in this attempt, it
    is forgotten before the error goes up: an intent never outlives a write that did not happen; after a write
    whose answer was lost (``OutcomeUnknown``) it stays. Returns the updated claim.

    Attempts of one source may run at once (an event handler and the resync timer): the intent, the write and its
    completion (or the forgetting) of one attempt are not interleaved with another's for the same hostname, and
    the claim is read again first (`before`, read at the start of the attempt, may predate another attempt that
    has written the rule since, or has forgotten its refused intent). `before` is the proof only when the ledger
    has no such claim (a claim under dry-run that was never written). `current`: the caller holds a lock every attempt
    of the source holds for the whole attempt (the HTTPRoute door's route lock), and `claim` is as this attempt read
    and wrote it in the ledger: the ledger's claim, not read again."""
    fields: dict[str, Any] = {"tunnel": tunnel_id, "account": account_id, "service": rule.service}
    if rule.path:
        fields["path"] = rule.path
    async with _rule_lock(claim.key):
        latest = claim if current else await claims.get(claim.kind, claim.key)
        proof = latest if latest is not None and latest.source == claim.source else before
        recorded = _rule_entry(proof, tunnel_id)
        if recorded is None:
            claim = await claims.intend(claim, TUNNEL_RULE, **fields)
        elif claim.entry(TUNNEL_RULE) != recorded:  # as the ledger has it now
            claim = dataclasses.replace(claim, entries={**claim.entries, TUNNEL_RULE: recorded})
        try:
            await core.set_ingress_rule(account_id, tunnel_id, rule, rule_is_ours(proof, tunnel_id, rule.path))
        except Exception as error:
            # Intended by this attempt and certainly not written: forgotten. A write whose answer was lost may
            # have been applied: its intent stays (with the service we wrote, the next attempt proves it).
            if recorded is None and not isinstance(error, OutcomeUnknown):
                with contextlib.suppress(ClaimLost):  # a claim gone meanwhile records nothing any more
                    await claims.forget(claim, TUNNEL_RULE)
            raise
        entry = claim.entry(TUNNEL_RULE) or {}
        if entry.get("id") == tunnel_id and all(entry.get(key) == value for key, value in fields.items()):
            return claim
        return await claims.complete(claim, TUNNEL_RULE, tunnel_id, **fields)


def enforced(core: CloudflareCore) -> bool:
    """Whether the core really deletes: not under dry-run, nor a policy that never deletes. Otherwise the objects
    stay in Cloudflare, and so does their proof in the claim (entries are not forgotten, claims not released)."""
    return core.policy == "sync" and not core.dry_run


async def _forget(core: CloudflareCore, claims: ClaimStore, claim: Claim, obj: str) -> Claim:
    return await claims.forget(claim, obj) if enforced(core) else claim


async def _release(core: CloudflareCore, claims: ClaimStore, claim: Claim) -> bool:
    if not enforced(core):
        logger.info("Claim on %s of %s kept: the write policy or dry-run keeps its objects", claim.key,
                    claim.source)
        return False
    await claims.release(claim)
    return True


@dataclass
class Teardown:
    """What a teardown did: `removed` (for Normal Events), `left` (what stayed, with the reason: for Warning
    Events), and whether the claim was released."""

    removed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    released: bool = False
    removed_objects: list[str] = field(default_factory=list)  # the entry (TUNNEL_RULE, DNS, ...) of each `removed`
    others: list[str] = field(default_factory=list)  # records at the hostname not the source's (remove_object DNS)

    def note(self, obj: str, message: str) -> None:
        """Record one removal: its message and which kind of object it was (for the caller's Events)."""
        self.removed.append(message)
        self.removed_objects.append(obj)


REMOVED = {TUNNEL_RULE: c.TUNNEL_RULE_REMOVED, DNS: c.DNS_RECORD_REMOVED, TUNNEL: c.TUNNEL_REMOVED,
           ACCESS_APP: c.ACCESS_APPLICATION_REMOVED, SERVICE_TOKEN: c.SERVICE_TOKEN_REMOVED}


def say_policy_removed(events: EventSink, claim: Claim, app_id: str) -> None:
    """The app-scoped policy the claim records went with its application."""
    policy = claim.entry(ACCESS_POLICY) or {}
    if policy.get("id") and str(policy.get("app") or app_id) == app_id:
        events.normal(c.ACCESS_POLICY_REMOVED, f"Access policy {policy['id']} removed")


def say_teardown(events: EventSink, done: Teardown, claim: Claim | None = None, *, change: bool = False) -> None:
    """Events for one claim's teardown: a Normal Event per object removed (`change`, a hostname the source moved
    away from: its rule and records said as one; given `claim`, as read before the teardown, the app-scoped policy it
    records is said gone with its application), a Warning per object left, not ours."""
    app_id = str((claim.entry(ACCESS_APP) or {}).get("id") or "") if claim is not None else ""
    routing = False
    for obj, message in zip(done.removed_objects, done.removed, strict=True):
        if change and obj in (TUNNEL_RULE, DNS):
            routing = True
            continue
        if obj == ACCESS_APP and claim is not None and not change:
            say_policy_removed(events, claim, app_id)
        events.normal(REMOVED[obj], message)  # a service token: never recorded by a gateway; said all the same
    if routing and claim is not None:
        events.normal(c.HOSTNAME_REMOVED, f"{claim.key} is no longer published")
    for item in done.left:
        events.warning(c.HOSTNAME_CONFLICT, f"left in place, not ours: {item}")


class Withdrawer:
    """Takes a source's hostname claims down one object at a time, in the order its decision gives (rule, the
    source's DNS records at the name, Access application, service token: :func:`chutes.frontdoors.teardown.hostname`),
    each proven the source's by what the claim records, its entry forgotten once it is gone. Nothing that is not
    proven the source's is touched: DNS records at the name held by anyone else keep the Access application, the
    token and the claim in place (said in the claim's :class:`Teardown`). A claim released meanwhile (e.g. by the
    sweep) is left alone. After a claim's last object it is released when nothing it records is left (and the core
    really deletes: :func:`enforced`). A Cloudflare failure raises :class:`Problem` (the claim keeps what is left,
    the next attempt resumes). `zone_id`: the zone of records no entry names one for."""

    def __init__(self, core: CloudflareCore, claims: ClaimStore, *, account_id: str,
                 zone_id: str | None = None) -> None:
        self.core, self.claims, self.account_id, self.zone_id = core, claims, account_id, zone_id
        self.now: dict[str, Claim] = {}  # each claim as its last change left it
        self.done: dict[str, Teardown] = {}
        self.theirs: set[str] = set()  # hostnames where records not the source's remain
        self.lost: set[str] = set()  # hostnames whose claim was released meanwhile

    async def take(self, claim: Claim, obj: str, *, last: bool = False) -> Teardown | None:
        """Remove the object `obj` (an entry name) of `claim`; on its `last`, release it (see the class) and return
        what its whole teardown did, else None."""
        key = claim.key
        claim = self.now.setdefault(key, claim)
        done = self.done.setdefault(key, Teardown())
        if key not in self.lost and not (key in self.theirs and obj in (ACCESS_APP, SERVICE_TOKEN)):
            try:
                self.now[key] = await self._remove(claim, obj, done)
            except CloudflareError as exc:
                raise problem_from_cloudflare(exc, f"removing what {claim.source} published at {key}") from exc
            except ClaimLost:
                self.lost.add(key)  # released meanwhile (e.g. by the sweep): nothing left to do
        if not last:
            return None
        claim = self.now[key]
        if key not in self.lost | self.theirs and not any(
                obj in claim.entries for obj in (TUNNEL_RULE, ACCESS_APP, SERVICE_TOKEN)):
            done.released = await _release(self.core, self.claims, claim)
        return done

    async def _remove(self, claim: Claim, obj: str, done: Teardown) -> Claim:
        core, claims, account_id = self.core, self.claims, self.account_id
        if obj == TUNNEL_RULE:
            return await _remove_rule(core, claims, claim, account_id, done)
        if obj == ACCESS_APP:
            return await _remove_app(core, claims, claim, account_id, done)
        if obj == SERVICE_TOKEN:
            return await _remove_token(core, claims, claim, account_id, done)
        zone = str((claim.entry(DNS) or {}).get("zone") or self.zone_id or "")
        if not zone:
            return claim
        claim, others = await _remove_records(core, claims, claim, zone, done)
        if others:
            self.theirs.add(claim.key)
            done.left.append(f"{claim.key}: DNS record(s) {', '.join(others)} not made for {claim.source} remain: "
                             "its Access application stays until they are gone")
        return claim


HOSTNAME_OBJECTS = (TUNNEL_RULE, DNS, ACCESS_APP, SERVICE_TOKEN)  # a hostname claim's objects, in teardown order


async def tear_down_hostname(core: CloudflareCore, claims: ClaimStore, claim: Claim, *, account_id: str,
                             zone_id: str | None = None) -> Teardown:
    """Remove what the hostname claim records, routing first (:class:`Withdrawer`, every object in its order at
    once): the rule, then the source's DNS records at the hostname, then the Access application (its app-scoped
    policies go with it), then the service token; release the claim when nothing it records is left."""
    withdrawer = Withdrawer(core, claims, account_id=account_id, zone_id=zone_id)
    for obj in HOSTNAME_OBJECTS:
        done = await withdrawer.take(claim, obj, last=obj == SERVICE_TOKEN)
    assert done is not None
    return done


async def remove_object(core: CloudflareCore, claims: ClaimStore, claim: Claim, obj: str, *, account_id: str,
                        zone_id: str | None = None) -> tuple[Claim, Teardown]:
    """Remove one object the hostname claim records (``TUNNEL_RULE``; ``DNS``: the source's records at the
    hostname; ``ACCESS_APP`` with its app-scoped policies; ``SERVICE_TOKEN``), verified as in
    :func:`tear_down_hostname`, and forget its entry; the claim stays held. For what a source's new settings no
    longer want. Raises :class:`Problem` for a Cloudflare failure or a lost claim (the entry is kept)."""
    done = Teardown()
    try:
        if obj == TUNNEL_RULE:
            claim = await _remove_rule(core, claims, claim, account_id, done)
        elif obj == DNS:
            zone = str((claim.entry(DNS) or {}).get("zone") or zone_id or "")
            if zone:
                claim, done.others = await _remove_records(core, claims, claim, zone, done)
            elif claim.entry(DNS) is not None:
                claim = await _forget(core, claims, claim, DNS)
        elif obj == ACCESS_APP:
            claim = await _remove_app(core, claims, claim, account_id, done)
        elif obj == SERVICE_TOKEN:
            claim = await _remove_token(core, claims, claim, account_id, done)
        else:
            raise ValueError(f"{obj!r} is not an object a hostname claim records")
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"removing the {obj.replace('_', ' ')} of {claim.source} at "
                                      f"{claim.key}") from exc
    except ClaimLost as lost:
        raise Problem(c.CLOUDFLARE_UNAVAILABLE, f"removing the {obj.replace('_', ' ')} at {claim.key}: {lost}",
                      LOST_RETRY) from None
    return claim, done


async def _remove_rule(core: CloudflareCore, claims: ClaimStore, claim: Claim, account_id: str,
                       done: Teardown) -> Claim:
    """Remove the rule the claim records (:func:`recorded_rule`, judged on the configuration as read at the
    removal), then forget the entry; a rule at the hostname that is not the recorded one stays, said in
    `done.left`."""
    entry = claim.entry(TUNNEL_RULE)
    if entry is None:
        return claim
    tunnel = str(entry.get("tunnel") or "")
    if tunnel:
        proven = recorded_rule(entry)
        rejected: list[Mapping[str, Any]] = []

        def owns(rule: Mapping[str, Any]) -> bool:
            ours = proven(rule)
            rejected[:] = [] if ours else [rule]
            return ours

        path = str(entry.get("path") or "") or None
        removed = await core.remove_ingress_rule(str(entry.get("account") or account_id), tunnel, claim.key, path,
                                                 owns)
        if removed:
            done.note(TUNNEL_RULE, f"tunnel rule for {claim.key} removed from tunnel {tunnel}")
        elif rejected:
            found, service = str(rejected[0].get("service") or ""), str(entry.get("service") or "")
            why = (f"it routes to {found}, not to {service} as recorded for {claim.source}: changed by someone "
                   "else, it is theirs now" if service else
                   f"the claim of {claim.source} records no service for it, so it is not provably its own")
            done.left.append(f"tunnel rule {claim.key}{path or ''} in tunnel {tunnel}: {why}")
    return await _forget(core, claims, claim, TUNNEL_RULE)


async def _remove_records(core: CloudflareCore, claims: ClaimStore, claim: Claim, zone_id: str,
                          done: Teardown) -> tuple[Claim, list[str]]:
    """Delete the source's records at the hostname (coalesced with every other teardown and check of the zone:
    one listing, one batch); the claim, and the other records there (theirs). A zone that no longer exists took
    them with it."""
    try:
        cleared = await core.clear_dns_name(zone_id, claim.key, claim.source)
    except Unroutable:
        if claim.entry(DNS) is None:
            return claim, []
        done.note(DNS, f"DNS records at {claim.key} went with zone {zone_id}, which no longer exists")
        return await _forget(core, claims, claim, DNS), []
    for record in cleared.deleted:
        done.note(DNS, f"{record.type} {record.name} removed")
    if claim.entry(DNS) is not None:
        claim = await _forget(core, claims, claim, DNS)
    return claim, [f"{record.type} {record.name}" for record in cleared.others]


@dataclass(frozen=True)
class Removal:
    """What deleting one object a claim records came to (:func:`delete_recorded`): the account and name the claim
    records, the id the claim proves ("" when nothing it covers was found: nothing to delete), whether the delete
    went through, and the refusal when the object there turned out not to be ours (left in place)."""

    account: str
    name: str
    id: str
    removed: bool = False
    refused: Conflict | None = None


async def delete_recorded(core: CloudflareCore, claim: Claim, obj: str, *, account_id: str,
                          connected_ok: bool = False) -> Removal:
    """Delete the object the claim records as `obj` (``ACCESS_APP``, ``SERVICE_TOKEN`` or ``TUNNEL``), proven by the
    claim alone: its recorded id, or, recorded as an intent (no id yet), the object found under its natural key
    (the app's domain and name, the token's or tunnel's name) that was made after the intent. The core reads the
    object first and refuses one named otherwise (`Removal.refused`); a tunnel with active connections only goes
    with `connected_ok`. One already gone is fine. The claim's entry stays: forgetting it is the caller's."""
    entry = claim.entry(obj) or {}
    account = str(entry.get("account") or account_id)
    name = str(entry.get("name") or (claim.key.partition("/")[2] if obj == TUNNEL else ""))
    object_id = str(entry.get("id") or "")
    if not object_id and entry:
        try:
            found = await (core.find_access_app(account, claim.key, name) if obj == ACCESS_APP
                           else core.find_service_token(account, name) if obj == SERVICE_TOKEN
                           else core.find_tunnel(account, name))
        except Unroutable:  # the account no longer exists: nor does anything in it
            found = None
        covered = found is not None and claim.recorded(obj).covers(found.id, found.created_at)
        object_id = found.id if found is not None and covered else ""
    removal = Removal(account, name, object_id)
    if not object_id:
        return removal
    try:
        if obj == ACCESS_APP:
            await core.delete_access_app(account, object_id, claim.key, name, since=claim.recorded(obj).since)
        elif obj == SERVICE_TOKEN:
            await core.delete_service_token(account, object_id, name, since=claim.recorded(obj).since)
        else:
            await core.delete_tunnel(account, object_id, name, connected_ok=connected_ok)
    except Conflict as conflict:
        return dataclasses.replace(removal, refused=conflict)
    except NotFound:
        return removal
    return dataclasses.replace(removal, removed=True)


_LABELS = {ACCESS_APP: "Access application", SERVICE_TOKEN: "service token", TUNNEL: "tunnel"}


async def _delete_entry(core: CloudflareCore, claim: Claim, obj: str, account_id: str, done: Teardown, *,
                        connected_ok: bool = False) -> bool:
    """:func:`delete_recorded`, said in `done` (removed, or left with the reason); False when it was left in place."""
    removal = await delete_recorded(core, claim, obj, account_id=account_id, connected_ok=connected_ok)
    what = _LABELS[obj]
    if removal.refused is not None:
        done.left.append(f"{what} {removal.id}: {removal.refused.message}")
        return False
    if removal.removed:
        shown = removal.name if obj == SERVICE_TOKEN else f"{removal.name} ({removal.id})"
        done.note(obj, f"{what} {shown} removed")
    return True


async def forget_access(core: CloudflareCore, claims: ClaimStore, claim: Claim) -> Claim:
    """Forget the Access application the claim records and its app-scoped policy (gone with it), unless the write
    policy or dry-run kept them."""
    claim = await _forget(core, claims, claim, ACCESS_APP)
    if claim.entry(ACCESS_POLICY) is not None:
        claim = await _forget(core, claims, claim, ACCESS_POLICY)
    return claim


async def _remove_app(core: CloudflareCore, claims: ClaimStore, claim: Claim, account_id: str,
                      done: Teardown) -> Claim:
    if claim.entry(ACCESS_APP) is None:
        return claim
    await _delete_entry(core, claim, ACCESS_APP, account_id, done)
    return await forget_access(core, claims, claim)


async def _remove_token(core: CloudflareCore, claims: ClaimStore, claim: Claim, account_id: str,
                        done: Teardown) -> Claim:
    if claim.entry(SERVICE_TOKEN) is None:
        return claim
    await _delete_entry(core, claim, SERVICE_TOKEN, account_id, done)
    return await _forget(core, claims, claim, SERVICE_TOKEN)


async def tear_down_tunnel(core: CloudflareCore, claims: ClaimStore, claim: Claim, *, account_id: str) -> Teardown:
    """Delete the tunnel the tunnel claim records (verified by name; with its active connections: every caller has
    just removed its own connectors), then release the claim."""
    done = Teardown()
    try:
        if not await _delete_entry(core, claim, TUNNEL, account_id, done, connected_ok=True):
            return done
    except CloudflareError as exc:
        raise problem_from_cloudflare(exc, f"removing the tunnel of {claim.source}") from exc
    done.released = await _release(core, claims, claim)
    return done
