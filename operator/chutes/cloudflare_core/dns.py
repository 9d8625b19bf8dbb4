"""DNS records with an ownership marker, written per zone through coalesced batches.

`DnsWriter.ensure_record` / `delete_record` queue up; one drain task flushes the queue:
one listing of the zone (name-filtered when the flush touches one name), a change per request
against what exists (external-dns style: a record is touched only when its marker names OUR owner id
AND the requesting source, `ownership.marks`; any other record in the way gives the requester a
`Conflict`, naming the holder when it is ours for another source), then `dns.batch` calls of at most
the plan's batch size. In the way of a record: one of the same type, a CNAME beside anything, and an
address record (A or AAAA) beside one of the other address type; the requester's own clashing records
are replaced in the same batch (CNAME ↔ A, A ↔ AAAA).

A batch is all-or-nothing. When one is refused (4xx), the zone is listed again and the changes
decided again (this adopts what a replayed batch already applied, and catches records created by
someone else in between); if the batch is refused again it is split in halves until the bad
request is alone, and only that requester gets the error. A transient failure fails every
request of the flush (the caller retries later).

`DnsWriter.sync_records` is the level-based form: in one flush of its own (one listing of the
whole zone, then batches), it ensures a set of desired records and deletes every other record
that carries our owner id and that the caller's `owns` predicate claims (the caller checks the
source), or hands them back (`defer_deletes`) for `delete_records`, which deletes exactly the
records given, by id, in a flush of its own without listing.

Repairs read one listing per pass, not one per flush. A flush whose every request is a drift repair
(queued inside `drift.repairing` with `reuse_listings`: a resync re-checking what was published in full) and asks
only to ensure or check a name may be answered from the zone's last whole-zone listing, when that
listing is younger than `snapshot_ttl` and no write of ours came after it; and only when every request
is already satisfied there. Anything else (a write to make, a conflict to report) is decided on a fresh
listing, as without a snapshot. A stale snapshot can thus only postpone a repair to the next pass (a
record changed behind our back within `snapshot_ttl` before a pass), never cause a write or a refusal.

A new CNAME costs no listing of its own when a listing made in the last `FREE_NAME_SECONDS` (the name
check a front door makes before it creates anything for a hostname) found its name empty: it is POSTed in
the flush's batch straight away. This changes nothing that exists, and Cloudflare itself refuses a CNAME
beside any record of its name (400/81053, 81054), which makes the batch go the refused way above (listed
again, planned again): a record that appeared since, ours or not, is found and judged on a fresh listing.
Address records (A, AAAA) are never created that way: Cloudflare accepts several at one name.

The client's `ChangeGate` filters each change: under upsert-only no record is deleted, under
create-only none is updated either (a missing one is still created); under dry-run nothing is
written and each request gets the record it would have had. A desired record with `adopt` takes
over a record of its name and type that has no chutes-operator marker (not under create-only).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import drift
from .client import CloudflareClient, to_wire
from .coalescing import CoalescingWriter, Request
from .dns_plan import PROXIABLE, adoptable, clash, plan_ensure, refusal
from .errors import CloudflareError, Conflict, CredentialsInvalid, TransientError
from .gate import ChangeGate
from .models import DesiredRecord, DnsRecord, normalize_name
from .ownership import MARKER_PREFIX, is_ours, marks, parse

__all__ = ["Cleared", "DnsSync", "DnsWriter", "list_owned", "list_records", "record_from_wire"]

log = logging.getLogger(__name__)
DNS_PER_PAGE = 5000
FREE_NAME_SECONDS = 30.0  # how long a listing that found a name empty lets a CNAME be created without another


def record_from_wire(data: dict[str, Any]) -> DnsRecord:
    return DnsRecord(
        id=str(data.get("id") or ""),
        name=normalize_name(str(data.get("name") or "")),
        type=str(data.get("type") or ""),
        content=str(data.get("content") or ""),
        proxied=bool(data.get("proxied")),
        ttl=int(data.get("ttl") or 1),
        comment=data.get("comment") or None,
    )


async def list_records(client: CloudflareClient, zone_id: str, names: Iterable[str] = ()) -> list[DnsRecord]:
    """Records of the zone; only those named `name` when exactly one name is given."""
    wanted = sorted({normalize_name(name) for name in names})
    params: dict[str, Any] = {"zone_id": zone_id}
    if len(wanted) == 1:
        params["name"] = {"exact": wanted[0]}
    items = await client.list_all("dns.list", client.sdk.dns.records.list, per_page=DNS_PER_PAGE, **params)
    records = [record_from_wire(item) for item in items]
    if len(wanted) == 1:
        records = [record for record in records if record.name == wanted[0]]
    return records


async def list_owned(client: CloudflareClient, zone_id: str, owner_id: str) -> list[DnsRecord]:
    """Every record of the zone carrying `owner_id`'s marker."""
    items = await client.list_all(
        "dns.list",
        client.sdk.dns.records.list,
        zone_id=zone_id,
        comment={"startswith": f"{MARKER_PREFIX} owner={owner_id} "},
        per_page=DNS_PER_PAGE,
    )
    records = [record_from_wire(item) for item in items]
    return [record for record in records if is_ours(record.comment, owner_id)]


@dataclass(frozen=True)
class Cleared:
    """The outcome of `DnsWriter.clear_name`: the source's records deleted (none when the write policy or
    dry-run kept them), and the routing records (A, AAAA, CNAME) at the name that are not the source's."""

    deleted: tuple[DnsRecord, ...]
    others: tuple[DnsRecord, ...]


@dataclass(eq=False)
class _Request(Request):
    """One caller's request: ensure `desired` (when set) or delete `source`'s records (`name`, `type`);
    with `records`, delete exactly those (by id, while still marked as they were listed). `mode` "check":
    only raise the Conflict an ensure of a `type` record would meet (`adopt`: as an ensure asking adoption);
    "clear": delete every routing record marked for `source` at `name` (a :class:`Cleared`)."""

    name: str = field(kw_only=True)
    type: str = field(kw_only=True)
    owner_id: str = field(kw_only=True)
    desired: DesiredRecord | None = field(kw_only=True)
    source: str = field(default="", kw_only=True)  # a delete's asking source (an ensure's: desired.source)
    records: tuple[DnsRecord, ...] | None = field(default=None, kw_only=True)
    mode: str = field(default="", kw_only=True)
    adopt: bool = field(default=False, kw_only=True)
    found: tuple[DnsRecord, ...] = field(default=(), kw_only=True)  # "clear": the source's, as decided
    others: tuple[DnsRecord, ...] = field(default=(), kw_only=True)  # "clear": the others', as decided

    @property
    def asking(self) -> str:
        """The source the request is made for."""
        return self.desired.source if self.desired is not None else self.source

    def outcome(self, record: DnsRecord | None, deleted: Sequence[str]) -> Any:
        """What the caller gets once the request's change (record ids `deleted`) was made or skipped."""
        if self.mode == "clear":
            return Cleared(tuple(r for r in self.found if r.id in deleted), self.others)
        return record if self.desired is not None else None


@dataclass(eq=False)
class _SyncRequest(Request):
    """Ensure `desired`, delete (or, `defer_deletes`, hand back) the other records of our owner id that
    `owns` claims (one flush)."""

    desired: tuple[DesiredRecord, ...] = field(kw_only=True)
    owns: Callable[[DnsRecord], bool] = field(kw_only=True)
    owner_id: str = field(kw_only=True)
    defer_deletes: bool = field(default=False, kw_only=True)
    listed: tuple[DnsRecord, ...] | None = field(default=None, kw_only=True)  # the caller's listing: none made


@dataclass(eq=False)
class _DeleteRequest(Request):
    """Delete exactly `records` (listed earlier by the caller), in a flush of its own."""

    records: tuple[DnsRecord, ...] = field(kw_only=True)
    owner_id: str = field(kw_only=True)


@dataclass(frozen=True)
class DnsSync:
    """The outcome of `DnsWriter.sync_records`.

    `records`: each desired name with its record as it now stands; `failed`: names whose record
    could not be ensured or deleted, with the reason (a `Conflict` when a record we do not own
    is in the way); `deleted`: names whose stale records were deleted; `foreign`: names holding a
    record we do not own, as listed at the start of the flush; `written`: whether a batch was sent;
    `stale`: with `defer_deletes`, the records that would have been deleted (for `delete_records`);
    `holders`: name -> marker source of every record carrying our owner id, as listed.
    """

    records: Mapping[str, DnsRecord]
    failed: Mapping[str, CloudflareError]
    deleted: tuple[str, ...]
    foreign: frozenset[str]
    written: bool = False
    stale: tuple[DnsRecord, ...] = ()
    holders: Mapping[str, str] = field(default_factory=dict)


_AnyRequest = _Request | _SyncRequest | _DeleteRequest


@dataclass
class _Change:
    """The batch actions one request needs; `result` is the record when no write yields one."""

    request: _Request
    deletes: list[str] = field(default_factory=list)
    patch: dict[str, Any] | None = None
    post: dict[str, Any] | None = None
    result: DnsRecord | None = None

    @property
    def size(self) -> int:
        return len(self.deletes) + (self.patch is not None) + (self.post is not None)


def change_for(request: _Request, existing: list[DnsRecord], *, may_adopt: bool = True) -> _Change | None:
    """What `request` needs given the records named like it; None (request resolved) when
    already satisfied. Only records marked for the request's source are changed or deleted; raises
    Conflict when another record is in the way (unless the desired record asks for adoption,
    `may_adopt`, and the record is adoptable), naming the holder when it is ours for another source.
    """
    owner, source = request.owner_id, request.asking
    if request.mode == "check":
        blocking = [record for record in existing if clash(request.type, record.type)
                    and not marks(record.comment, owner, source)
                    and not (request.adopt and may_adopt and adoptable(record, request.type))]
        if blocking:
            raise refusal(request.name, blocking, owner, source)
        request.resolve(None)
        return None
    if request.mode == "clear":
        routing = [record for record in existing if record.type in PROXIABLE]
        request.found = tuple(record for record in routing if marks(record.comment, owner, source))
        request.others = tuple(record for record in routing if record not in request.found)
        if not request.found:
            request.resolve(request.outcome(None, ()))
            return None
        return _Change(request, deletes=[record.id for record in request.found])
    if request.records is not None:
        if any(not is_ours(record.comment, owner) for record in request.records):
            raise Conflict(f"{request.name} {request.type}: not marked as owner {owner}'s: left untouched")
        listed = {(record.id, record.comment) for record in request.records}
        still = [record.id for record in existing if (record.id, record.comment) in listed]
        if still:
            return _Change(request, deletes=still)
        present = {record.id for record in existing}
        request.resolve(False if present & {record.id for record in request.records} else None)  # re-marked: kept
        return None
    if request.desired is None:
        same_type = [record for record in existing if record.type == request.type]
        ours = [record for record in same_type if marks(record.comment, owner, source)]
        if ours:
            return _Change(request, deletes=[record.id for record in ours])
        if same_type:
            raise refusal(request.name, same_type, owner, source)
        request.resolve(None)
        return None

    desired = request.desired
    plan = plan_ensure(desired, existing, owner, may_adopt=may_adopt)
    for record in plan.adopted:
        log.info("DNS %s %s (id %s) has no chutes-operator marker: adopting it for %s (adoption requested)",
                 record.type, record.name, record.id, desired.source)
    if not plan.action:
        request.resolve(plan.current)
        return None
    return _Change(request, deletes=list(plan.deletes), patch=plan.patch, post=plan.post,
                   result=plan.current if plan.patch is None and plan.post is None else None)


def _what(body: Mapping[str, Any]) -> str:
    """A record (wire body) for the logs: type, name, content."""
    return f"{body.get('type')} {body.get('name')} → {body.get('content')}"


def gate_change(change: _Change, existing: Sequence[DnsRecord], gate: ChangeGate) -> _Change | None:
    """`change` as far as `gate` lets it through; None (the request resolved with the record it would
    have had) when nothing is left to write. Raises Conflict when the policy keeps a record of ours
    that the record to create would clash with (a type swap needs a delete).
    """
    request = change.request
    by_id = {record.id: record for record in existing}
    deletes: list[str] = []
    for record_id in change.deletes:
        old = by_id.get(record_id)
        what = _what(dataclasses.asdict(old)) if old else f"{request.type} {request.name} (id {record_id})"
        if gate.allows("delete", "dns_record", what):
            deletes.append(record_id)
    patch, post, result = change.patch, change.post, change.result
    if patch is not None:
        current = by_id.get(str(patch.get("id")))
        adopting = current is not None and not marks(current.comment, request.owner_id, request.asking)
        if not gate.allows("update", "dns_record", _what(patch) + (" (adopting it)" if adopting else "")):
            result = current if current is not None and not gate.dry_run else _assumed(patch)
            patch = None
    if post is not None:
        if change.deletes and gate.forbids("delete"):
            raise Conflict(
                f"{request.name}: policy {gate.policy} keeps our other record of this name, "
                f"a {request.type} record cannot be created beside it: left untouched"
            )
        if not gate.allows("create", "dns_record", _what(post)):
            result, post = _assumed(post), None
    if not deletes and patch is None and post is None:
        request.resolve(request.outcome(result, ()))
        return None
    return dataclasses.replace(change, deletes=deletes, patch=patch, post=post, result=result)


class DnsWriter(CoalescingWriter[_AnyRequest]):
    """The single writer of one zone's records in this process (see the module docstring)."""

    label = "DNS writer"

    def __init__(
        self,
        client: CloudflareClient,
        zone_id: str,
        batch_limit: Callable[[], Awaitable[int]],
        snapshot_ttl: float = 0.0,
    ) -> None:
        super().__init__()
        self._client = client
        self.zone_id = zone_id
        self._batch_limit = batch_limit
        self._snapshot_ttl = snapshot_ttl
        self._snapshot: tuple[float, dict[str, list[DnsRecord]]] | None = None  # (taken, records by name)
        self._free: dict[str, float] = {}  # name -> when a listing last found no record there

    async def ensure_record(self, desired: DesiredRecord, owner_id: str) -> DnsRecord:
        """The record as wanted, created or updated when ours; Conflict when not ours."""
        request = _Request(name=desired.name, type=desired.type, owner_id=owner_id, desired=desired)
        record: DnsRecord = await self._submit(request)
        return record

    async def delete_record(self, name: str, type: str, owner_id: str, source: str) -> None:
        """Delete the record(s) `name`/`type` marked as `owner_id`'s for `source`; absent is fine; one
        that is foreign or held by another source raises Conflict (and stays)."""
        request = _Request(
            name=normalize_name(name), type=type.upper(), owner_id=owner_id, desired=None, source=source
        )
        await self._submit(request)

    async def check_name(self, name: str, type: str, owner_id: str, source: str, *, adopt: bool = False) -> None:
        """Raise Conflict when a record that is not `source`'s stands where a `type` record `name` would go: a
        foreign one, or one of `owner_id` held by another source (`Conflict.holder`). With `adopt`, a record
        that an ensure with adoption would take over does not count. Coalesced with the other requests of the
        flush (one listing for all their names)."""
        await self._submit(_Request(name=normalize_name(name), type=type.upper(), owner_id=owner_id, desired=None,
                                    source=source, mode="check", adopt=adopt))

    async def clear_name(self, name: str, owner_id: str, source: str) -> Cleared:
        """Delete every A, AAAA and CNAME record `name` marked as `owner_id`'s for `source`; the others there
        come back in `Cleared.others` (never touched). Coalesced like `check_name`."""
        cleared: Cleared = await self._submit(_Request(name=normalize_name(name), type="", owner_id=owner_id,
                                                       desired=None, source=source, mode="clear"))
        return cleared

    async def sync_records(
        self,
        desired: Sequence[DesiredRecord],
        owns: Callable[[DnsRecord], bool],
        owner_id: str,
        *,
        defer_deletes: bool = False,
        listed: Sequence[DnsRecord] | None = None,
    ) -> DnsSync:
        """Ensure every `desired` record and delete every other record carrying `owner_id`'s
        marker that `owns` claims (asked after the listing, at flush time, only about records of
        `owner_id`: it checks the source). With `defer_deletes` those records are not deleted but
        returned in `DnsSync.stale`. Per-name failures are reported in the result; a transient
        failure raises for the whole call. `listed`: the whole zone as the caller has just listed it
        (and decided on), used instead of a listing of its own (a refused batch still lists again).
        """
        request = _SyncRequest(desired=tuple(desired), owns=owns, owner_id=owner_id, defer_deletes=defer_deletes,
                               listed=None if listed is None else tuple(listed))
        result: DnsSync = await self._submit(request)
        return result

    async def delete_records(self, records: Sequence[DnsRecord], owner_id: str) -> tuple[str, ...]:
        """Delete exactly `records` (listed and judged by the caller, e.g. `DnsSync.stale`) by id, in
        batches, without listing first; a record gone or re-marked since is left alone. Returns the
        names of the records dealt with (deleted, already gone, or skipped by the write policy or
        dry-run: the caller sees success). When some could not be deleted (each is logged), the first
        error is raised once every other record was dealt with; a transient failure raises at once."""
        if not records:
            return ()
        request = _DeleteRequest(records=tuple(records), owner_id=owner_id)
        result: tuple[str, ...] = await self._submit(request)
        return result

    async def list_owned(self, owner_id: str) -> list[DnsRecord]:
        return await list_owned(self._client, self.zone_id, owner_id)

    def forget_snapshot(self) -> None:
        """Written outside the writer (e.g. an adoption): the last listing no longer says what is there."""
        self._snapshot = None
        self._free.clear()

    def _gated_change(self, request: _Request, existing: list[DnsRecord]) -> _Change | None:
        """The change `request` needs (see `change_for`) filtered by the write policy and dry-run."""
        gate = self._client.gate
        change = change_for(request, existing, may_adopt=gate.may_adopt)
        return None if change is None else gate_change(change, existing, gate)

    def _changes_for(self, requests: Sequence[_Request],
                     existing: Callable[[_Request], list[DnsRecord]]) -> list[_Change]:
        """The changes `requests` need, each decided against the records `existing` gives for it; a request
        whose change cannot be decided gets the error (and makes no change)."""
        changes: list[_Change] = []
        for request in requests:
            try:
                change = self._gated_change(request, existing(request))
            except CloudflareError as error:
                request.fail(error)
                continue
            if change is not None:
                changes.append(change)
        return changes

    def _take(self) -> list[_AnyRequest]:
        """The next flush: a sync or delete-records request alone, else queued requests in order up
        to the next such request, at most one per name (the rest wait)."""
        queue = [request for request in self._queue if not request.done.done()]
        if queue and not isinstance(queue[0], _Request):
            self._queue = queue[1:]
            return [queue[0]]
        taken: list[_AnyRequest] = []
        later: list[_AnyRequest] = []
        names: set[str] = set()
        for index, request in enumerate(queue):
            if not isinstance(request, _Request):
                later.extend(queue[index:])
                break
            if request.name in names:
                later.append(request)
            else:
                names.add(request.name)
                taken.append(request)
        self._queue = later
        return taken

    async def _changes_from_listing(self, requests: list[_Request], *, whole_zone: bool = False) -> list[_Change]:
        names = {request.name for request in requests}
        records = await list_records(self._client, self.zone_id, () if whole_zone else names)
        by_name = _by_name(records)
        now = time.monotonic()
        if whole_zone or len(names) > 1:  # the whole zone was listed: what later repair flushes may read
            self._snapshot = (now, by_name)
        if len(self._free) > 1000:
            self._free = {name: at for name, at in self._free.items() if now - at < FREE_NAME_SECONDS}
        for name in names:
            if by_name.get(name):
                self._free.pop(name, None)
            else:
                self._free[name] = now
        return self._changes_for(requests, lambda request: by_name.get(request.name, []))

    async def _flush(self, requests: list[_AnyRequest]) -> None:
        if len(requests) == 1 and isinstance(requests[0], _SyncRequest):
            await self._sync(requests[0])
            return
        if len(requests) == 1 and isinstance(requests[0], _DeleteRequest):
            await self._delete_listed(requests[0])
            return
        plain = [request for request in requests if isinstance(request, _Request)]
        repairs = bool(plain) and all(_is_repair_read(request) for request in plain)
        if repairs and self._answered_by_snapshot(plain):
            return
        if self._all_new_cnames(plain):  # planned on the listing that found their names empty (see the module)
            await self._apply(self._changes_for(plain, lambda request: []), relisted=False)
            return
        changes = await self._changes_from_listing(plain, whole_zone=repairs)
        await self._apply(changes, relisted=False)

    def _all_new_cnames(self, requests: Sequence[_Request]) -> bool:
        """Every request ensures a CNAME at a name a listing found empty less than `FREE_NAME_SECONDS` ago."""
        now = time.monotonic()
        return bool(requests) and all(
            request.mode == "" and request.records is None and request.desired is not None
            and request.desired.type == "CNAME" and now - self._free.get(request.name, -FREE_NAME_SECONDS) <
            FREE_NAME_SECONDS
            for request in requests
        )

    def _answered_by_snapshot(self, requests: Sequence[_Request]) -> bool:
        """Resolve `requests` (repairs, see `_is_repair_read`) from the last whole-zone listing when it is
        younger than the snapshot TTL and every one of them is already satisfied there; else touch none."""
        snapshot = self._snapshot
        if snapshot is None or time.monotonic() - snapshot[0] >= self._snapshot_ttl:
            return False
        by_name = snapshot[1]
        answers: list[Any] = []
        for request in requests:
            probe = dataclasses.replace(request)  # planned on a copy: the caller's future stays untouched
            try:
                change = change_for(probe, list(by_name.get(request.name, [])), may_adopt=self._client.gate.may_adopt)
            except CloudflareError:
                return False  # a refusal is decided on a fresh listing only
            if change is not None or not probe.done.done():
                return False
            answers.append(probe.done.result())
        for request, answer in zip(requests, answers, strict=True):
            request.resolve(answer)
        return True

    async def _sync(self, sync: _SyncRequest) -> None:
        owner = sync.owner_id
        existing = list(sync.listed) if sync.listed is not None else await list_records(self._client, self.zone_id)
        by_name = _by_name(existing)
        if sync.listed is None:
            self._snapshot = (time.monotonic(), by_name)
        holders: dict[str, str] = {}
        for record in existing:
            found = parse(record.comment)
            if found is not None and found.owner_id == owner:
                holders.setdefault(record.name, found.source)
        wanted = {record.name: record for record in sync.desired}  # one per name, the last wins
        ensures = [_Request(name=d.name, type=d.type, owner_id=owner, desired=d) for d in wanted.values()]
        stale = tuple(
            sorted(
                (
                    record
                    for record in existing
                    if record.name not in wanted and is_ours(record.comment, owner) and sync.owns(record)
                ),
                key=lambda record: (record.name, record.type, record.id),
            )
        )
        deletes = [] if sync.defer_deletes else self._deletes_of(stale, owner)
        for request in [*ensures, *deletes]:
            request.front_door = sync.front_door  # made in the drain task: the caller's, not its context
        changes = self._changes_for([*ensures, *deletes], lambda request: by_name.get(request.name, []))
        try:
            await self._apply(changes, relisted=False)
        finally:
            failed = {request.name: problem for request in [*ensures, *deletes] if (problem := _failure(request))}
        sync.resolve(
            DnsSync(
                records={r.name: r.done.result() for r in ensures if r.done.done() and r.name not in failed},
                failed=failed,
                deleted=_names(r.name for r in deletes
                               if r.done.done() and r.name not in failed and r.done.result() is not False),
                foreign=frozenset(record.name for record in existing if not is_ours(record.comment, owner)),
                written=bool(changes),
                stale=stale if sync.defer_deletes else (),
                holders=holders,
            )
        )

    @staticmethod
    def _deletes_of(records: Sequence[DnsRecord], owner_id: str) -> list[_Request]:
        """One delete request per record, for exactly that record (by id, while marked as listed)."""
        return [
            _Request(
                name=record.name,
                type=record.type,
                owner_id=owner_id,
                desired=None,
                source=(found.source if (found := parse(record.comment)) else ""),
                records=(record,),
            )
            for record in records
        ]

    async def _delete_listed(self, batch: _DeleteRequest) -> None:
        """Delete `batch.records` without listing: each is decided against itself as listed (a refused
        batch lists again and drops what is gone, see `_run`)."""
        deletes = self._deletes_of(batch.records, batch.owner_id)
        for request in deletes:
            request.front_door = batch.front_door
        changes = self._changes_for(deletes, lambda request: list((request.records or ())[:1]))
        try:
            await self._apply(changes, relisted=False)
        finally:
            failed = {id(request): problem for request in deletes if (problem := _failure(request))}
        for request in deletes:
            if id(request) in failed:
                log.warning("Could not delete DNS %s %s in zone %s: %s", request.type, request.name,
                            self.zone_id, failed[id(request)])
        if failed:
            batch.fail(next(iter(failed.values())))  # after every other record was dealt with
            return
        batch.resolve(_names(r.name for r in deletes if r.done.done() and r.done.result() is not False))

    async def _apply(self, changes: list[_Change], *, relisted: bool) -> None:
        if not changes:
            return
        limit = max(1, await self._batch_limit())
        chunk: list[_Change] = []
        chunks: list[list[_Change]] = []
        size = 0
        for change in changes:
            if chunk and size + change.size > limit:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(change)
            size += change.size
        chunks.append(chunk)
        for part in chunks:
            await self._run(part, relisted=relisted)

    async def _run(self, changes: list[_Change], *, relisted: bool) -> None:
        try:
            response = await self._batch(changes)
        except (TransientError, CredentialsInvalid):
            raise  # the whole flush fails; callers retry later
        except CloudflareError as error:
            if not relisted:
                log.info("DNS batch in zone %s refused (%s); listing again", self.zone_id, error)
                fresh = await self._changes_from_listing([change.request for change in changes])
                await self._apply(fresh, relisted=True)
            elif len(changes) == 1:
                changes[0].request.fail(error)
            else:
                half = len(changes) // 2
                await self._run(changes[:half], relisted=True)
                await self._run(changes[half:], relisted=True)
            return
        patched = [record_from_wire(to_wire(item)) for item in response.get("patches") or []]
        posted = [record_from_wire(to_wire(item)) for item in response.get("posts") or []]
        for change in changes:
            drift.count(change.request.front_door, "dns_record")
            result = change.result
            if change.patch is not None:
                result = patched.pop(0) if patched else _assumed(change.patch)
            elif change.post is not None:
                result = posted.pop(0) if posted else _assumed(change.post)
            change.request.resolve(change.request.outcome(result, change.deletes))

    async def _batch(self, changes: list[_Change]) -> dict[str, Any]:
        body: dict[str, Any] = {}  # sent as extra_body: already wire form, no SDK re-aliasing
        deletes = [{"id": record_id} for change in changes for record_id in change.deletes]
        patches = [change.patch for change in changes if change.patch is not None]
        posts = [change.post for change in changes if change.post is not None]
        if deletes:
            body["deletes"] = deletes
        if patches:
            body["patches"] = patches
        if posts:
            body["posts"] = posts
        self._snapshot = None  # whatever the outcome, the zone may differ from the last listing now
        for change in changes:
            self._free.pop(change.request.name, None)
        result = await self._client.call(
            "dns.batch", self._client.sdk.dns.records.batch, zone_id=self.zone_id, extra_body=body
        )
        return to_wire(result)


def _by_name(records: Iterable[DnsRecord]) -> dict[str, list[DnsRecord]]:
    by_name: dict[str, list[DnsRecord]] = {}
    for record in records:
        by_name.setdefault(record.name, []).append(record)
    return by_name


def _is_repair_read(request: _Request) -> bool:
    """A drift repair (queued inside `drift.repairing`) that ensures or checks a name: one a snapshot may
    answer when it finds it satisfied (never a delete, a clear or a delete of listed records)."""
    return (request.reuse_listings and request.records is None
            and (request.mode == "check" or (request.mode == "" and request.desired is not None)))


def _names(names: Iterable[str]) -> tuple[str, ...]:
    """`names` without repeats, in order."""
    return tuple(dict.fromkeys(names))


def _failure(request: _Request) -> CloudflareError | None:
    """The request's error, if it failed (also marks the exception as retrieved)."""
    if not request.done.done() or request.done.cancelled():
        return None
    error = request.done.exception()
    if error is None:
        return None
    return error if isinstance(error, CloudflareError) else CloudflareError(str(error))


def _assumed(body: dict[str, Any]) -> DnsRecord:
    """The record a write produced, when the batch response did not echo it."""
    return record_from_wire(body)
